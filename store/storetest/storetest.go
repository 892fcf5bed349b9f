// Package storetest is the conformance suite every policy.Store backend
// passes. A backend's test calls Run with a function that opens a new,
// empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) policy.Store {
//			s, err := boltstore.Open(filepath.Join(t.TempDir(), "gk.db"), boltstore.Options{})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// The suite depends only on the policy.Store contract. Where the contract
// leaves a choice, the suite pins what callers rely on:
//
//   - reads inside Update see the transaction's own writes;
//   - an Update whose fn fails returns fn's error and writes nothing: no
//     data, no audit entry, no change-feed entry;
//   - each policy write (CreateAccount, PutAccount, PutRule, DeleteRule) is
//     one change-feed entry; users, sessions, audit entries and usage are
//     none;
//   - the changes of one account arrive in commit order; the changes of
//     different accounts may interleave differently (a sharded feed has no
//     total order);
//   - rule IDs are never reused within an account;
//   - usage is kept per rule ID, survives PutRule and is summed and
//     maximised across RecordUsage calls;
//   - Audit, LoadAccountPolicy and Update on an unknown account answer
//     ErrNotFound;
//   - an audit entry whose action is notified writes its outbox entry, with
//     its ID, in the same transaction, and only when the account has a
//     destination for it;
//   - the index of last days (LastDays) holds exactly the users put with
//     a last day pending (policy.User.LastDayPending), written with them;
//   - the index of access reviews (ReviewsDue) holds every account once,
//     at its ReviewDue, noted or not, written with it.
//
// Times in the suite are whole seconds, so a backend may keep millisecond
// precision. The suite does not test outages, feed trimming or data loss:
// those depend on the backend and belong in its own tests.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Run runs the suite. open is called once per subtest, and must return a
// new store holding no data; subtests run one after another, so open may
// reuse one server and empty it. The suite closes each store when its
// subtest ends.
func Run(t *testing.T, open func(t *testing.T) policy.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s policy.Store)
	}{
		{"Accounts", testAccounts},
		{"Generation", testGeneration},
		{"UnknownAccount", testUnknownAccount},
		{"PutAccount", testPutAccount},
		{"Rules", testRules},
		{"ReadYourWrites", testReadYourWrites},
		{"FailedUpdateWritesNothing", testFailedUpdate},
		{"View", testView},
		{"Users", testUsers},
		{"Sessions", testSessions},
		{"Devices", testDevices},
		{"Enrollments", testEnrollments},
		{"Audit", testAudit},
		{"Usage", testUsage},
		{"LoadPolicy", testLoadPolicy},
		{"FollowDeliversChanges", testFollowDelivers},
		{"FollowOnlyPolicyChanges", testFollowOnlyPolicy},
		{"DeviceKeysWhenRequired", testDeviceKeys},
		{"WebUsers", testWebUsers},
		{"FollowResume", testFollowResume},
		{"FollowStops", testFollowStops},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"Reseed", testReseed},
		{"OutboxWithItsChange", testOutboxWithChange},
		{"OutboxOldDestinations", testOutboxOldDestinations},
		{"OutboxDelivery", testOutboxDelivery},
		{"Lease", testLease},
		{"AccessRequests", testAccessRequests},
		{"SigningKeys", testSigningKeys},
		{"LastDays", testLastDays},
		{"ReviewsDue", testReviewsDue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// waitChange bounds how long a committed change may take to reach a
// follower; quiet is how long a follower must hear nothing where nothing
// was committed. A change normally arrives within milliseconds.
const (
	waitChange = 5 * time.Second
	quiet      = 150 * time.Millisecond
)

// t0 is the base of the suite's timestamps: whole seconds, in UTC.
var t0 = time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)

func account(id string) policy.Account {
	return policy.Account{
		ID:         id,
		Name:       "Studio " + id,
		Mode:       policy.ModeOn,
		MasterHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA",
		MasterMFA:  policy.SecondFactor{TOTPPending: "v1.sealed-" + id},
		Settings:   policy.Settings{MaxGrants: 5, GrantTTLDefault: policy.Duration(2 * time.Hour), TimeZone: "Europe/Berlin"},
		CreatedAt:  t0,
		// The master's address, with a pending reset link (admin's
		// account recovery), must come back as stored.
		MasterEmail: policy.MailAddress{Address: "owner@example.com", Confirmed: true,
			Reset: policy.MailToken{Hash: "ab12", ExpiresAt: t0.Add(30 * time.Minute), For: "cd34"}},
	}
}

func createAudit(id string) policy.AuditEntry {
	return policy.AuditEntry{Actor: "operator", Role: policy.RoleOperator, Action: "account.create", Target: id}
}

func mustCreate(t *testing.T, s policy.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := s.CreateAccount(t.Context(), account(id), createAudit(id)); err != nil {
			t.Fatalf("CreateAccount(%s): %v", id, err)
		}
	}
}

func rule(cidr, note string) policy.Rule {
	return policy.Rule{
		Prefix:    netip.MustParsePrefix(cidr),
		Note:      note,
		Source:    policy.SourceManual,
		CreatedBy: "master",
		CreatedAt: t0.Add(time.Minute),
	}
}

// mustUpdate runs fn in an Update that must succeed.
func mustUpdate(t *testing.T, s policy.Store, acct string, fn func(tx policy.Tx) error) {
	t.Helper()
	if err := s.Update(t.Context(), acct, fn); err != nil {
		t.Fatalf("Update(%s): %v", acct, err)
	}
}

// addRules adds rules in one Update and returns them as stored.
func addRules(t *testing.T, s policy.Store, acct string, rs ...policy.Rule) []policy.Rule {
	t.Helper()
	var out []policy.Rule
	mustUpdate(t, s, acct, func(tx policy.Tx) error {
		out = out[:0] // fn may run more than once
		for _, r := range rs {
			r, err := tx.PutRule(r)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out
}

// txRules reads the rules, with usage, through a transaction.
func txRules(t *testing.T, s policy.Store, acct string) []policy.Rule {
	t.Helper()
	var rs []policy.Rule
	mustUpdate(t, s, acct, func(tx policy.Tx) (err error) {
		rs, err = tx.Rules()
		return err
	})
	return rs
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

// equal compares after moving every time to UTC without a monotonic
// reading, so that equal instants compare equal whatever the encoding.
func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	g, w := normalize(got), normalize(want)
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, g, w)
	}
}

func normalize(v any) any {
	switch v := v.(type) {
	case policy.Account:
		v.CreatedAt = v.CreatedAt.UTC()
		return v
	case []policy.Account:
		return mapSlice(v)
	case policy.Rule:
		v.CreatedAt, v.ExpiresAt, v.LastUsed = v.CreatedAt.UTC(), v.ExpiresAt.UTC(), v.LastUsed.UTC()
		return v
	case []policy.Rule:
		return mapSlice(v)
	case policy.User:
		v.CreatedAt, v.LastLoginAt = v.CreatedAt.UTC(), v.LastLoginAt.UTC()
		return v
	case []policy.User:
		return mapSlice(v)
	case policy.Session:
		v.CreatedAt, v.ExpiresAt, v.LastUsedAt = v.CreatedAt.UTC(), v.ExpiresAt.UTC(), v.LastUsedAt.UTC()
		return v
	case []policy.Session:
		return mapSlice(v)
	case policy.AccountPolicy:
		v.Account = normalize(v.Account).(policy.Account)
		v.Rules = normalize(v.Rules).([]policy.Rule)
		if len(v.Rules) == 0 {
			v.Rules = nil
		}
		return v
	}
	return v
}

func mapSlice[T any](in []T) []T {
	if len(in) == 0 {
		return nil
	}
	out := make([]T, len(in))
	for i, v := range in {
		out[i] = normalize(v).(T)
	}
	return out
}

// withoutUsage clears what LoadPolicy need not report.
func withoutUsage(rs []policy.Rule) []policy.Rule {
	out := slices.Clone(rs)
	for i := range out {
		out[i].LastUsed, out[i].Hits = time.Time{}, 0
	}
	return out
}

func testAccounts(t *testing.T, s policy.Store) {
	ctx := t.Context()
	ids := []string{"b-2", "a1", "10042"}
	mustCreate(t, s, ids...)

	wantErr(t, "CreateAccount of a taken ID", s.CreateAccount(ctx, account("a1"), createAudit("a1")), policy.ErrExists)
	if err := s.CreateAccount(ctx, account("bad id!"), createAudit("x")); err == nil {
		t.Fatal("CreateAccount accepted a malformed account number")
	}

	got, err := s.Account(ctx, "a1")
	if err != nil {
		t.Fatalf("Account(a1): %v", err)
	}
	equal(t, "Account(a1)", got, account("a1"))
	_, err = s.Account(ctx, "nope")
	wantErr(t, "Account(nope)", err, policy.ErrNotFound)

	all, err := s.Accounts(ctx)
	if err != nil {
		t.Fatalf("Accounts: %v", err)
	}
	want := []policy.Account{account("10042"), account("a1"), account("b-2")}
	equal(t, "Accounts, sorted by ID", all, want)
}

func testGeneration(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "g1")
	d, err := s.LoadPolicy(ctx)
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	if d.Generation == "" {
		t.Fatal("Generation is empty although the store holds an account")
	}
	mustCreate(t, s, "g2")
	addRules(t, s, "g1", rule("192.0.2.1/32", "office"))
	for range 2 {
		d2, err := s.LoadPolicy(ctx)
		if err != nil {
			t.Fatalf("LoadPolicy: %v", err)
		}
		if d2.Generation != d.Generation {
			t.Fatalf("Generation changed from %q to %q without data loss", d.Generation, d2.Generation)
		}
	}
}

