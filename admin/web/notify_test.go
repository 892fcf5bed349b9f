package web

import (
	"context"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

func (f *fixture) update(account string, fn func(tx policy.Tx) error) {
	f.t.Helper()
	if err := f.bolt.Update(context.Background(), account, fn); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) setNotifications(account string, n policy.Notifications) {
	f.update(account, func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.Notifications = n
		return tx.PutAccount(a)
	})
}

func (f *fixture) setUnblock(account, v string) {
	f.update(account, func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.Settings.Unblock = v
		return tx.PutAccount(a)
	})
}

func (f *fixture) putRequest(account string, r policy.AccessRequest) {
	f.update(account, func(tx policy.Tx) error { return tx.PutAccessRequest(r) })
}

// TestNotificationsPage: a webhook's secret is shown once, removing the
// last destination needs the box ticked, and the test button queues a
// notification.
func TestNotificationsPage(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.client().mustLogin(acctA, "", pwA)
	res := m.submit("/accounts/10042/notifications/webhooks", url.Values{"url": {"https://hooks.example.com/gk"}})
	secret := regexp.MustCompile(`whsec_[A-Za-z0-9_-]+`).FindString(res.body)
	if res.status != 200 || secret == "" {
		t.Fatalf("add webhook: %s", res.summary())
	}
	page := m.get("/accounts/10042/notifications")
	if strings.Contains(page.body, secret) || !strings.Contains(page.body, "https://hooks.example.com/gk") {
		t.Fatalf("the page shows the secret again, or not the webhook")
	}
	a, _ := f.bolt.Account(context.Background(), acctA)
	id := a.Notifications.Webhooks[0].ID
	res = m.submit("/accounts/10042/notifications/webhooks/"+id+"/delete", nil)
	if res.summary() != "303 /accounts/10042/notifications" {
		t.Fatalf("remove: %s", res.summary())
	}
	if a, _ := f.bolt.Account(context.Background(), acctA); len(a.Notifications.Webhooks) != 1 {
		t.Fatal("the last destination went without confirmation")
	}
	if page := m.get("/accounts/10042/notifications"); !strings.Contains(page.body, "Tick the box") {
		t.Error("no warning about the last destination")
	}
	// Which events: ticked ones, and an unknown one is refused.
	m.submit("/accounts/10042/notifications/emails", url.Values{"address": {"owner@example.com"}, "event": {"rule.added", "user.created"}})
	m.submit("/accounts/10042/notifications/webhooks/"+id+"/events", url.Values{"event": {"firewall.mode_changed"}})
	a, _ = f.bolt.Account(context.Background(), acctA)
	if len(a.Notifications.Emails) != 1 || strings.Join(a.Notifications.Emails[0].Events, " ") != "rule.added user.created" ||
		strings.Join(a.Notifications.Webhooks[0].Events, " ") != "firewall.mode_changed" {
		t.Fatalf("events as stored: %+v", a.Notifications)
	}
	if page := m.get("/accounts/10042/notifications"); !strings.Contains(page.body, "Events: rule.added, user.created, notifications.changed") {
		t.Error("the page does not show the email's events")
	}
	if res := m.submit("/accounts/10042/notifications/emails/events", url.Values{"address": {"owner@example.com"}, "event": {"nope"}}); res.status != 303 {
		t.Fatalf("unknown event: %s %s", res.summary(), res.body)
	}
	if page := m.get("/accounts/10042/notifications"); !strings.Contains(page.body, "unknown event") {
		t.Error("an unknown event was not refused on the page")
	}
	m.submit("/accounts/10042/notifications/test", nil)
	es, _ := f.bolt.OutboxEntries(context.Background(), acctA)
	if len(es) == 0 || es[len(es)-1].Event != policy.EventNotificationsTest {
		t.Fatalf("the test button queued %+v", es)
	}
	res = m.submit("/accounts/10042/notifications/webhooks/"+id+"/delete", url.Values{"confirm": {"on"}})
	if a, _ := f.bolt.Account(context.Background(), acctA); res.status != 303 || len(a.Notifications.Webhooks) != 0 {
		t.Fatalf("confirmed removal: %s, %+v", res.summary(), a.Notifications)
	}
}

// TestRequestPages: alice asks on her page, the master approves in the
// inbox, alice sees it; a denial shows its reason.
func TestRequestPages(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.setUnblock(acctA, policy.UnblockApproval)
	alice := f.client().mustLogin(acctA, "alice", pwAlice)
	m := f.client().mustLogin(acctA, "", pwA)
	if res := alice.submit("/me/unblock", nil); res.summary() != "303 /me/access" {
		t.Fatalf("unblock with approval: %s", res.summary())
	}
	inbox := m.get("/accounts/10042/access-requests")
	id := regexp.MustCompile(`id="request-([0-9a-f]+)"`).FindStringSubmatch(inbox.body)
	if id == nil || !strings.Contains(inbox.body, "alice") {
		t.Fatalf("the inbox lacks alice's request")
	}
	res := m.submit("/accounts/10042/access-requests/"+id[1]+"/approve", url.Values{"ttl": {"1h"}})
	if res.summary() != "303 /accounts/10042/access-requests" {
		t.Fatalf("approve: %s", res.summary())
	}
	if page := alice.get("/me/access"); !strings.Contains(page.body, "approved") {
		t.Errorf("alice's page does not say approved")
	}
	now := time.Now()
	f.putRequest(acctA, policy.AccessRequest{ID: "b2", User: "alice", IP: netip.MustParseAddr("192.0.2.9"),
		Status: policy.RequestPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	m.submit("/accounts/10042/access-requests/b2/deny", url.Values{"reason": {"use the office"}})
	if page := alice.get("/me/access"); !strings.Contains(page.body, "denied: use the office") {
		t.Errorf("alice's page does not show the denial's reason")
	}
}
