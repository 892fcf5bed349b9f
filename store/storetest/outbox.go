package storetest

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

var testNotifications = policy.Notifications{
	Webhooks: []policy.Webhook{{ID: "w1", URL: "https://hooks.example/a", Secret: "whsec-1"}},
	Emails:   []policy.Email{{Address: "owner@example.com", Events: []string{policy.EventFirewallModeChanged}}},
}

// withNotifications gives acct testNotifications.
func withNotifications(t *testing.T, s policy.Store, acct string) {
	t.Helper()
	mustUpdate(t, s, acct, func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.Notifications = testNotifications
		return tx.PutAccount(a)
	})
}

func outbox(t *testing.T, s policy.Store, acct string) []policy.OutboxEntry {
	t.Helper()
	es, err := s.OutboxEntries(t.Context(), acct)
	if err != nil {
		t.Fatalf("OutboxEntries(%s): %v", acct, err)
	}
	return es
}

func destKeys(o policy.OutboxEntry) []string {
	var ks []string
	for _, d := range o.Deliveries {
		ks = append(ks, d.Destination.Key())
	}
	slices.Sort(ks)
	return ks
}

func testOutboxWithChange(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "ob", "quiet")
	withNotifications(t, s, "ob")
	if got := outbox(t, s, "ob"); len(got) != 0 {
		t.Fatalf("outbox after setting destinations with no audit: %+v", got)
	}
	modeOff := func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.Mode = policy.ModeOff
		if err := tx.PutAccount(a); err != nil {
			return err
		}
		return tx.Audit(policy.AuditEntry{Actor: "master", Role: policy.RoleMaster, Action: "firewall.mode"})
	}
	mustUpdate(t, s, "ob", modeOff)
	// Not notified: no outbox entry.
	mustUpdate(t, s, "ob", func(tx policy.Tx) error {
		return tx.Audit(policy.AuditEntry{Actor: "master", Action: "login.success"})
	})
	// A failed Update writes neither the audit entry nor the outbox entry.
	boom := errors.New("boom")
	err := s.Update(ctx, "ob", func(tx policy.Tx) error {
		if err := tx.Audit(policy.AuditEntry{Actor: "master", Action: "rule.add"}); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, "failed Update", err, boom)
	mustUpdate(t, s, "ob", func(tx policy.Tx) error {
		return tx.Audit(policy.AuditEntry{Actor: "master", Action: "rule.add", Target: "rule/1"})
	})
	// An account without destinations notifies nobody.
	mustUpdate(t, s, "quiet", modeOff)

	got := outbox(t, s, "ob")
	if len(got) != 2 {
		t.Fatalf("outbox holds %d entries, want 2: %+v", len(got), got)
	}
	audit, err := s.Audit(ctx, "ob", policy.AuditQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	byAction := map[string]policy.AuditEntry{}
	for _, e := range audit {
		byAction[e.Action] = e
	}
	mode, add := got[0], got[1]
	equal(t, "first event", mode.Event, policy.EventFirewallModeChanged)
	equal(t, "second event", add.Event, policy.EventRuleAdded)
	equal(t, "first entry's ID", mode.ID, byAction["firewall.mode"].ID)
	equal(t, "its audit entry", mode.Entry, byAction["firewall.mode"])
	equal(t, "second entry's ID", add.ID, byAction["rule.add"].ID)
	equal(t, "account", mode.Account, "ob")
	// The email recipient only wants firewall.mode_changed.
	equal(t, "mode change destinations", destKeys(mode), []string{"email/owner@example.com", "webhook/w1"})
	equal(t, "rule destinations", destKeys(add), []string{"webhook/w1"})
	if add.Deliveries[0].Destination.Secret != "whsec-1" {
		t.Errorf("the webhook's delivery lacks its secret to sign with")
	}
	accts, err := s.OutboxAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "accounts with an outbox", accts, []string{"ob"})
}

func testOutboxOldDestinations(t *testing.T, s policy.Store) {
	mustCreate(t, s, "od")
	withNotifications(t, s, "od")
	// Silencing: every destination removed, in one transaction with its
	// audit entry. The notification still reaches the removed ones.
	mustUpdate(t, s, "od", func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.Notifications = policy.Notifications{Webhooks: []policy.Webhook{{ID: "w2", URL: "https://new.example/", Secret: "s2"}}}
		if err := tx.PutAccount(a); err != nil {
			return err
		}
		return tx.Audit(policy.AuditEntry{Actor: "master", Action: policy.AuditNotificationsChanged})
	})
	got := outbox(t, s, "od")
	if len(got) != 1 {
		t.Fatalf("outbox holds %d entries, want 1", len(got))
	}
	equal(t, "event", got[0].Event, policy.EventNotificationsChanged)
	equal(t, "destinations", destKeys(got[0]), []string{"email/owner@example.com", "webhook/w1", "webhook/w2"})
}