// testView checks the read-only view: it sees what was committed, every
// write through it fails with ErrReadOnly and leaves nothing behind, and
// fn's error comes back unchanged.
func testView(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "v")
	want := addRules(t, s, "v", rule("192.0.2.0/24", "kept"))
	mustUpdate(t, s, "v", func(tx policy.Tx) error {
		return tx.PutUser(policy.User{Username: "ann", Active: true, CreatedAt: t0})
	})
	before, err := s.LoadPolicy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	writes := []struct {
		name string
		fn   func(tx policy.Tx) error
	}{
		{"PutAccount", func(tx policy.Tx) error {
			a, _ := tx.Account()
			a.Mode = policy.ModeOff
			return tx.PutAccount(a)
		}},
		{"PutRule", func(tx policy.Tx) error { _, err := tx.PutRule(rule("198.51.100.0/24", "no")); return err }},
		{"DeleteRule", func(tx policy.Tx) error { return tx.DeleteRule(want[0].ID) }},
		{"PutUser", func(tx policy.Tx) error { return tx.PutUser(policy.User{Username: "bob", CreatedAt: t0}) }},
		{"PutSession", func(tx policy.Tx) error {
			return tx.PutSession(policy.Session{TokenHash: "h", Role: policy.RoleMaster, ExpiresAt: t0.Add(time.Hour)})
		}},
		{"DeleteSession", func(tx policy.Tx) error { return tx.DeleteSession("h") }},
		{"DeleteSessions", func(tx policy.Tx) error { _, err := tx.DeleteSessions(""); return err }},
		{"Audit", func(tx policy.Tx) error { return tx.Audit(policy.AuditEntry{Action: "no"}) }},
		{"PutDevice", func(tx policy.Tx) error {
			return tx.PutDevice(policy.Device{ID: "d1", Owner: "ann", Status: policy.DeviceActive, EnrolledAt: t0})
		}},
		{"PutEnrollment", func(tx policy.Tx) error {
			return tx.PutEnrollment(policy.Enrollment{CodeHash: "h", Owner: "ann", CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)})
		}},
		{"DeleteEnrollment", func(tx policy.Tx) error { return tx.DeleteEnrollment("h") }},
	}
	for _, w := range writes {
		err := s.View(ctx, "v", func(tx policy.Tx) error {
			a, err := tx.Account()
			if err != nil || a.ID != "v" {
				t.Errorf("View: Account %+v, %v", a, err)
			}
			rules, err := tx.Rules()
			if err != nil || len(rules) != 1 || rules[0].ID != want[0].ID {
				t.Errorf("View: Rules %v, %v; want the committed one", rules, err)
			}
			if u, err := tx.User("ann"); err != nil || u.Username != "ann" {
				t.Errorf("View: User(ann) %+v, %v", u, err)
			}
			return w.fn(tx)
		})
		wantErr(t, "View: "+w.name, err, policy.ErrReadOnly)
	}
	after, err := s.LoadPolicy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "policy after writes in View", withoutCursor(after), withoutCursor(before))
	entries, err := s.Audit(ctx, "v", policy.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Action == "no" {
			t.Error("an audit entry written in View was kept")
		}
	}
	mustUpdate(t, s, "v", func(tx policy.Tx) error {
		if _, err := tx.User("bob"); !errors.Is(err, policy.ErrNotFound) {
			t.Errorf("a user put in View exists: %v", err)
		}
		return nil
	})

	mine := errors.New("mine")
	if err := s.View(ctx, "v", func(policy.Tx) error { return mine }); err != mine {
		t.Errorf("View returned %v, want fn's own error unchanged", err)
	}
	err = s.View(ctx, "ghost", func(policy.Tx) error { return nil })
	wantErr(t, "View(ghost)", err, policy.ErrNotFound)
}

// gatePart is what of an account the gate compiles.
func gatePart(a policy.Account) policy.Account {
	return policy.Account{ID: a.ID, Mode: a.Mode, Settings: a.Settings}
}

// withoutCursor is d without its feed position, which reads do not move
// but which is no part of the policy.
func withoutCursor(d *policy.Data) *policy.Data {
	c := *d
	c.Cursor = ""
	return &c
}

func testUnknownAccount(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "known")
	err := s.Update(ctx, "ghost", func(tx policy.Tx) error {
		_, err := tx.PutRule(rule("192.0.2.0/24", "x"))
		return err
	})
	wantErr(t, "Update(ghost)", err, policy.ErrNotFound)
	_, err = s.LoadAccountPolicy(ctx, "ghost")
	wantErr(t, "LoadAccountPolicy(ghost)", err, policy.ErrNotFound)
	_, err = s.Audit(ctx, "ghost", policy.AuditQuery{})
	wantErr(t, "Audit(ghost)", err, policy.ErrNotFound)
	_, err = s.Session(ctx, "ghost", "h")
	wantErr(t, "Session(ghost)", err, policy.ErrNotFound)
	all, err := s.Accounts(ctx)
	if err != nil || len(all) != 1 {
		t.Fatalf("Accounts after an Update of an unknown account: %d, %v; want only the known one", len(all), err)
	}
}

func testPutAccount(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "p1")
	err := s.Update(ctx, "p1", func(tx policy.Tx) error { return tx.PutAccount(account("p2")) })
	if err == nil {
		t.Fatal("PutAccount changed an account's ID")
	}
	want := account("p1")
	want.Mode, want.Name, want.Parent = policy.ModeMonitor, "Renamed", "p0"
	mustUpdate(t, s, "p1", func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		equal(t, "tx.Account", a, account("p1"))
		return tx.PutAccount(want)
	})
	got, err := s.Account(ctx, "p1")
	if err != nil {
		t.Fatalf("Account: %v", err)
	}
	equal(t, "Account after PutAccount", got, want)
	p, err := s.LoadAccountPolicy(ctx, "p1")
	if err != nil {
		t.Fatalf("LoadAccountPolicy: %v", err)
	}
	equal(t, "LoadAccountPolicy after PutAccount", p.Account, want)
}

