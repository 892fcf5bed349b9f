package admin

import (
	"context"
	"encoding/json"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// offboardEntries counts account's user.offboard audit entries for name.
func (f *fixture) offboardEntries(account, name string) []policy.AuditEntry {
	f.t.Helper()
	es, err := f.bolt.Audit(context.Background(), account, policy.AuditQuery{Limit: 1000})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []policy.AuditEntry
	for _, e := range es {
		if e.Action == "user.offboard" && e.Target == "user/"+name {
			out = append(out, e)
		}
	}
	return out
}

// TestLastDay: a user created with access_until just ahead (in a zone of
// its own) is offboarded by themselves at that instant, with the same
// effects as the button, once; the receipt says the schedule did it and
// for which last day.
func TestLastDay(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.svc.RunLastDays(ctx) }()

	mtok := f.token(master)
	if r := f.req("POST", "/api/v1/accounts/10042/users", mtok, map[string]string{"username": "temp.worker",
		"password": "temp-initial-pw-1", "access_until": "2020-01-01T00:00:00Z"}); r.status != 400 || r.errCode() != CodeInvalidAccessUntil {
		t.Fatalf("a last day in the past: %d %s", r.status, r.body)
	}
	if r := f.req("POST", "/api/v1/accounts/10042/users", mtok, map[string]string{"username": "temp.worker",
		"password": "temp-initial-pw-1", "access_until": "2030-01-01 00:00"}); r.status != 400 || r.errCode() != CodeInvalidAccessUntil {
		t.Fatalf("a last day without a zone: %d %s", r.status, r.body)
	}
	// Alice's last day, in New York's offset, a moment ahead.
	zone := time.FixedZone("EST", -5*3600)
	due := time.Now().Add(700 * time.Millisecond).In(zone).Truncate(time.Millisecond)
	atok := f.token(user)
	now := time.Now()
	f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Source: policy.SourceUnblock,
		Owner: "alice", CreatedBy: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	r := f.req("PATCH", "/api/v1/accounts/10042/users/alice", mtok, map[string]string{"access_until": due.Format(time.RFC3339Nano)})
	var ch UserChange
	r.decode(t, &ch)
	if r.status != 200 || !ch.User.AccessUntil.Equal(due) {
		t.Fatalf("set the last day: %d %s", r.status, r.body)
	}
	if u := f.user(acctA, "alice"); u.AccessUntil.Format(time.RFC3339) != due.Format(time.RFC3339) {
		t.Fatalf("the zone was not kept: %v", u.AccessUntil)
	}
	waitFor(t, "alice's last day", func() bool { return !f.user(acctA, "alice").Active })
	ranAt := time.Now()
	u := f.user(acctA, "alice")
	rec := u.Offboarding
	if u.DesktopAccess || rec == nil || rec.By != policy.RoleSchedule || !rec.DueAt.Equal(due) ||
		rec.SessionsEnded != 1 || len(rec.Grants) != 1 || rec.At.Before(due) {
		t.Fatalf("after the last day: %+v receipt %+v", u, rec)
	}
	t.Logf("ran %.0f ms after the instant by the receipt (%.0f ms by the test's clock)",
		rec.LateSeconds*1000, ranAt.Sub(due).Seconds()*1000)
	if len(f.rules(acctA)) != 0 {
		t.Fatalf("rules left: %+v", f.rules(acctA))
	}
	if r := f.req("GET", "/api/v1/me", atok, nil); r.status != 401 {
		t.Fatalf("alice's session after her last day: %d", r.status)
	}
	es := f.offboardEntries(acctA, "alice")
	if len(es) != 1 || es[0].Actor != "schedule" || es[0].Role != policy.RoleSchedule {
		t.Fatalf("audit: %+v", es)
	}
	// Reactivated by the master afterwards: the same last day does not run
	// again.
	if r := f.req("PATCH", "/api/v1/accounts/10042/users/alice", mtok, map[string]bool{"active": true}); r.status != 200 {
		t.Fatalf("reactivate: %d %s", r.status, r.body)
	}
	if _, err := f.svc.lastDayPass(ctx); err != nil {
		t.Fatal(err)
	}
	if !f.user(acctA, "alice").Active || len(f.offboardEntries(acctA, "alice")) != 1 {
		t.Fatal("the last day ran twice")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Bob was deactivated by hand before his last day, which so never
	// ran: reactivating him after it must move or clear it.
	bobDue := time.Now().Add(time.Minute)
	if r := f.req("PATCH", "/api/v1/accounts/10042/users/bob", mtok, map[string]any{"active": false,
		"access_until": bobDue.Format(time.RFC3339Nano)}); r.status != 200 {
		t.Fatalf("bob: %d %s", r.status, r.body)
	}
	f.svc.now = func() time.Time { return bobDue.Add(time.Hour) }
	if r := f.req("PATCH", "/api/v1/accounts/10042/users/bob", mtok, map[string]bool{"active": true}); r.status != 409 {
		t.Fatalf("reactivated past the last day: %d %s", r.status, r.body)
	}
	if r := f.req("PATCH", "/api/v1/accounts/10042/users/bob", mtok, map[string]any{"active": true, "access_until": ""}); r.status != 200 {
		t.Fatalf("reactivated with the last day cleared: %d %s", r.status, r.body)
	}
}

// TestLastDayLate: a last day that passed while nothing ran (a fleet
// stopped, a store down) runs at the next try, and the receipt says how
// late. The clock is the Service's, so "late" is exact.
func TestLastDayLate(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	var clock atomic.Int64
	start := time.Date(2027, 3, 31, 16, 0, 0, 0, time.UTC)
	clock.Store(start.UnixNano())
	f.svc.now = func() time.Time { return time.Unix(0, clock.Load()) }
	due := start.Add(time.Hour)
	if r := f.req("PATCH", "/api/v1/accounts/10042/users/alice", f.token(master),
		map[string]string{"access_until": due.In(time.FixedZone("CEST", 2*3600)).Format(time.RFC3339)}); r.status != 200 {
		t.Fatalf("set: %d %s", r.status, r.body)
	}
	ctx := context.Background()
	next, err := f.svc.lastDayPass(ctx)
	if err != nil || !next.Equal(due) || !f.user(acctA, "alice").Active {
		t.Fatalf("before the day: next %v, %v", next, err)
	}
	// The instant passes while the store refuses writes: nothing is lost.
	clock.Store(due.Add(90 * time.Second).UnixNano())
	f.store.failWrites.Store(true)
	if _, err := f.svc.lastDayPass(ctx); err == nil {
		t.Fatal("a pass with the store down reported no error")
	}
	if !f.user(acctA, "alice").Active {
		t.Fatal("offboarded with the store down")
	}
	f.store.failWrites.Store(false)
	clock.Store(due.Add(5 * time.Minute).UnixNano())
	if _, err := f.svc.lastDayPass(ctx); err != nil {
		t.Fatal(err)
	}
	u := f.user(acctA, "alice")
	if u.Active || u.Offboarding == nil || u.Offboarding.LateSeconds != 300 || !u.Offboarding.DueAt.Equal(due) {
		t.Fatalf("late run: %+v %+v", u, u.Offboarding)
	}
	var got policy.OffboardReceipt
	r := f.req("GET", "/api/v1/accounts/10042/users/alice/offboarding", f.token(master), nil)
	r.decode(t, &got)
	if got.LateSeconds != 300 || got.By != "schedule" {
		t.Fatalf("receipt: %s", r.body)
	}
}

// TestLastDayOnceInAFleet: several Services on one Redis reach the same
// last day at the same moment; exactly one offboards (one audit entry,
// one receipt), the others find it done.
func TestLastDayOnceInAFleet(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	var svcs []*Service
	var stores []*redisstore.Store
	for range 4 {
		st, err := redisstore.Open(ctx, srv.URL(), redisstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		stores = append(stores, st)
	}
	now := time.Now()
	if _, err := CreateAccount(ctx, stores[0], NewAccount{ID: acctA, Name: "Smith Studio", Password: pwA,
		Actor: "test", Role: policy.RoleOperator}, cheap, now); err != nil {
		t.Fatal(err)
	}
	due := now.Add(-time.Second)
	err := stores[0].Update(ctx, acctA, func(tx policy.Tx) error {
		if err := tx.PutUser(policy.User{Username: "alice", Active: true, DesktopAccess: true, CreatedAt: now,
			AccessUntil: due}); err != nil {
			return err
		}
		_, err := tx.PutRule(policy.Rule{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Source: policy.SourceUnblock,
			Owner: "alice", CreatedBy: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stores {
		s, err := New(Options{Store: st, PasswordParams: cheap})
		if err != nil {
			t.Fatal(err)
		}
		svcs = append(svcs, s)
	}
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for _, s := range svcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			if _, err := s.lastDayPass(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	close(gate)
	wg.Wait()
	es, err := stores[1].Audit(ctx, acctA, policy.AuditQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if e.Action == "user.offboard" {
			n++
			var after offboardRecord
			if err := json.Unmarshal(e.After, &after); err != nil || after.Receipt.By != "schedule" || len(after.Receipt.Grants) != 1 {
				t.Fatalf("entry: %s %v", e.After, err)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d offboarding entries, want 1", n)
	}
	err = stores[2].View(ctx, acctA, func(tx policy.Tx) error {
		u, err := tx.User("alice")
		if err == nil && (u.Active || u.Offboarding == nil || !u.Offboarding.DueAt.Equal(due)) {
			t.Errorf("alice: %+v", u)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
