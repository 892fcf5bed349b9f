package admin

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// setNotifications gives account n as its destinations, unaudited.
func (f *fixture) setNotifications(account string, n policy.Notifications) {
	f.t.Helper()
	err := f.bolt.Update(context.Background(), account, func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.Notifications = n
		return tx.PutAccount(a)
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) outbox(account string) []policy.OutboxEntry {
	f.t.Helper()
	es, err := f.bolt.OutboxEntries(context.Background(), account)
	if err != nil {
		f.t.Fatal(err)
	}
	return es
}

func TestNotificationsAPI(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.token(master)
	path := "/api/v1/accounts/10042/notifications"

	r := f.req("GET", path, m, nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"webhooks":[]`) || !strings.Contains(string(r.body), policy.EventFirewallModeChanged) {
		t.Fatalf("GET with none: %d %s", r.status, r.body)
	}
	// A webhook is created with a secret shown once.
	r = f.req("PUT", path, m, map[string]any{
		"webhooks": []any{map[string]any{"url": "https://hooks.example.com/gk", "events": []string{"rule.added"}}},
		"emails":   []any{map[string]any{"address": "owner@example.com"}},
	})
	var v NotificationsView
	if r.status != 200 || json.Unmarshal(r.body, &v) != nil || len(v.Webhooks) != 1 || !strings.HasPrefix(v.Webhooks[0].Secret, "whsec_") {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	hook := v.Webhooks[0]
	r = f.req("GET", path, m, nil)
	if strings.Contains(string(r.body), hook.Secret) || !strings.Contains(string(r.body), hook.ID) {
		t.Errorf("GET shows the secret again, or not the webhook: %s", r.body)
	}
	// Nothing delivers in this test: the change waits for both.
	var got NotificationsView
	r.decode(t, &got)
	if got.Webhooks[0].Waiting != 1 || got.Emails[0].Waiting != 1 || got.Webhooks[0].Last != nil {
		t.Errorf("queues %+v %+v", got.Webhooks[0], got.Emails[0])
	}
	audit, _ := f.bolt.Audit(context.Background(), acctA, policy.AuditQuery{Limit: 5})
	for _, e := range audit {
		if strings.Contains(string(e.Before)+string(e.After), hook.Secret) {
			t.Errorf("audit entry %s holds the secret", e.Action)
		}
	}
	// Keeping the webhook by ID keeps its secret; the change goes to the
	// old destinations and the new.
	r = f.req("PUT", path, m, map[string]any{
		"webhooks": []any{map[string]any{"id": hook.ID, "url": "https://hooks.example.com/gk2"}},
	})
	if r.status != 200 || strings.Contains(string(r.body), "whsec_") {
		t.Fatalf("PUT keeping the webhook: %d %s", r.status, r.body)
	}
	es := f.outbox(acctA)
	last := es[len(es)-1]
	if last.Event != policy.EventNotificationsChanged || len(last.Deliveries) != 2 {
		t.Fatalf("last outbox entry %+v", last)
	}
	for _, d := range last.Deliveries {
		if d.Destination.Kind == policy.DestWebhook && (d.Destination.Secret != hook.Secret || d.Destination.URL != "https://hooks.example.com/gk2") {
			t.Errorf("the kept webhook %+v", d.Destination)
		}
	}
	// Removing the last destination needs confirm.
	r = f.req("PUT", path, m, map[string]any{})
	if r.status != 400 || r.errCode() != CodeConfirmationRequired {
		t.Fatalf("removing the last destination without confirm: %d %s", r.status, r.body)
	}
	r = f.req("PUT", path, m, map[string]any{"confirm": true})
	if r.status != 200 {
		t.Fatalf("removing with confirm: %d %s", r.status, r.body)
	}
	es = f.outbox(acctA)
	if last := es[len(es)-1]; last.Event != policy.EventNotificationsChanged || len(last.Deliveries) != 1 ||
		last.Deliveries[0].Destination.ID != hook.ID {
		t.Errorf("silencing was not told to the removed webhook: %+v", last)
	}
	// The test button needs a destination.
	if r := f.req("POST", path+"/test", m, nil); r.status != 400 {
		t.Errorf("a test with no destination: %d %s", r.status, r.body)
	}
}

func TestNotificationsRefused(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.token(master)
	for _, tc := range []struct {
		body any
		want string
	}{
		{map[string]any{"webhooks": []any{map[string]any{"url": "ftp://x.example/"}}}, "webhooks[0].url"},
		{map[string]any{"webhooks": []any{map[string]any{"url": "https://u:p@x.example/"}}}, "user name or password"},
		{map[string]any{"webhooks": []any{map[string]any{"id": "wh_nope", "url": "https://x.example/"}}}, "no webhook"},
		{map[string]any{"webhooks": []any{map[string]any{"url": "https://x.example/", "events": []string{"nope"}}}}, "unknown event"},
		{map[string]any{"emails": []any{map[string]any{"address": "Owner <o@example.com>"}}}, "emails[0].address"},
		{map[string]any{"emails": []any{map[string]any{"address": "o@example.com"}, map[string]any{"address": "O@example.com"}}}, "twice"},
	} {
		r := f.req("PUT", "/api/v1/accounts/10042/notifications", m, tc.body)
		if r.status != 400 || !strings.Contains(string(r.body), tc.want) {
			t.Errorf("%v: %d %s, want 400 naming %q", tc.body, r.status, r.body, tc.want)
		}
	}
	if es := f.outbox(acctA); len(es) != 0 {
		t.Errorf("refused changes left outbox entries: %+v", es)
	}
}

// setUnblock sets account's unblock setting, unaudited.
func (f *fixture) setUnblock(account, v string) {
	f.t.Helper()
	err := f.bolt.Update(context.Background(), account, func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.Settings.Unblock = v
		return tx.PutAccount(a)
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) putRequest(account string, r policy.AccessRequest) {
	f.t.Helper()
	if err := f.bolt.Update(context.Background(), account, func(tx policy.Tx) error { return tx.PutAccessRequest(r) }); err != nil {
		f.t.Fatal(err)
	}
}