func testRules(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "r1")
	grant := rule("2001:db8::/48", "home")
	grant.Source, grant.Owner, grant.ExpiresAt = policy.SourceUnblock, "alice", t0.Add(12*time.Hour)
	added := addRules(t, s, "r1", rule("192.0.2.0/24", "office"), grant, rule("198.51.100.7/32", ""))

	seen := map[policy.RuleID]bool{}
	for _, r := range added {
		if r.ID == 0 || seen[r.ID] {
			t.Fatalf("PutRule assigned ID %d; want unique non-zero IDs, got %+v", r.ID, added)
		}
		seen[r.ID] = true
		if r.Account != "r1" {
			t.Fatalf("PutRule returned Account %q, want r1", r.Account)
		}
	}
	want := slices.Clone(added)
	slices.SortFunc(want, func(a, b policy.Rule) int { return int(a.ID) - int(b.ID) })
	equal(t, "Rules after adding three", txRules(t, s, "r1"), want)

	// Replace one, delete another.
	changed := added[1]
	changed.Note = "home, renewed"
	changed.ExpiresAt = t0.Add(24 * time.Hour)
	mustUpdate(t, s, "r1", func(tx policy.Tx) error {
		if _, err := tx.PutRule(changed); err != nil {
			return err
		}
		return tx.DeleteRule(added[0].ID)
	})
	err := s.Update(ctx, "r1", func(tx policy.Tx) error { return tx.DeleteRule(added[0].ID) })
	wantErr(t, "DeleteRule of a deleted rule", err, policy.ErrNotFound)
	err = s.Update(ctx, "r1", func(tx policy.Tx) error { return tx.DeleteRule(999999) })
	wantErr(t, "DeleteRule of an unknown rule", err, policy.ErrNotFound)

	want = []policy.Rule{changed, added[2]}
	slices.SortFunc(want, func(a, b policy.Rule) int { return int(a.ID) - int(b.ID) })
	equal(t, "Rules after replace and delete", txRules(t, s, "r1"), want)
	p, err := s.LoadAccountPolicy(ctx, "r1")
	if err != nil {
		t.Fatalf("LoadAccountPolicy: %v", err)
	}
	equal(t, "LoadAccountPolicy rules", withoutUsage(p.Rules), want)

	// A deleted rule's ID is not given to a new rule: a client deleting
	// "rule 1" twice must not remove someone else's new rule.
	again := addRules(t, s, "r1", rule("203.0.113.0/24", "new"))
	if seen[again[0].ID] {
		t.Fatalf("new rule got ID %d, already used by %+v", again[0].ID, added)
	}
}

func testReadYourWrites(t *testing.T, s policy.Store) {
	mustCreate(t, s, "ryw")
	kept := addRules(t, s, "ryw", rule("192.0.2.0/24", "kept"))[0]
	expires := time.Now().Add(time.Hour).Truncate(time.Second)
	mustUpdate(t, s, "ryw", func(tx policy.Tx) error {
		r, err := tx.PutRule(rule("198.51.100.0/24", "new"))
		if err != nil {
			return err
		}
		rs, err := tx.Rules()
		if err != nil {
			return err
		}
		equal(t, "Rules after PutRule in the same transaction", withoutUsage(rs), []policy.Rule{kept, r})
		if err := tx.DeleteRule(kept.ID); err != nil {
			return err
		}
		if err := tx.DeleteRule(kept.ID); !errors.Is(err, policy.ErrNotFound) {
			t.Errorf("second DeleteRule of the same rule in one transaction: %v, want ErrNotFound", err)
		}
		rs, err = tx.Rules()
		if err != nil {
			return err
		}
		equal(t, "Rules after DeleteRule in the same transaction", withoutUsage(rs), []policy.Rule{r})

		u := policy.User{Username: "alice", Active: true, CreatedAt: t0}
		if err := tx.PutUser(u); err != nil {
			return err
		}
		u.Account = "ryw"
		got, err := tx.User("alice")
		if err != nil {
			return fmt.Errorf("User after PutUser in the same transaction: %w", err)
		}
		equal(t, "User after PutUser", got, u)

		a := account("ryw")
		a.Mode = policy.ModeMonitor
		if err := tx.PutAccount(a); err != nil {
			return err
		}
		if got, err := tx.Account(); err != nil || got.Mode != policy.ModeMonitor {
			t.Errorf("Account after PutAccount in the same transaction: %+v, %v", got, err)
		}

		ses := policy.Session{TokenHash: "h-alice", Username: "alice", Role: policy.RoleUser, CreatedAt: t0, ExpiresAt: expires}
		if err := tx.PutSession(ses); err != nil {
			return err
		}
		n, err := tx.DeleteSessions("alice")
		if err != nil {
			return err
		}
		if n != 1 {
			t.Errorf("DeleteSessions after PutSession in the same transaction: %d, want 1", n)
		}
		return nil
	})
	if _, err := s.Session(t.Context(), "ryw", "h-alice"); !errors.Is(err, policy.ErrNotFound) {
		t.Fatalf("Session put and deleted in one transaction: %v, want ErrNotFound", err)
	}
}

var errBoom = errors.New("boom")

func testFailedUpdate(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "fa", "fb")
	before := addRules(t, s, "fa", rule("192.0.2.0/24", "kept"))
	d, err := s.LoadPolicy(ctx)
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	f := follow(t, s, d.Cursor)

	err = s.Update(ctx, "fa", func(tx policy.Tx) error {
		if _, err := tx.PutRule(rule("198.51.100.0/24", "lost")); err != nil {
			return err
		}
		if err := tx.DeleteRule(before[0].ID); err != nil {
			return err
		}
		a := account("fa")
		a.Mode = policy.ModeOff
		if err := tx.PutAccount(a); err != nil {
			return err
		}
		if err := tx.PutUser(policy.User{Username: "bob", CreatedAt: t0}); err != nil {
			return err
		}
		if err := tx.PutSession(policy.Session{TokenHash: "h", Role: policy.RoleMaster, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			return err
		}
		if err := tx.Audit(policy.AuditEntry{Actor: "master", Action: "lost"}); err != nil {
			return err
		}
		return fmt.Errorf("validate: %w", errBoom)
	})
	wantErr(t, "Update whose fn fails", err, errBoom)

	p, err := s.LoadAccountPolicy(ctx, "fa")
	if err != nil {
		t.Fatalf("LoadAccountPolicy: %v", err)
	}
	equal(t, "policy after a failed Update", p, policy.AccountPolicy{Account: account("fa"), Rules: before, WebKnown: true})
	mustUpdate(t, s, "fa", func(tx policy.Tx) error {
		if _, err := tx.User("bob"); !errors.Is(err, policy.ErrNotFound) {
			t.Errorf("user put by a failed Update: %v, want ErrNotFound", err)
		}
		return nil
	})
	if _, err := s.Session(ctx, "fa", "h"); !errors.Is(err, policy.ErrNotFound) {
		t.Errorf("session put by a failed Update: %v, want ErrNotFound", err)
	}
	entries, err := s.Audit(ctx, "fa", policy.AuditQuery{})
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	for _, e := range entries {
		if e.Action == "lost" {
			t.Fatalf("audit entry of a failed Update was written: %+v", e)
		}
	}

	// The feed must not carry the failed Update: the next change of fa is
	// the one committed now.
	addRules(t, s, "fa", rule("203.0.113.0/24", "marker"))
	c := f.next(t)
	if c.Account != "fa" {
		t.Fatalf("first change after a failed Update: %+v, want fa", c)
	}
	f.quiet(t)
}