func testOutboxDelivery(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "dl")
	withNotifications(t, s, "dl")
	for range 2 {
		mustUpdate(t, s, "dl", func(tx policy.Tx) error {
			return tx.Audit(policy.AuditEntry{Actor: "master", Action: "firewall.mode"})
		})
	}
	es := outbox(t, s, "dl")
	if len(es) != 2 {
		t.Fatalf("outbox holds %d entries, want 2", len(es))
	}
	first := es[0]
	at := t0.Add(time.Hour)
	// One destination failed, the other worked: the entry stays.
	for i := range first.Deliveries {
		d := &first.Deliveries[i]
		if d.Destination.Kind == policy.DestWebhook {
			d.Attempts = append(d.Attempts, policy.Attempt{At: at, Status: "503"})
			d.NextAt = at.Add(time.Second)
		} else {
			d.Attempts = append(d.Attempts, policy.Attempt{At: at, OK: true, Status: "250"})
			d.Done = true
		}
	}
	if err := s.SaveOutbox(ctx, first); err != nil {
		t.Fatal(err)
	}
	es = outbox(t, s, "dl")
	equal(t, "entry after a failed attempt", normalize(es[0]), normalize(first))
	st, err := s.DeliveryStatus(ctx, "dl")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "status", st, map[string]policy.Attempt{
		"webhook/w1":              {At: at, Status: "503", Entry: first.ID, Event: policy.EventFirewallModeChanged},
		"email/owner@example.com": {At: at, OK: true, Status: "250", Entry: first.ID, Event: policy.EventFirewallModeChanged},
	})

	// Delivered everywhere: it leaves the outbox, and stays gone.
	first.Deliveries[0].Done, first.Deliveries[1].Done = true, true
	if err := s.SaveOutbox(ctx, first); err != nil {
		t.Fatal(err)
	}
	first.Deliveries[0].Done = false
	if err := s.SaveOutbox(ctx, first); err != nil {
		t.Fatal(err)
	}
	es = outbox(t, s, "dl")
	if len(es) != 1 || es[0].ID == first.ID {
		t.Fatalf("outbox after delivery: %+v", es)
	}
	// The last one delivered: no account has an outbox.
	es[0].Deliveries[0].Done, es[0].Deliveries[1].Done = true, true
	if err := s.SaveOutbox(ctx, es[0]); err != nil {
		t.Fatal(err)
	}
	accts, err := s.OutboxAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(accts) != 0 {
		t.Errorf("accounts with an outbox after every delivery: %v", accts)
	}
}

func testLease(t *testing.T, s policy.Store) {
	ctx := t.Context()
	claim := func(holder string, ttl time.Duration) bool {
		t.Helper()
		ok, err := s.ClaimLease(ctx, "outbox", holder, ttl)
		if err != nil {
			t.Fatalf("ClaimLease(%s): %v", holder, err)
		}
		return ok
	}
	if !claim("a", time.Minute) {
		t.Fatal("a free lease was refused")
	}
	if claim("b", time.Minute) {
		t.Fatal("b took a's live lease")
	}
	if !claim("a", 100*time.Millisecond) {
		t.Fatal("a could not renew its own lease")
	}
	// a stops renewing: b gets it once it runs out.
	deadline := time.Now().Add(10 * time.Second)
	for !claim("b", time.Minute) {
		if time.Now().After(deadline) {
			t.Fatal("b never took over a lease a stopped renewing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if claim("a", time.Minute) {
		t.Fatal("a took back b's live lease")
	}
	ok, err := s.ClaimLease(ctx, "other", "a", time.Minute)
	if err != nil || !ok {
		t.Fatalf("another lease name is its own lease: %v %v", ok, err)
	}
}

func testAccessRequests(t *testing.T, s policy.Store) {
	mustCreate(t, s, "r1", "r2")
	mk := func(id string) policy.AccessRequest {
		return policy.AccessRequest{ID: id, Account: "r1", User: "alice", IP: netip.MustParseAddr("192.0.2.7"),
			Reason: "working from home", TTL: policy.Duration(time.Hour), Status: policy.RequestPending,
			CreatedAt: t0, ExpiresAt: t0.Add(policy.RequestLifetime)}
	}
	mustUpdate(t, s, "r1", func(tx policy.Tx) error {
		for _, id := range []string{"c", "a", "b"} {
			if err := tx.PutAccessRequest(mk(id)); err != nil {
				return err
			}
		}
		rs, err := tx.AccessRequests()
		equal(t, "requests read in their transaction", rs, []policy.AccessRequest{mk("a"), mk("b"), mk("c")})
		return errors.Join(err, tx.DeleteAccessRequest("c"))
	})
	decided := mk("a")
	decided.Status, decided.DecidedBy, decided.DecidedAt, decided.Rule = policy.RequestApproved, "master", t0.Add(time.Minute), 4
	mustUpdate(t, s, "r1", func(tx policy.Tx) error { return tx.PutAccessRequest(decided) })
	err := s.View(t.Context(), "r1", func(tx policy.Tx) error {
		rs, err := tx.AccessRequests()
		equal(t, "requests", rs, []policy.AccessRequest{decided, mk("b")})
		r, err2 := tx.AccessRequest("a")
		equal(t, "request a", r, decided)
		_, err3 := tx.AccessRequest("c")
		wantErr(t, "a deleted request", err3, policy.ErrNotFound)
		wantErr(t, "a write in View", tx.PutAccessRequest(mk("d")), policy.ErrReadOnly)
		return errors.Join(err, err2)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(t.Context(), "r1", func(tx policy.Tx) error { return tx.PutAccessRequest(policy.AccessRequest{}) }); err == nil {
		t.Fatal("PutAccessRequest accepted an empty ID")
	}
	mustUpdate(t, s, "r2", func(tx policy.Tx) error {
		rs, err := tx.AccessRequests()
		if len(rs) != 0 {
			t.Errorf("r2 sees r1's requests: %+v", rs)
		}
		return err
	})
}
