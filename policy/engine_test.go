package policy_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

func openBolt(t *testing.T) *boltstore.Store {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "gk.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func createAccount(t *testing.T, st policy.Store, id string) {
	t.Helper()
	a := policy.Account{ID: id, Name: id, Mode: policy.ModeOn, CreatedAt: time.Now()}
	if err := st.CreateAccount(context.Background(), a, policy.AuditEntry{Actor: "test", Action: "account.create"}); err != nil {
		t.Fatal(err)
	}
}

func addRule(t *testing.T, st policy.Store, acct, cidr string, expires time.Time) policy.RuleID {
	t.Helper()
	var id policy.RuleID
	err := st.Update(context.Background(), acct, func(tx policy.Tx) error {
		p, err := policy.ParsePrefix(cidr)
		if err != nil {
			return err
		}
		r, err := tx.PutRule(policy.Rule{Prefix: p, Source: policy.SourceManual, ExpiresAt: expires, CreatedAt: time.Now()})
		id = r.ID
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func deleteRule(t *testing.T, st policy.Store, acct string, id policy.RuleID) {
	t.Helper()
	if err := st.Update(context.Background(), acct, func(tx policy.Tx) error { return tx.DeleteRule(id) }); err != nil {
		t.Fatal(err)
	}
}

// runEngine starts an engine on src and runs it until the test ends.
func runEngine(t *testing.T, opts policy.Options) *policy.Engine {
	t.Helper()
	if opts.RetryMax == 0 {
		opts.RetryMax = 50 * time.Millisecond
	}
	if opts.SnapshotInterval == 0 {
		opts.SnapshotInterval = 10 * time.Millisecond
	}
	e, err := policy.NewEngine(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.Start(ctx); err != nil {
		t.Logf("start: %v", err)
	}
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// eventually polls cond every millisecond until it holds or d passes, and
// returns how long it took.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

var (
	client   = netip.MustParseAddr("203.0.113.7")
	stranger = netip.MustParseAddr("198.51.100.9")
)

func TestEngineFollowsStore(t *testing.T) {
	st := openBolt(t)
	createAccount(t, st, "10042")
	e := runEngine(t, policy.Options{Source: st})
	var mu sync.Mutex
	var changed []string
	e.OnChange(func(_ *policy.Table, accts []string) {
		mu.Lock()
		changed = append(changed, accts...)
		mu.Unlock()
	})
	if ok, why := e.Ready(); !ok {
		t.Fatalf("not ready after a successful load: %s", why)
	}
	if d := e.Check("10042", client); d.Verdict != policy.Denied {
		t.Fatalf("no rules yet, got %v", d.Verdict)
	}
	id := addRule(t, st, "10042", "203.0.113.0/24", time.Time{})
	lag := eventually(t, time.Second, "rule not enforced", func() bool { return e.Check("10042", client).Verdict == policy.Allowed })
	t.Logf("rule enforced %v after commit", lag)
	if d := e.Check("10042", client); d.Rule != id {
		t.Errorf("matched rule %d, want %d", d.Rule, id)
	}
	if e.Check("10042", stranger).Verdict != policy.Denied || e.Check("other", client).Verdict != policy.Denied {
		t.Error("an address outside the rule, or an unknown account, was not denied")
	}
	deleteRule(t, st, "10042", id)
	eventually(t, time.Second, "deleted rule still enforced", func() bool { return e.Check("10042", client).Verdict == policy.Denied })
	// Listeners hear of a change just after the table holds it, so a
	// lookup can see the deletion a moment before they do.
	eventually(t, time.Second, "listeners did not hear of both changes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(changed) >= 2 && changed[len(changed)-1] == "10042"
	})
}

func TestEngineModes(t *testing.T) {
	st := openBolt(t)
	createAccount(t, st, "a")
	e := runEngine(t, policy.Options{Source: st})
	for _, tc := range []struct {
		mode policy.Mode
		want policy.Verdict
	}{{policy.ModeMonitor, policy.Monitored}, {policy.ModeOff, policy.Allowed}, {policy.ModeOn, policy.Denied}} {
		err := st.Update(context.Background(), "a", func(tx policy.Tx) error {
			a, err := tx.Account()
			if err != nil {
				return err
			}
			a.Mode = tc.mode
			return tx.PutAccount(a)
		})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Second, fmt.Sprintf("mode %s: want %v", tc.mode, tc.want), func() bool {
			return e.Check("a", stranger).Verdict == tc.want
		})
	}
}

// A rule stops matching at its expiry instant, driven by a timer.
func TestEngineExpiry(t *testing.T) {
	st := openBolt(t)
	createAccount(t, st, "a")
	e := runEngine(t, policy.Options{Source: st})
	expires := time.Now().Add(1500 * time.Millisecond)
	addRule(t, st, "a", client.String(), expires)
	addRule(t, st, "a", "192.0.2.1", time.Time{})
	eventually(t, time.Second, "grant not enforced", func() bool { return e.Check("a", client).Verdict == policy.Allowed })
	var notified atomic.Bool
	e.OnChange(func(_ *policy.Table, accts []string) {
		if len(accts) == 1 && accts[0] == "a" {
			notified.Store(true)
		}
	})
	eventually(t, 3*time.Second, "grant did not expire", func() bool { return e.Check("a", client).Verdict == policy.Denied })
	// Expiry is rounded up to the whole second: never earlier than asked.
	if now := time.Now(); now.Before(expires) {
		t.Fatalf("grant expired at %v, before its expiry %v", now, expires)
	}
	if late := time.Since(expires); late > 1100*time.Millisecond {
		t.Errorf("grant expired %v after its expiry", late)
	}
	if !notified.Load() {
		t.Error("expiry published no change for the account")
	}
	if e.Check("a", netip.MustParseAddr("192.0.2.1")).Verdict != policy.Allowed {
		t.Error("the rule without expiry went too")
	}
}

// The expiry timer is armed for the earliest expiry, and a change wakes
// it only for an earlier one: a grant that expires before the one the
// timer waits for still expires on time, and one that expires later,
// published meanwhile, does not hold it up.
func TestEngineExpiryEarlierThanArmed(t *testing.T) {
	st := openBolt(t)
	for _, id := range []string{"late", "soon", "later"} {
		createAccount(t, st, id)
	}
	e := runEngine(t, policy.Options{Source: st})
	addRule(t, st, "late", client.String(), time.Now().Add(time.Hour))
	eventually(t, time.Second, "hour-long grant not enforced", func() bool { return e.Check("late", client).Verdict == policy.Allowed })
	expires := time.Now().Add(1500 * time.Millisecond)
	addRule(t, st, "soon", client.String(), expires)
	addRule(t, st, "later", client.String(), expires.Add(time.Minute))
	eventually(t, time.Second, "grants not enforced", func() bool {
		return e.Check("soon", client).Verdict == policy.Allowed && e.Check("later", client).Verdict == policy.Allowed
	})
	eventually(t, 3*time.Second, "the earlier grant did not expire", func() bool { return e.Check("soon", client).Verdict == policy.Denied })
	if late := time.Since(expires); late > 1100*time.Millisecond {
		t.Errorf("grant expired %v after its expiry", late)
	}
	if e.Check("late", client).Verdict != policy.Allowed || e.Check("later", client).Verdict != policy.Allowed {
		t.Error("a grant expiring later went too")
	}
}

// flaky wraps a Source and fails while down, as a store outage would.
type flaky struct {
	policy.Source
	down atomic.Bool
	gen  atomic.Pointer[string] // overrides the generation when set
}

var errDown = fmt.Errorf("injected outage: %w", policy.ErrUnavailable)

func (f *flaky) LoadPolicy(ctx context.Context) (*policy.Data, error) {
	if f.down.Load() {
		return nil, errDown
	}
	d, err := f.Source.LoadPolicy(ctx)
	if g := f.gen.Load(); err == nil && g != nil {
		d.Generation = *g
	}
	return d, err
}

func (f *flaky) LoadAccountPolicy(ctx context.Context, acct string) (policy.AccountPolicy, error) {
	if f.down.Load() {
		return policy.AccountPolicy{}, errDown
	}
	return f.Source.LoadAccountPolicy(ctx, acct)
}

func (f *flaky) Follow(ctx context.Context, cursor string, fn func([]policy.Change)) error {
	if f.down.Load() {
		return errDown
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for ctx.Err() == nil && !f.down.Load() {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	err := f.Source.Follow(ctx, cursor, fn)
	if f.down.Load() {
		return errDown
	}
	return err
}

func TestEngineOutageKeepsEnforcingAndResyncs(t *testing.T) {
	st := openBolt(t)
	createAccount(t, st, "a")
	kept := addRule(t, st, "a", client.String(), time.Time{})
	src := &flaky{Source: st}
	e := runEngine(t, policy.Options{Source: src})
	eventually(t, time.Second, "initial rule", func() bool { return e.Check("a", client).Verdict == policy.Allowed })

	src.down.Store(true)
	eventually(t, time.Second, "outage not reported", func() bool { return !e.StoreUp() })
	// Changes made meanwhile (by another instance, say) are not seen...
	deleteRule(t, st, "a", kept)
	addRule(t, st, "a", stranger.String(), time.Time{})
	for range 50 {
		if e.Check("a", client).Verdict != policy.Allowed || e.Check("a", stranger).Verdict != policy.Denied {
			t.Fatal("policy changed during the outage: the gate must hold what it had")
		}
		time.Sleep(2 * time.Millisecond)
	}
	// ...until the store is back, when they all arrive.
	src.down.Store(false)
	eventually(t, 2*time.Second, "no resync after the outage", func() bool {
		return e.Check("a", stranger).Verdict == policy.Allowed && e.Check("a", client).Verdict == policy.Denied
	})
	eventually(t, time.Second, "store not reported up", e.StoreUp)
	addRule(t, st, "a", "192.0.2.1", time.Time{})
	eventually(t, time.Second, "feed not followed after resync", func() bool {
		return e.Check("a", netip.MustParseAddr("192.0.2.1")).Verdict == policy.Allowed
	})
}

func TestEngineStartsFromSnapshot(t *testing.T) {
	st := openBolt(t)
	createAccount(t, st, "a")
	addRule(t, st, "a", client.String(), time.Time{})
	snap := filepath.Join(t.TempDir(), "policy.snapshot")
	first := runEngine(t, policy.Options{Source: st, SnapshotPath: snap})
	eventually(t, time.Second, "rule", func() bool { return first.Check("a", client).Verdict == policy.Allowed })
	eventually(t, 2*time.Second, "snapshot file not written", func() bool { _, err := os.Stat(snap); return err == nil })

	down := &flaky{Source: st}
	down.down.Store(true)
	e := runEngine(t, policy.Options{Source: down, SnapshotPath: snap, LoadTimeout: 100 * time.Millisecond})
	if e.Check("a", client).Verdict != policy.Allowed || e.Check("a", stranger).Verdict != policy.Denied {
		t.Fatal("snapshot rules not enforced with the store down")
	}
	if ok, why := e.Ready(); !ok || why == "" {
		t.Errorf("Ready() = %v, %q; want ready with the outage explained", ok, why)
	}
	if e.StoreUp() {
		t.Error("store reported up")
	}
}

func TestEngineStartsClosedWithoutSnapshot(t *testing.T) {
	st := openBolt(t)
	createAccount(t, st, "a")
	addRule(t, st, "a", client.String(), time.Time{})
	for _, tc := range []struct {
		name    string
		content []byte
	}{
		{name: "no snapshot"},
		{name: "truncated snapshot", content: []byte("GKSNAP1\n\x00\x00\x00\x00\x00\x00\x01\x00")},
		{name: "garbage", content: []byte("not a snapshot at all, just some bytes that someone wrote here")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := filepath.Join(t.TempDir(), "policy.snapshot")
			if tc.content != nil {
				os.WriteFile(snap, tc.content, 0o600)
			}
			down := &flaky{Source: st}
			down.down.Store(true)
			e := runEngine(t, policy.Options{Source: down, SnapshotPath: snap, LoadTimeout: 50 * time.Millisecond})
			if e.Check("a", client).Verdict != policy.Denied {
				t.Fatal("allowed with neither store nor a good snapshot")
			}
			if ok, why := e.Ready(); ok || why == "" {
				t.Errorf("Ready() = %v, %q; want not ready, with a reason", ok, why)
			}
			// When the store comes back, the engine loads and gets ready.
			down.down.Store(false)
			eventually(t, 2*time.Second, "not ready after the store came back", func() bool { ok, _ := e.Ready(); return ok })
			if e.Check("a", client).Verdict != policy.Allowed {
				t.Error("rule not enforced after the store came back")
			}
		})
	}
}

// A store that answers with another generation (it lost its data and was
// set up again, or is empty) must not replace the enforced policy.
func TestEngineRefusesStoreThatLostItsData(t *testing.T) {
	st := openBolt(t)
	createAccount(t, st, "a")
	addRule(t, st, "a", client.String(), time.Time{})
	src := &flaky{Source: st}
	e := runEngine(t, policy.Options{Source: src})
	eventually(t, time.Second, "rule", func() bool { return e.Check("a", client).Verdict == policy.Allowed })
	empty := ""
	src.gen.Store(&empty)
	src.down.Store(true) // force a reload...
	eventually(t, time.Second, "outage", func() bool { return !e.StoreUp() })
	src.down.Store(false) // ...against a store whose generation is gone
	eventually(t, 2*time.Second, "mismatch not reported", func() bool {
		_, why := e.Ready()
		return why != "" && e.StoreUp()
	})
	if e.Check("a", client).Verdict != policy.Allowed {
		t.Fatal("the enforced policy was dropped for a store that lost its data")
	}
}

// Lookups race with publications; run with -race.
func TestLookupsRaceWithSwaps(t *testing.T) {
	st := openBolt(t)
	createAccount(t, st, "a")
	e := runEngine(t, policy.Options{Source: st})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var lookups atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				e.Check("a", client)
				e.Table().Rules()
				lookups.Add(1)
			}
		}()
	}
	for i := range 50 {
		id := addRule(t, st, "a", fmt.Sprintf("10.0.%d.0/24", i), time.Time{})
		if i%2 == 0 {
			deleteRule(t, st, "a", id)
		}
	}
	eventually(t, 2*time.Second, "all changes applied", func() bool { return e.Table().AccountRules("a") == 25 })
	cancel()
	wg.Wait()
	if lookups.Load() == 0 {
		t.Fatal("no lookups ran")
	}
}

func TestUsageFlushed(t *testing.T) {
	st := openBolt(t)
	createAccount(t, st, "a")
	id := addRule(t, st, "a", client.String(), time.Time{})
	e := runEngine(t, policy.Options{Source: st, Usage: st, UsageInterval: time.Hour})
	for range 3 {
		e.RecordUse("a", id)
	}
	if err := e.FlushUsage(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rules []policy.Rule
	st.Update(context.Background(), "a", func(tx policy.Tx) error {
		var err error
		rules, err = tx.Rules()
		return err
	})
	if len(rules) != 1 || rules[0].Hits != 3 || rules[0].LastUsed.IsZero() {
		t.Fatalf("rules after flush: %+v; want 3 hits and a last use", rules)
	}
}

func TestSnapshotFileRoundTripAndCorruption(t *testing.T) {
	st := openBolt(t)
	createAccount(t, st, "a")
	addRule(t, st, "a", client.String(), time.Now().Add(time.Hour))
	addRule(t, st, "a", "2001:db8::/48", time.Time{})
	e := runEngine(t, policy.Options{Source: st})
	eventually(t, time.Second, "rules", func() bool { return e.Table().Rules() == 2 })
	path := filepath.Join(t.TempDir(), "snap")
	if err := policy.WriteSnapshotFile(path, e.Table(), time.Now()); err != nil {
		t.Fatal(err)
	}
	d, _, err := policy.ReadSnapshotFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Accounts) != 1 || len(d.Accounts[0].Rules) != 2 || d.Generation == "" {
		t.Fatalf("round trip lost data: %+v", d)
	}
	good, _ := os.ReadFile(path)
	for _, n := range []int{0, 10, len(good) / 2, len(good) - 1} {
		os.WriteFile(path, good[:n], 0o600)
		if _, _, err := policy.ReadSnapshotFile(path); !errors.Is(err, policy.ErrCorruptSnapshot) {
			t.Errorf("truncated to %d bytes: %v, want ErrCorruptSnapshot", n, err)
		}
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-3] ^= 0x40
	os.WriteFile(path, flipped, 0o600)
	if _, _, err := policy.ReadSnapshotFile(path); !errors.Is(err, policy.ErrCorruptSnapshot) {
		t.Errorf("flipped bit: %v, want ErrCorruptSnapshot", err)
	}
}

// The engine keeps the snapshot file within a journal append of its
// table: each change is in the file (its journal) without the whole file
// being written again.
func TestEngineJournalsChanges(t *testing.T) {
	st := openBolt(t)
	createAccount(t, st, "a")
	addRule(t, st, "a", "192.0.2.0/24", time.Time{})
	path := filepath.Join(t.TempDir(), "snap")
	e := runEngine(t, policy.Options{Source: st, SnapshotPath: path})
	eventually(t, 10*time.Second, "the first snapshot and its journal", func() bool {
		_, err := os.Stat(path + ".journal")
		return err == nil
	})
	first, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	var ids []policy.RuleID
	for i := range 20 {
		addr := netip.AddrFrom4([4]byte{10, 0, byte(i), 1})
		ids = append(ids, addRule(t, st, "a", addr.String(), time.Time{}))
		eventually(t, 10*time.Second, "the rule enforced and in the file", func() bool {
			d, _, err := policy.ReadSnapshotFile(path)
			if err != nil || e.Check("a", addr).Verdict != policy.Allowed {
				return false
			}
			return snapshotHolds(d, "a", addr)
		})
	}
	deleteRule(t, st, "a", ids[0])
	eventually(t, 10*time.Second, "the deletion in the file", func() bool {
		d, _, err := policy.ReadSnapshotFile(path)
		return err == nil && !snapshotHolds(d, "a", netip.AddrFrom4([4]byte{10, 0, 0, 1}))
	})
	again, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !again.ModTime().Equal(first.ModTime()) || again.Size() != first.Size() {
		t.Errorf("the snapshot file was written whole again for 21 small changes")
	}
}

// snapshotHolds reports whether a rule of account in d covers addr.
func snapshotHolds(d *policy.Data, account string, addr netip.Addr) bool {
	for _, ap := range d.Accounts {
		if ap.Account.ID != account {
			continue
		}
		for _, r := range ap.Rules {
			if r.Prefix.Contains(addr) {
				return true
			}
		}
	}
	return false
}

// loadFails makes LoadAccountPolicy fail a given number of times while the
// feed keeps flowing, as a store that blips between two commands would.
type loadFails struct {
	policy.Source
	fail atomic.Int32
}

func (l *loadFails) LoadAccountPolicy(ctx context.Context, acct string) (policy.AccountPolicy, error) {
	if l.fail.Add(-1) >= 0 {
		return policy.AccountPolicy{}, errDown
	}
	return l.Source.LoadAccountPolicy(ctx, acct)
}

// A change whose account could not be loaded is not lost when the feed
// itself never fails: the engine reloads instead of following on.
func TestEngineApplyFailureIsNotLost(t *testing.T) {
	st := openBolt(t)
	createAccount(t, st, "a")
	src := &loadFails{Source: st}
	e := runEngine(t, policy.Options{Source: src})
	src.fail.Store(1)
	addRule(t, st, "a", client.String(), time.Time{})
	eventually(t, 2*time.Second, "a change whose first load failed was never applied", func() bool {
		return e.Check("a", client).Verdict == policy.Allowed
	})
}