func testUsers(t *testing.T, s policy.Store) {
	mustCreate(t, s, "u1", "u2")
	mk := func(name string, active bool) policy.User {
		return policy.User{
			Account: "u1", Username: name, DisplayName: "Dr. " + name, Active: active,
			DesktopAccess: true, MustResetPassword: true, PasswordHash: "$2a$10$x",
			CreatedAt: t0, LastLoginAt: t0.Add(time.Hour), LastLoginIP: "192.0.2.9",
			MFA: policy.SecondFactor{TOTPSecret: "v1.sealed-" + name, TOTPLastStep: 59_000_001,
				RecoveryHashes: []string{"h1", "h2"}, EnrolledAt: t0,
				// Passkeys ride on the person: a usernameless login finds
				// them through Users, so every field must come back.
				PasskeyHandle: "u1.handle-" + name,
				Passkeys: []policy.Passkey{{ID: "cred-" + name, Name: "laptop", CreatedAt: t0,
					LastUsedAt: t0.Add(time.Minute), Credential: []byte(`{"id":"x"}`)}},
				UsedChallenges: []policy.UsedChallenge{{Hash: "c1", Expires: t0.Add(5 * time.Minute)}}},
			Email: policy.MailAddress{Address: name + "@example.com",
				Confirm: policy.MailToken{Hash: "ef56", ExpiresAt: t0.Add(24 * time.Hour), For: name + "@example.com"}},
		}
	}
	mustUpdate(t, s, "u1", func(tx policy.Tx) error {
		for _, n := range []string{"carol", "alice"} {
			if err := tx.PutUser(mk(n, true)); err != nil {
				return err
			}
		}
		return nil
	})
	mustUpdate(t, s, "u1", func(tx policy.Tx) error { return tx.PutUser(mk("bob", true)) })
	mustUpdate(t, s, "u1", func(tx policy.Tx) error { return tx.PutUser(mk("alice", false)) })
	if err := s.Update(t.Context(), "u1", func(tx policy.Tx) error { return tx.PutUser(policy.User{}) }); err == nil {
		t.Fatal("PutUser accepted an empty username")
	}

	mustUpdate(t, s, "u1", func(tx policy.Tx) error {
		us, err := tx.Users()
		if err != nil {
			return err
		}
		equal(t, "Users, sorted by username", us, []policy.User{mk("alice", false), mk("bob", true), mk("carol", true)})
		u, err := tx.User("bob")
		if err != nil {
			return err
		}
		equal(t, "User(bob)", u, mk("bob", true))
		_, err = tx.User("zed")
		wantErr(t, "User(zed)", err, policy.ErrNotFound)
		return nil
	})
	mustUpdate(t, s, "u2", func(tx policy.Tx) error {
		us, err := tx.Users()
		if err != nil {
			return err
		}
		if len(us) != 0 {
			t.Errorf("users of u2: %+v, want none (they belong to u1)", us)
		}
		return nil
	})
}

func testDevices(t *testing.T, s policy.Store) {
	mustCreate(t, s, "d1", "d2")
	mk := func(id string, st policy.DeviceStatus) policy.Device {
		return policy.Device{
			ID: id, Account: "d1", Owner: "alice", Name: "Alice's laptop " + id, Platform: "windows/amd64",
			Status: st, PublicKey: bytes.Repeat([]byte{id[0]}, 32), EnrolledAt: t0,
			LastSeenAt: t0.Add(time.Hour), LastIP: netip.MustParseAddr("2001:db8::7"), LastRequest: t0.Add(time.Hour),
		}
	}
	mustUpdate(t, s, "d1", func(tx policy.Tx) error {
		for _, id := range []string{"cccc", "aaaa"} {
			if err := tx.PutDevice(mk(id, policy.DeviceActive)); err != nil {
				return err
			}
		}
		// Read your writes, before commit.
		d, err := tx.Device("cccc")
		equal(t, "Device(cccc) before commit", d, mk("cccc", policy.DeviceActive))
		return err
	})
	mustUpdate(t, s, "d1", func(tx policy.Tx) error { return tx.PutDevice(mk("bbbb", policy.DevicePending)) })
	mustUpdate(t, s, "d1", func(tx policy.Tx) error { return tx.PutDevice(mk("aaaa", policy.DeviceInactive)) })
	if err := s.Update(t.Context(), "d1", func(tx policy.Tx) error { return tx.PutDevice(policy.Device{}) }); err == nil {
		t.Fatal("PutDevice accepted an empty ID")
	}
	// A failed transaction writes no device.
	boom := errors.New("boom")
	err := s.Update(t.Context(), "d1", func(tx policy.Tx) error {
		if err := tx.PutDevice(mk("zzzz", policy.DeviceActive)); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, "failed Update", err, boom)

	mustUpdate(t, s, "d1", func(tx policy.Tx) error {
		ds, err := tx.Devices()
		if err != nil {
			return err
		}
		equal(t, "Devices, sorted by ID", ds, []policy.Device{mk("aaaa", policy.DeviceInactive),
			mk("bbbb", policy.DevicePending), mk("cccc", policy.DeviceActive)})
		_, err = tx.Device("zzzz")
		wantErr(t, "Device(zzzz)", err, policy.ErrNotFound)
		return nil
	})
	mustUpdate(t, s, "d2", func(tx policy.Tx) error {
		ds, err := tx.Devices()
		if err != nil {
			return err
		}
		if len(ds) != 0 {
			t.Errorf("devices of d2: %+v, want none (they belong to d1)", ds)
		}
		_, err = tx.Device("aaaa")
		wantErr(t, "Device(aaaa) of d2", err, policy.ErrNotFound)
		return nil
	})
}

func testEnrollments(t *testing.T, s policy.Store) {
	mustCreate(t, s, "e1", "e2")
	mk := func(h string) policy.Enrollment {
		return policy.Enrollment{CodeHash: h, Account: "e1", Owner: "bob", Name: "front desk PC",
			CreatedAt: t0, ExpiresAt: t0.Add(10 * time.Minute)}
	}
	mustUpdate(t, s, "e1", func(tx policy.Tx) error {
		for _, h := range []string{"h3", "h1", "h2"} {
			if err := tx.PutEnrollment(mk(h)); err != nil {
				return err
			}
		}
		return tx.DeleteEnrollment("h3") // deleted before it was committed
	})
	mustUpdate(t, s, "e1", func(tx policy.Tx) error {
		if err := tx.DeleteEnrollment("h1"); err != nil {
			return err
		}
		es, err := tx.Enrollments()
		equal(t, "Enrollments after a delete in the same transaction", es, []policy.Enrollment{mk("h2")})
		return err
	})
	mustUpdate(t, s, "e1", func(tx policy.Tx) error { return tx.DeleteEnrollment("never-there") })
	if err := s.Update(t.Context(), "e1", func(tx policy.Tx) error { return tx.PutEnrollment(policy.Enrollment{}) }); err == nil {
		t.Fatal("PutEnrollment accepted an empty hash")
	}
	mustUpdate(t, s, "e1", func(tx policy.Tx) error {
		es, err := tx.Enrollments()
		equal(t, "Enrollments", es, []policy.Enrollment{mk("h2")})
		return err
	})
	mustUpdate(t, s, "e2", func(tx policy.Tx) error {
		es, err := tx.Enrollments()
		if len(es) != 0 {
			t.Errorf("enrolment codes of e2: %+v, want none", es)
		}
		return err
	})
}

func testSessions(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "s1", "s2")
	now := time.Now().Truncate(time.Second)
	mk := func(hash, user string, expires time.Time) policy.Session {
		role := policy.RoleUser
		if user == "" {
			role = policy.RoleMaster
		}
		return policy.Session{
			TokenHash: hash, Account: "s1", Username: user, Role: role,
			ClientIP: "192.0.2.1", UserAgent: "Firefox 140 on Windows", CreatedAt: now, ExpiresAt: expires,
			LastUsedAt: now,
		}
	}
	live := now.Add(time.Hour)
	sessions := []policy.Session{
		mk("h-master", "", live), mk("h-master2", "", live),
		mk("h-a1", "alice", live), mk("h-a2", "alice", live),
		mk("h-b1", "bob", live), mk("h-old", "erin", now.Add(-time.Hour)),
	}
	mustUpdate(t, s, "s1", func(tx policy.Tx) error {
		for _, ses := range sessions {
			if err := tx.PutSession(ses); err != nil {
				return err
			}
		}
		return nil
	})

	got, err := s.Session(ctx, "s1", "h-a1")
	if err != nil {
		t.Fatalf("Session(h-a1): %v", err)
	}
	equal(t, "Session(h-a1)", got, sessions[2])

	// Sessions lists one person's live ones, in View and in Update with
	// the transaction's own puts and deletions.
	err = s.View(ctx, "s1", func(tx policy.Tx) error {
		for _, c := range []struct {
			user string
			want []policy.Session
		}{
			{"alice", []policy.Session{sessions[2], sessions[3]}}, {"", []policy.Session{sessions[0], sessions[1]}},
			{"erin", nil}, {"nobody", nil},
		} {
			got, err := tx.Sessions(c.user)
			if err != nil {
				return err
			}
			equal(t, "Sessions("+c.user+")", got, c.want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, s, "s2", func(tx policy.Tx) error {
		got, err := tx.Sessions("alice")
		equal(t, "Sessions(alice) of another account", got, []policy.Session(nil))
		return err
	})
	if err := s.Update(ctx, "s1", func(tx policy.Tx) error {
		if err := tx.DeleteSession("h-a1"); err != nil {
			return err
		}
		extra := mk("h-a3", "alice", live)
		extra.Account = "s1"
		if err := tx.PutSession(extra); err != nil {
			return err
		}
		got, err := tx.Sessions("alice")
		equal(t, "Sessions(alice) after a delete and a put", got, []policy.Session{sessions[3], extra})
		if err != nil {
			return err
		}
		if _, err := tx.DeleteSessions("alice"); err != nil {
			return err
		}
		got, err = tx.Sessions("alice")
		equal(t, "Sessions(alice) after DeleteSessions", got, []policy.Session(nil))
		if err != nil {
			return err
		}
		return errors.New("roll back")
	}); err == nil || err.Error() != "roll back" {
		t.Fatalf("rolled-back update: %v", err)
	}
	for _, tc := range []struct{ acct, hash, why string }{
		{"s1", "h-old", "expired"},
		{"s1", "h-none", "never existed"},
		{"s2", "h-a1", "belongs to another account"},
	} {
		_, err := s.Session(ctx, tc.acct, tc.hash)
		wantErr(t, "Session that "+tc.why, err, policy.ErrNotFound)
	}

	var counts []int
	mustUpdate(t, s, "s1", func(tx policy.Tx) error {
		counts = counts[:0]
		if err := tx.DeleteSession("h-master"); err != nil {
			return err
		}
		if err := tx.DeleteSession("h-none"); err != nil {
			return fmt.Errorf("DeleteSession of a missing session: %w", err)
		}
		for _, u := range []string{"alice", "alice", ""} {
			n, err := tx.DeleteSessions(u)
			if err != nil {
				return err
			}
			counts = append(counts, n)
		}
		return nil
	})
	if want := []int{2, 0, 1}; !slices.Equal(counts, want) {
		t.Fatalf("DeleteSessions(alice, alice, master) = %v, want %v", counts, want)
	}
	for _, h := range []string{"h-master", "h-master2", "h-a1", "h-a2"} {
		_, err := s.Session(ctx, "s1", h)
		wantErr(t, "Session("+h+") after it was deleted", err, policy.ErrNotFound)
	}
	if _, err := s.Session(ctx, "s1", "h-b1"); err != nil {
		t.Fatalf("bob's session after alice's were deleted: %v", err)
	}
}

func testAudit(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "au", "other")
	const n = 55
	for i := range n {
		mustUpdate(t, s, "au", func(tx policy.Tx) error {
			e := policy.AuditEntry{
				Actor: "master", Role: policy.RoleMaster, ClientIP: "192.0.2.1",
				Action: fmt.Sprintf("step %d", i), Target: "rule 1",
				Before: json.RawMessage(`{"mode":"on"}`), After: json.RawMessage(`{"mode":"off"}`),
			}
			if i%2 == 0 {
				e.Time = t0.Add(time.Duration(i) * time.Second)
			}
			return tx.Audit(e)
		})
	}
	// Two entries in one Update: the later call is the newer entry.
	mustUpdate(t, s, "au", func(tx policy.Tx) error {
		for _, a := range []string{"pair 1", "pair 2"} {
			if err := tx.Audit(policy.AuditEntry{Actor: "master", Action: a}); err != nil {
				return err
			}
		}
		return nil
	})
	want := []string{"pair 2", "pair 1"}
	for i := n - 1; i >= 0; i-- {
		want = append(want, fmt.Sprintf("step %d", i))
	}
	want = append(want, "account.create")

	first, err := s.Audit(ctx, "au", policy.AuditQuery{})
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	if len(first) != 50 {
		t.Fatalf("Audit with no limit returned %d entries, want the default 50", len(first))
	}
	e := first[2]
	if e.ID == "" || e.Account != "au" || e.Actor != "master" || e.Role != policy.RoleMaster ||
		e.ClientIP != "192.0.2.1" || e.Target != "rule 1" ||
		string(e.Before) != `{"mode":"on"}` || string(e.After) != `{"mode":"off"}` {
		t.Fatalf("audit entry did not round-trip: %+v", e)
	}
	if !e.Time.Equal(t0.Add(54 * time.Second)) {
		t.Fatalf("audit entry with a Time: got %v, want it kept", e.Time)
	}
	if first[3].Time.IsZero() {
		t.Fatalf("audit entry without a Time: the store did not set one: %+v", first[3])
	}

	// Page through everything, 20 at a time.
	var got []string
	ids := map[string]bool{}
	before := ""
	for page := 0; ; page++ {
		es, err := s.Audit(ctx, "au", policy.AuditQuery{Before: before, Limit: 20})
		if err != nil {
			t.Fatalf("Audit page %d: %v", page, err)
		}
		if len(es) > 20 {
			t.Fatalf("Audit page %d: %d entries, limit 20", page, len(es))
		}
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			if ids[e.ID] {
				t.Fatalf("audit ID %q returned twice", e.ID)
			}
			ids[e.ID] = true
			got = append(got, e.Action)
		}
		before = es[len(es)-1].ID
	}
	if !slices.Equal(got, want) {
		t.Fatalf("audit paged newest first:\n got  %q\n want %q", got, want)
	}
	all, err := s.Audit(ctx, "au", policy.AuditQuery{Limit: 5000})
	if err != nil {
		t.Fatalf("Audit with a large limit: %v", err)
	}
	if len(all) != len(want) {
		t.Fatalf("Audit with limit 5000 returned %d entries, want all %d", len(all), len(want))
	}
	others, err := s.Audit(ctx, "other", policy.AuditQuery{})
	if err != nil || len(others) != 1 || others[0].Action != "account.create" {
		t.Fatalf("audit of another account: %+v, %v; want only its creation", others, err)
	}
}

func testUsage(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "us")
	rs := addRules(t, s, "us", rule("192.0.2.0/24", "a"), rule("198.51.100.0/24", "b"), rule("203.0.113.0/24", "c"))
	err := s.RecordUsage(ctx, []policy.Usage{
		{Account: "us", Rule: rs[0].ID, LastUsed: t0.Add(10 * time.Second), Hits: 3},
		{Account: "us", Rule: rs[1].ID, LastUsed: t0.Add(20 * time.Second), Hits: 1},
		{Account: "ghost", Rule: 1, LastUsed: t0, Hits: 1},
		{Account: "us", Rule: 999999, LastUsed: t0, Hits: 1},
	})
	if err != nil {
		t.Fatalf("RecordUsage: %v", err)
	}
	// An older flush arriving late adds hits but does not move LastUsed back.
	err = s.RecordUsage(ctx, []policy.Usage{{Account: "us", Rule: rs[0].ID, LastUsed: t0.Add(5 * time.Second), Hits: 2}})
	if err != nil {
		t.Fatalf("RecordUsage: %v", err)
	}
	// Replacing a rule keeps its usage.
	renamed := rs[0]
	renamed.Note = "a, renamed"
	mustUpdate(t, s, "us", func(tx policy.Tx) error { _, err := tx.PutRule(renamed); return err })

	want := []policy.Rule{renamed, rs[1], rs[2]}
	want[0].Hits, want[0].LastUsed = 5, t0.Add(10*time.Second)
	want[1].Hits, want[1].LastUsed = 1, t0.Add(20*time.Second)
	equal(t, "Rules with usage", txRules(t, s, "us"), want)

	// A deleted rule takes its usage with it.
	mustUpdate(t, s, "us", func(tx policy.Tx) error { return tx.DeleteRule(rs[1].ID) })
	equal(t, "Rules with usage after a delete", txRules(t, s, "us"), []policy.Rule{want[0], want[2]})
}

// batchLoader is a store that loads many accounts' policies at once, as
// the engine does for a feed batch (redisstore).
type batchLoader interface {
	LoadAccountPolicies(ctx context.Context, ids []string) ([]*policy.AccountPolicy, error)
}

func testLoadPolicy(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "lp2", "lp1", "empty")
	r1 := addRules(t, s, "lp1", rule("192.0.2.0/24", "x"), rule("2001:db8:1::/64", "y"))
	r2 := addRules(t, s, "lp2", rule("198.51.100.0/24", "z"))
	if err := s.RecordUsage(ctx, []policy.Usage{{Account: "lp1", Rule: r1[0].ID, LastUsed: t0, Hits: 9}}); err != nil {
		t.Fatalf("RecordUsage: %v", err)
	}
	off := account("lp2")
	off.Mode = policy.ModeOff
	mustUpdate(t, s, "lp2", func(tx policy.Tx) error { return tx.PutAccount(off) })

	want := map[string]policy.AccountPolicy{
		"lp1":   {Account: account("lp1"), Rules: r1, WebKnown: true},
		"lp2":   {Account: off, Rules: r2, WebKnown: true},
		"empty": {Account: account("empty"), WebKnown: true},
	}
	d, err := s.LoadPolicy(ctx)
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	if d.Cursor == "" {
		t.Fatal("LoadPolicy returned no cursor")
	}
	if len(d.Accounts) != len(want) {
		t.Fatalf("LoadPolicy returned %d accounts, want %d", len(d.Accounts), len(want))
	}
	for _, p := range d.Accounts {
		w, ok := want[p.Account.ID]
		if !ok {
			t.Fatalf("LoadPolicy returned unknown account %+v", p.Account)
		}
		p.Rules = withoutUsage(p.Rules)
		equal(t, "LoadPolicy account "+p.Account.ID, p, w)

		one, err := s.LoadAccountPolicy(ctx, p.Account.ID)
		if err != nil {
			t.Fatalf("LoadAccountPolicy(%s): %v", p.Account.ID, err)
		}
		one.Rules = withoutUsage(one.Rules)
		equal(t, "LoadAccountPolicy "+p.Account.ID, one, w)
	}

	// A store that loads many accounts at once (the engine uses it for a
	// feed batch) must answer as LoadAccountPolicy does, in the order
	// asked, with nil for an account that does not exist; of the account
	// it need return only what the gate compiles (ID, Mode, Settings).
	b, ok := s.(batchLoader)
	if !ok {
		return
	}
	ids := []string{"lp2", "missing", "lp1", "empty", "lp1"}
	got, err := b.LoadAccountPolicies(ctx, ids)
	if err != nil {
		t.Fatalf("LoadAccountPolicies: %v", err)
	}
	if len(got) != len(ids) {
		t.Fatalf("LoadAccountPolicies returned %d policies for %d accounts", len(got), len(ids))
	}
	for i, id := range ids {
		w, exists := want[id]
		switch {
		case !exists && got[i] != nil:
			t.Errorf("LoadAccountPolicies(%s) = %+v, want nil for a missing account", id, got[i])
		case exists && got[i] == nil:
			t.Errorf("LoadAccountPolicies(%s) = nil, want its policy", id)
		case exists:
			p := *got[i]
			p.Rules = withoutUsage(p.Rules)
			p.Account, w.Account = gatePart(p.Account), gatePart(w.Account)
			equal(t, "LoadAccountPolicies "+id, p, w)
		}
	}
	if got, err := b.LoadAccountPolicies(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("LoadAccountPolicies(nil) = %v, %v; want nothing", got, err)
	}
}

func testFollowDelivers(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "fd1")
	d, err := s.LoadPolicy(ctx)
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	f := follow(t, s, d.Cursor)

	start := time.Now()
	added := addRules(t, s, "fd1", rule("192.0.2.0/24", "x"))
	c := f.next(t)
	if c.Account != "fd1" || c.Cursor == "" {
		t.Fatalf("change after PutRule: %+v, want fd1 with a cursor", c)
	}
	if !c.Time.IsZero() && (c.Time.Before(start.Add(-time.Minute)) || c.Time.After(time.Now().Add(time.Minute))) {
		t.Fatalf("change Time %v is not when it was committed (about %v)", c.Time, start)
	}

	// One change per policy write, in commit order for one account; a new
	// account is a change too.
	mustCreate(t, s, "fd2")
	mustUpdate(t, s, "fd1", func(tx policy.Tx) error { return tx.DeleteRule(added[0].ID) })
	a := account("fd1")
	a.Mode = policy.ModeMonitor
	mustUpdate(t, s, "fd1", func(tx policy.Tx) error { return tx.PutAccount(a) })
	addRules(t, s, "fd2", rule("198.51.100.0/24", "y"))

	var got []string
	for range 4 {
		got = append(got, f.next(t).Account)
	}
	slices.Sort(got)
	if want := []string{"fd1", "fd1", "fd2", "fd2"}; !slices.Equal(got, want) {
		t.Fatalf("changes: %v, want %v", got, want)
	}
	f.quiet(t)

	// What a follower sees agrees with the store.
	p, err := s.LoadAccountPolicy(ctx, "fd1")
	if err != nil || p.Account.Mode != policy.ModeMonitor || len(p.Rules) != 0 {
		t.Fatalf("LoadAccountPolicy after the changes: %+v, %v", p, err)
	}
}

func testFollowOnlyPolicy(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "op")
	rs := addRules(t, s, "op", rule("192.0.2.0/24", "x"))
	d, err := s.LoadPolicy(ctx)
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	f := follow(t, s, d.Cursor)

	for _, tc := range []struct {
		name string
		fn   func(tx policy.Tx) error
	}{
		{"user", func(tx policy.Tx) error { return tx.PutUser(policy.User{Username: "alice", CreatedAt: t0}) }},
		{"session", func(tx policy.Tx) error {
			return tx.PutSession(policy.Session{TokenHash: "h", Role: policy.RoleMaster, ExpiresAt: time.Now().Add(time.Hour)})
		}},
		{"session delete", func(tx policy.Tx) error { _, err := tx.DeleteSessions(""); return err }},
		{"device", func(tx policy.Tx) error {
			return tx.PutDevice(policy.Device{ID: "d1", Owner: "alice", Status: policy.DeviceActive, EnrolledAt: t0})
		}},
		{"enrolment code", func(tx policy.Tx) error {
			return tx.PutEnrollment(policy.Enrollment{CodeHash: "h", Owner: "alice", CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)})
		}},
		{"audit", func(tx policy.Tx) error { return tx.Audit(policy.AuditEntry{Actor: "master", Action: "login"}) }},
		{"read only", func(tx policy.Tx) error { _, err := tx.Rules(); return err }},
	} {
		mustUpdate(t, s, "op", tc.fn)
	}
	if err := s.RecordUsage(ctx, []policy.Usage{{Account: "op", Rule: rs[0].ID, LastUsed: t0, Hits: 1}}); err != nil {
		t.Fatalf("RecordUsage: %v", err)
	}
	f.quiet(t)
	addRules(t, s, "op", rule("198.51.100.0/24", "y"))
	if c := f.next(t); c.Account != "op" {
		t.Fatalf("change: %+v, want op", c)
	}
	f.quiet(t)
}

// testWebUsers: the gate's view of who may sign in to web applications
// comes with every account's policy, and a user write that changes it
// (web access given or taken, a logout raising the epoch) is a policy
// change on the feed, while one that does not change it is not. Taking
// web access away raises the epoch, so that a session opened before is
// not good again when access comes back.
func testWebUsers(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "wu")
	alice := policy.User{Username: "alice", Active: true, WebAccess: true, CreatedAt: t0}
	mustUpdate(t, s, "wu", func(tx policy.Tx) error { return tx.PutUser(alice) })
	p, err := s.LoadAccountPolicy(ctx, "wu")
	if err != nil {
		t.Fatalf("LoadAccountPolicy: %v", err)
	}
	equal(t, "web users", p.Web, []policy.WebUser{{Username: "alice"}})
	if !p.WebKnown {
		t.Fatal("LoadAccountPolicy: WebKnown is false")
	}
	d, err := s.LoadPolicy(ctx)
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	f := follow(t, s, d.Cursor)

	// A login (last login time) changes nothing the gate sees.
	mustUpdate(t, s, "wu", func(tx policy.Tx) error {
		u, err := tx.User("alice")
		u.LastLoginAt = t0.Add(time.Minute)
		return errors.Join(err, tx.PutUser(u))
	})
	f.quiet(t)
	// Web access taken away: a change, and the epoch goes up.
	mustUpdate(t, s, "wu", func(tx policy.Tx) error {
		u, err := tx.User("alice")
		u.WebAccess = false
		return errors.Join(err, tx.PutUser(u))
	})
	if c := f.next(t); c.Account != "wu" {
		t.Fatalf("change: %+v, want wu", c)
	}
	// And given back: a change again, at the higher epoch.
	mustUpdate(t, s, "wu", func(tx policy.Tx) error {
		u, err := tx.User("alice")
		u.WebAccess = true
		return errors.Join(err, tx.PutUser(u))
	})
	if c := f.next(t); c.Account != "wu" {
		t.Fatalf("change: %+v, want wu", c)
	}
	p, err = s.LoadAccountPolicy(ctx, "wu")
	if err != nil {
		t.Fatalf("LoadAccountPolicy: %v", err)
	}
	equal(t, "web users after access came back", p.Web, []policy.WebUser{{Username: "alice", Epoch: 1}})
	if b, ok := s.(batchLoader); ok {
		got, err := b.LoadAccountPolicies(ctx, []string{"wu"})
		if err != nil || len(got) != 1 || got[0] == nil {
			t.Fatalf("LoadAccountPolicies: %v, %v", got, err)
		}
		equal(t, "LoadAccountPolicies web users", got[0].Web, p.Web)
		if !got[0].WebKnown {
			t.Error("LoadAccountPolicies: WebKnown is false")
		}
	}
	// The master's epoch never goes down.
	mustUpdate(t, s, "wu", func(tx policy.Tx) error {
		a, err := tx.Account()
		a.MasterWeb.Epoch = 3
		return errors.Join(err, tx.PutAccount(a))
	})
	f.next(t)
	mustUpdate(t, s, "wu", func(tx policy.Tx) error {
		a, err := tx.Account()
		a.MasterWeb.Epoch = 1
		return errors.Join(err, tx.PutAccount(a))
	})
	a, err := s.Account(ctx, "wu")
	if err != nil {
		t.Fatalf("Account: %v", err)
	}
	if a.MasterWeb.Epoch != 3 {
		t.Fatalf("master web epoch %d after a put of 1 over 3, want 3", a.MasterWeb.Epoch)
	}
}

func testFollowResume(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "fr", "marker")
	d, err := s.LoadPolicy(ctx)
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	f := follow(t, s, d.Cursor)
	for i := range 3 {
		addRules(t, s, "fr", rule(fmt.Sprintf("192.0.2.%d/32", i), "x"))
	}
	var cs []policy.Change
	for range 3 {
		cs = append(cs, f.next(t))
	}

	// Following from the first change's cursor replays exactly the two
	// after it; the marker committed next proves nothing else was queued.
	g := follow(t, s, cs[0].Cursor)
	for i := range 2 {
		if c := g.next(t); c.Account != "fr" {
			t.Fatalf("replayed change %d: %+v, want fr", i, c)
		}
	}
	addRules(t, s, "marker", rule("198.51.100.0/24", "m"))
	if c := g.next(t); c.Account != "marker" {
		t.Fatalf("change after the replay: %+v, want the marker", c)
	}
	// From the last change's cursor, only the marker.
	h := follow(t, s, cs[2].Cursor)
	if c := h.next(t); c.Account != "marker" {
		t.Fatalf("change after the last cursor: %+v, want the marker", c)
	}
}

func testFollowStops(t *testing.T, s policy.Store) {
	mustCreate(t, s, "fs")
	d, err := s.LoadPolicy(t.Context())
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	f := follow(t, s, d.Cursor)
	time.Sleep(20 * time.Millisecond) // let it block
	start := time.Now()
	f.stop()
	select {
	case <-f.done:
		if errors.Is(f.err, policy.ErrFeedGap) || errors.Is(f.err, policy.ErrUnavailable) {
			t.Fatalf("Follow ended by its context returned %v", f.err)
		}
		t.Logf("Follow returned %v, %v after its context ended", f.err, time.Since(start))
	case <-time.After(waitChange):
		t.Fatalf("Follow did not return within %v of its context ending", waitChange)
	}
}

func testConcurrentUpdates(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "cc")
	const writers = 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			errs <- s.Update(ctx, "cc", func(tx policy.Tx) error {
				// Read, then write: a lost update would drop a rule.
				if _, err := tx.Rules(); err != nil {
					return err
				}
				if _, err := tx.PutRule(rule(fmt.Sprintf("10.0.%d.0/24", i), fmt.Sprintf("writer %d", i))); err != nil {
					return err
				}
				return tx.Audit(policy.AuditEntry{Actor: "master", Action: fmt.Sprintf("writer %d", i)})
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Update: %v", err)
		}
	}
	rs := txRules(t, s, "cc")
	notes := map[string]bool{}
	ids := map[policy.RuleID]bool{}
	for _, r := range rs {
		notes[r.Note], ids[r.ID] = true, true
	}
	if len(rs) != writers || len(notes) != writers || len(ids) != writers {
		t.Fatalf("after %d concurrent Updates: %d rules, %d notes, %d IDs; want %d of each", writers, len(rs), len(notes), len(ids), writers)
	}
	es, err := s.Audit(ctx, "cc", policy.AuditQuery{Limit: 100})
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	if len(es) != writers+1 {
		t.Fatalf("after %d concurrent Updates: %d audit entries, want %d (one per write, one for the creation)", writers, len(es), writers+1)
	}
}

// testReseed restores a snapshot's policy into an empty store: accounts
// with their modes and rules (IDs kept), the snapshot's generation, one
// feed entry and one audit entry per account; existing accounts are kept,
// a store of another generation is refused, and new rule IDs continue
// above the restored ones.
func testReseed(t *testing.T, s policy.Store) {
	ctx := t.Context()
	monitor := account("rs1")
	monitor.Mode = policy.ModeMonitor
	r1 := rule("192.0.2.0/24", "restored")
	r1.ID = 7
	r2 := rule("2001:db8::/48", "restored")
	r2.ID = 40
	r2.ExpiresAt = t0.Add(24 * time.Hour)
	d := &policy.Data{Generation: "gen-from-snapshot", Accounts: []policy.AccountPolicy{
		{Account: monitor, Rules: []policy.Rule{r1, r2}},
		{Account: account("rs2")},
	}}
	before, err := s.LoadPolicy(ctx)
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	f := follow(t, s, before.Cursor)
	audit := policy.AuditEntry{Actor: "operator", Role: policy.RoleOperator, Action: "store.reseed"}
	res, err := s.Reseed(ctx, d, audit)
	if err != nil {
		t.Fatalf("Reseed: %v", err)
	}
	equal(t, "first Reseed", res, policy.ReseedResult{Restored: 2, Rules: 2})
	seen := map[string]bool{}
	for range 2 {
		seen[f.next(t).Account] = true
	}
	equal(t, "feed entries", seen, map[string]bool{"rs1": true, "rs2": true})

	after, err := s.LoadPolicy(ctx)
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	if after.Generation != d.Generation {
		t.Fatalf("generation after Reseed = %q, want the snapshot's %q", after.Generation, d.Generation)
	}
	got, err := s.LoadAccountPolicy(ctx, "rs1")
	if err != nil {
		t.Fatalf("LoadAccountPolicy: %v", err)
	}
	r1.Account, r2.Account = "rs1", "rs1"
	equal(t, "restored account", got, policy.AccountPolicy{Account: monitor, Rules: []policy.Rule{r1, r2}, WebKnown: true})
	entries, err := s.Audit(ctx, "rs1", policy.AuditQuery{})
	if err != nil || len(entries) != 1 || entries[0].Action != "store.reseed" {
		t.Fatalf("audit after Reseed: %+v, %v; want one store.reseed entry", entries, err)
	}
	// Writes work again, and new rule IDs never collide with restored ones.
	added := addRules(t, s, "rs1", rule("198.51.100.0/24", "new"))
	if added[0].ID <= 40 {
		t.Fatalf("new rule got ID %d, at or below a restored one (40)", added[0].ID)
	}

	// Again: everything is there already, nothing changes.
	res, err = s.Reseed(ctx, d, audit)
	if err != nil {
		t.Fatalf("second Reseed: %v", err)
	}
	equal(t, "second Reseed", res, policy.ReseedResult{Skipped: 2})
	if n := len(txRules(t, s, "rs1")); n != 3 {
		t.Fatalf("second Reseed changed the rules: %d, want 3", n)
	}

	other := &policy.Data{Generation: "another-store", Accounts: []policy.AccountPolicy{{Account: account("rs3")}}}
	_, err = s.Reseed(ctx, other, audit)
	wantErr(t, "Reseed with another generation", err, policy.ErrGenerationMismatch)
	if _, err := s.Account(ctx, "rs3"); !errors.Is(err, policy.ErrNotFound) {
		t.Fatalf("a refused Reseed created an account: %v", err)
	}
	if _, err := s.Reseed(ctx, &policy.Data{}, audit); err == nil {
		t.Fatal("Reseed of a snapshot without a generation succeeded")
	}
}

// testDeviceKeys: an account that requires a known device carries its
// device keys, with their standing, in its policy, and a change to a user
// or a device of it reaches followers as a policy change.
func testDeviceKeys(t *testing.T, s policy.Store) {
	ctx := t.Context()
	mustCreate(t, s, "dk")
	key := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	mustUpdate(t, s, "dk", func(tx policy.Tx) error {
		if err := tx.PutUser(policy.User{Username: "alice", Active: true, DesktopAccess: true, CreatedAt: t0}); err != nil {
			return err
		}
		if err := tx.PutUser(policy.User{Username: "bob", Active: true, CreatedAt: t0}); err != nil {
			return err
		}
		for _, d := range []policy.Device{
			{ID: "aaaa", Owner: "alice", Status: policy.DeviceActive, PublicKey: key(1), EnrolledAt: t0},
			{ID: "bbbb", Owner: "alice", Status: policy.DeviceInactive, PublicKey: key(2), EnrolledAt: t0},
			{ID: "cccc", Owner: "bob", Status: policy.DeviceActive, PublicKey: key(3), EnrolledAt: t0},
		} {
			if err := tx.PutDevice(d); err != nil {
				return err
			}
		}
		return nil
	})
	p, err := s.LoadAccountPolicy(ctx, "dk")
	if err != nil {
		t.Fatalf("LoadAccountPolicy: %v", err)
	}
	if len(p.Devices) != 0 {
		t.Fatalf("devices of an account that does not require them: %v", p.Devices)
	}
	mustUpdate(t, s, "dk", func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.Settings.RequireDevice = true
		return tx.PutAccount(a)
	})
	want := []policy.DeviceKey{
		{Key: [32]byte(key(1)), Standing: policy.DeviceKnown},
		{Key: [32]byte(key(2)), Standing: policy.DeviceNotActive},
		{Key: [32]byte(key(3)), Standing: policy.DeviceOwnerBarred},
	}
	p, err = s.LoadAccountPolicy(ctx, "dk")
	if err != nil {
		t.Fatalf("LoadAccountPolicy: %v", err)
	}
	equal(t, "LoadAccountPolicy devices", p.Devices, want)
	d, err := s.LoadPolicy(ctx)
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	for _, ap := range d.Accounts {
		if ap.Account.ID == "dk" {
			equal(t, "LoadPolicy devices", ap.Devices, want)
		}
	}
	if b, ok := s.(batchLoader); ok {
		got, err := b.LoadAccountPolicies(ctx, []string{"dk"})
		if err != nil || len(got) != 1 || got[0] == nil {
			t.Fatalf("LoadAccountPolicies: %v, %v", got, err)
		}
		equal(t, "LoadAccountPolicies devices", got[0].Devices, want)
	}
	f := follow(t, s, d.Cursor)
	mustUpdate(t, s, "dk", func(tx policy.Tx) error {
		return tx.PutDevice(policy.Device{ID: "aaaa", Owner: "alice", Status: policy.DeviceInactive, PublicKey: key(1), EnrolledAt: t0})
	})
	if c := f.next(t); c.Account != "dk" {
		t.Fatalf("change: %+v, want dk", c)
	}
	mustUpdate(t, s, "dk", func(tx policy.Tx) error {
		return tx.PutUser(policy.User{Username: "bob", Active: true, DesktopAccess: true, CreatedAt: t0})
	})
	if c := f.next(t); c.Account != "dk" {
		t.Fatalf("change: %+v, want dk", c)
	}
	p, err = s.LoadAccountPolicy(ctx, "dk")
	if err != nil {
		t.Fatalf("LoadAccountPolicy: %v", err)
	}
	want[0].Standing, want[2].Standing = policy.DeviceNotActive, policy.DeviceKnown
	equal(t, "devices after the changes", p.Devices, want)
}
