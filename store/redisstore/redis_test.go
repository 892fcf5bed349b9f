package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
	"github.com/gatekeeper-dev/gatekeeper/store/storetest"
)

func openStore(t testing.TB, srv *redistest.Server) *Store {
	t.Helper()
	s, err := Open(t.Context(), srv.URL(), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawClient is for doing to Redis what the store never does.
func rawClient(t testing.TB, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	return c
}

func create(t *testing.T, s *Store, id string) {
	t.Helper()
	a := policy.Account{ID: id, Name: "Studio " + id, Mode: policy.ModeOn}
	if err := s.CreateAccount(t.Context(), a, policy.AuditEntry{Actor: "operator", Action: "account.create"}); err != nil {
		t.Fatalf("CreateAccount(%s): %v", id, err)
	}
}

func addRule(ctx context.Context, s *Store, acct string, n int) error {
	return s.Update(ctx, acct, func(tx policy.Tx) error {
		_, err := tx.PutRule(policy.Rule{
			Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}), 32),
			Source: policy.SourceManual, CreatedBy: "master", CreatedAt: time.Now(),
		})
		return err
	})
}

func load(t *testing.T, s *Store) *policy.Data {
	t.Helper()
	d, err := s.LoadPolicy(t.Context())
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	return d
}

// followed runs Follow in the background.
type followed struct {
	changes chan policy.Change
	done    chan struct{}
	err     error
}

func startFollow(t *testing.T, s *Store, cursor string) *followed {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	f := &followed{changes: make(chan policy.Change, 4096), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.err = s.Follow(ctx, cursor, func(b []policy.Change) {
			for _, c := range b {
				select {
				case f.changes <- c:
				case <-ctx.Done():
				}
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-f.done })
	return f
}

// ended waits for Follow to return and gives its error.
func (f *followed) ended(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case <-f.done:
		return f.err
	case <-time.After(within):
		t.Fatalf("Follow still running after %v", within)
		return nil
	}
}

func (f *followed) next(t *testing.T) policy.Change {
	t.Helper()
	select {
	case c := <-f.changes:
		return c
	case <-f.done:
		t.Fatalf("Follow returned: %v", f.err)
	case <-time.After(5 * time.Second):
		t.Fatal("no change within 5s")
	}
	return policy.Change{}
}

// TestConformanceReaders runs the suite through the feed readers that
// TestConformance does not: one per shard, the way Follow reads a
// Cluster, where one XREAD cannot span slots; and one that reads and
// loads apart, as after a node refused the tail script.
func TestConformanceReaders(t *testing.T) {
	srv := redistest.Start(t)
	for name, set := range map[string]func(s *Store){
		"per-shard": func(s *Store) { s.readerPerShard = true },
		"no-tail":   func(s *Store) { s.noTail.Store(true) },
	} {
		t.Run(name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) policy.Store {
				srv.Flush()
				s, err := Open(t.Context(), srv.URL(), Options{})
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				set(s)
				return s
			})
		})
	}
}

func TestFollowOutageAndRestart(t *testing.T) {
	srv := redistest.Start(t, redistest.AppendOnly())
	s := openStore(t, srv)
	ctx := t.Context()
	create(t, s, "10042")
	before := load(t, s)
	f := startFollow(t, s, before.Cursor)

	start := time.Now()
	srv.Stop()
	err := f.ended(t, 20*time.Second)
	if !errors.Is(err, policy.ErrUnavailable) {
		t.Fatalf("Follow with Redis stopped: %v, want ErrUnavailable", err)
	}
	t.Logf("Follow reported the outage after %v: %v", time.Since(start), err)

	// Writes fail and change nothing; reads fail too.
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := addRule(octx, s, "10042", 1); !errors.Is(err, policy.ErrUnavailable) {
		t.Fatalf("Update with Redis stopped: %v, want ErrUnavailable", err)
	}
	if _, err := s.LoadPolicy(octx); !errors.Is(err, policy.ErrUnavailable) {
		t.Fatalf("LoadPolicy with Redis stopped: %v, want ErrUnavailable", err)
	}

	srv.Restart() // append-only: the data is back
	after := load(t, s)
	if after.Generation != before.Generation || len(after.Accounts) != 1 {
		t.Fatalf("after a restart with persistence: generation %q accounts %d, want %q and 1",
			after.Generation, len(after.Accounts), before.Generation)
	}
	g := startFollow(t, s, before.Cursor)
	if err := addRule(ctx, s, "10042", 2); err != nil {
		t.Fatalf("Update after restart: %v", err)
	}
	if c := g.next(t); c.Account != "10042" {
		t.Fatalf("change after restart: %+v", c)
	}
}

func TestFollowPausedServer(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t, srv)
	s.followBlock, s.followGrace = 200*time.Millisecond, 300*time.Millisecond
	create(t, s, "10042")
	d := load(t, s)
	f := startFollow(t, s, d.Cursor)

	srv.Pause()
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := addRule(ctx, s, "10042", 1); !errors.Is(err, policy.ErrUnavailable) {
		t.Fatalf("Update on a hung server: %v, want ErrUnavailable", err)
	}
	if err := f.ended(t, 5*time.Second); !errors.Is(err, policy.ErrUnavailable) {
		t.Fatalf("Follow on a hung server: %v, want ErrUnavailable", err)
	}
	t.Logf("hung server noticed after %v", time.Since(start))
	srv.Resume()

	g := startFollow(t, s, d.Cursor)
	if err := addRule(t.Context(), s, "10042", 2); err != nil {
		t.Fatalf("Update after resume: %v", err)
	}
	if c := g.next(t); c.Account != "10042" {
		t.Fatalf("change after resume: %+v", c)
	}
}

func TestFeedTrimmedPastCursor(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t, srv)
	create(t, s, "10042")
	d := load(t, s)
	for i := range 5 {
		if err := addRule(t.Context(), s, "10042", i); err != nil {
			t.Fatal(err)
		}
	}
	// Exact trimming, unlike the store's "~", so the test does not depend
	// on stream node sizes.
	if err := rawClient(t, srv).XTrimMaxLen(t.Context(), feedKey(shardOf("10042")), 1).Err(); err != nil {
		t.Fatalf("XTRIM: %v", err)
	}
	f := startFollow(t, s, d.Cursor)
	if err := f.ended(t, 5*time.Second); !errors.Is(err, policy.ErrFeedGap) {
		t.Fatalf("Follow from a trimmed cursor: %v, want ErrFeedGap", err)
	}
	// A reload gives a cursor that works.
	g := startFollow(t, s, load(t, s).Cursor)
	if err := addRule(t.Context(), s, "10042", 9); err != nil {
		t.Fatal(err)
	}
	g.next(t)

	for _, bad := range []string{"", "junk", "r1:0-0/0", "b00t:17"} {
		h := startFollow(t, s, bad)
		if err := h.ended(t, 5*time.Second); !errors.Is(err, policy.ErrFeedGap) {
			t.Fatalf("Follow(%q): %v, want ErrFeedGap so the follower reloads", bad, err)
		}
	}
}

func TestEmptiedStore(t *testing.T) {
	// Each case starts a Redis, returns its URL and a way to lose its data.
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (url string, lose func())
	}{
		{"flushed", func(t *testing.T) (string, func()) {
			srv := redistest.Start(t)
			return srv.URL(), srv.Flush
		}},
		{"restarted without persistence", func(t *testing.T) (string, func()) {
			srv := redistest.Start(t)
			return srv.URL(), srv.Restart
		}},
		{"cluster flushed", func(t *testing.T) (string, func()) {
			if testing.Short() {
				t.Skip("starts a three-node Redis Cluster: skipped with -short")
			}
			c := redistest.StartCluster(t, 3)
			return c.URL(), c.Flush
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, lose := tc.start(t)
			s, err := Open(t.Context(), url, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			s.followBlock = 100 * time.Millisecond
			ctx := t.Context()
			create(t, s, "10042")
			d := load(t, s)
			if d.Generation == "" {
				t.Fatal("no generation after the first account")
			}
			f := startFollow(t, s, d.Cursor)

			lose()

			// A follower learns that it must reload, whether it saw the
			// connection drop or the feed go backwards.
			err = f.ended(t, 10*time.Second)
			if !errors.Is(err, policy.ErrFeedGap) && !errors.Is(err, policy.ErrUnavailable) {
				t.Fatalf("Follow after data loss: %v, want ErrFeedGap or ErrUnavailable", err)
			}
			empty := load(t, s)
			if empty.Generation != "" || len(empty.Accounts) != 0 {
				t.Fatalf("LoadPolicy of an emptied store: generation %q, %d accounts; want none", empty.Generation, len(empty.Accounts))
			}
			err = addRule(ctx, s, "10042", 1)
			if !errors.Is(err, policy.ErrUnavailable) || !errors.Is(err, ErrNoData) {
				t.Fatalf("Update of an emptied store: %v, want ErrUnavailable and ErrNoData", err)
			}
			t.Logf("Update refused: %v", err)

			// The store knows it held a generation: no account, and so no
			// new generation, until it is re-seeded.
			err = s.CreateAccount(ctx, policy.Account{ID: "10043", Mode: policy.ModeOn}, policy.AuditEntry{Action: "account.create"})
			if !errors.Is(err, ErrNoData) || !strings.Contains(err.Error(), d.Generation) {
				t.Fatalf("CreateAccount on the emptied store: %v, want ErrNoData naming generation %s", err, d.Generation)
			}
			if again := load(t, s); again.Generation != "" || len(again.Accounts) != 0 {
				t.Fatalf("after the refused CreateAccount: generation %q, %d accounts; want none", again.Generation, len(again.Accounts))
			}
			// A Store that knows of none (a machine on its first start)
			// starts a new generation, which the engine tells apart from
			// the policy it enforces.
			fresh, err := Open(ctx, url, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { fresh.Close() })
			create(t, fresh, "10042")
			if again := load(t, s); again.Generation == "" || again.Generation == d.Generation {
				t.Fatalf("generation after a first start: %q (before: %q), want a new one", again.Generation, d.Generation)
			}
		})
	}
}

// TestPropagation measures how long a change takes from one instance's
// Update to another instance's follower, both on their own connections:
//
//	go test -run Propagation -v ./store/redisstore/
func TestPropagation(t *testing.T) {
	onStandaloneAndCluster(t, func(t *testing.T, url string) {
		var stores [2]*Store
		for i := range stores {
			s, err := Open(t.Context(), url, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			stores[i] = s
		}
		writer, reader := stores[0], stores[1]
		const n = 200
		accts := []string{"10042", "10043", "studio-7", "praxis-9"}
		for _, a := range accts {
			create(t, writer, a)
		}
		f := startFollow(t, reader, load(t, reader).Cursor)
		lat := make([]time.Duration, 0, n)
		for i := range n {
			acct := accts[i%len(accts)]
			start := time.Now()
			if err := addRule(t.Context(), writer, acct, i); err != nil {
				t.Fatal(err)
			}
			c := f.next(t)
			lat = append(lat, time.Since(start))
			if c.Account != acct {
				t.Fatalf("change %d: %s, want %s", i, c.Account, acct)
			}
		}
		slices.Sort(lat)
		t.Logf("%s: Update on one instance to Follow on another, %d changes: p50 %v, p99 %v, max %v",
			t.Name(), n, lat[n/2], lat[n*99/100], lat[n-1])
	})
}

// TestKeysInRedis checks the keys the store really writes: each carries the
// hash tag of its account's shard, so a Cluster keeps an account in one slot.
func TestKeysInRedis(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t, srv)
	ctx := t.Context()
	accts := []string{"10042", "10043", "studio-7", "a", "Z-9"}
	for _, a := range accts {
		create(t, s, a)
		err := s.Update(ctx, a, func(tx policy.Tx) error {
			r, err := tx.PutRule(policy.Rule{Prefix: netip.MustParsePrefix("192.0.2.0/24"), CreatedAt: time.Now()})
			if err != nil {
				return err
			}
			if err := tx.PutUser(policy.User{Username: "alice", Active: true}); err != nil {
				return err
			}
			for _, u := range []string{"alice", ""} {
				h := "h-" + a + "-" + u
				if err := tx.PutSession(policy.Session{TokenHash: h, Username: u, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
					return err
				}
			}
			_ = r
			return tx.Audit(policy.AuditEntry{Actor: "master", Action: "rule.add"})
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RecordUsage(ctx, []policy.Usage{{Account: a, Rule: 1, Hits: 1, LastUsed: time.Now()}}); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := rawClient(t, srv).Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, key := range keys {
		if key == metaKey {
			continue
		}
		var shard int
		var rest string
		if _, err := fmt.Sscanf(key, "gk:{gk:%02d}:", &shard); err != nil {
			t.Fatalf("key %q has no shard hash tag", key)
		}
		rest = key[len(shardPrefix(shard)):]
		kind, tail, _ := strings.Cut(rest, ":")
		kinds[kind]++
		switch kind {
		case "accounts", "feed", "seq", "reviews": // a shard's
			continue
		}
		acct, _, _ := strings.Cut(tail, ":")
		if !slices.Contains(accts, acct) {
			t.Fatalf("key %q: cannot tell its account", key)
		}
		if shardOf(acct) != shard || slot(key) != slot(keysFor(acct).feed) {
			t.Fatalf("key %q is in shard %d / slot %d; account %s is in shard %d / slot %d",
				key, shard, slot(key), acct, shardOf(acct), slot(keysFor(acct).feed))
		}
	}
	for _, kind := range []string{"acct", "rules", "ruleid", "users", "usage", "sess", "usess", "audit", "accounts", "feed", "seq", "reviews"} {
		if kinds[kind] == 0 {
			t.Errorf("no %s key written: %v", kind, kinds)
		}
	}
}

// TestSessionSetExpiry checks that the per-user session sets do not
// outlive their sessions, so logins without logouts leave nothing behind.
func TestSessionSetExpiry(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t, srv)
	ctx := t.Context()
	create(t, s, "10042")
	now := time.Now()
	for i, ttl := range []time.Duration{time.Hour, 3 * time.Hour, 2 * time.Hour} {
		err := s.Update(ctx, "10042", func(tx policy.Tx) error {
			return tx.PutSession(policy.Session{TokenHash: strconv.Itoa(i), Username: "alice", ExpiresAt: now.Add(ttl)})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	at, err := rawClient(t, srv).PExpireTime(ctx, keysFor("10042").userSessions("alice")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Duration(now.Add(3 * time.Hour).UnixMilli()); at != want*time.Millisecond {
		t.Fatalf("session set expires at %v, want the longest session's expiry %v", at, want*time.Millisecond)
	}
}

// TestMoreWritersThanConnections guards against a transaction that needs a
// second pooled connection while holding one: with every connection held
// by a WATCH, that deadlocks until the pool times out.
func TestMoreWritersThanConnections(t *testing.T) {
	srv := redistest.Start(t)
	s, err := Open(t.Context(), srv.URL()+"?pool_size=4&pool_timeout=2s", Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	accts := []string{"a1", "a2", "a3"}
	for _, a := range accts {
		create(t, s, a)
	}
	const writers = 24
	errs := make(chan error, writers)
	for i := range writers {
		go func() { errs <- addRule(t.Context(), s, accts[i%len(accts)], i) }()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatalf("Update: %v", err)
		}
	}
	d := load(t, s)
	n := 0
	for _, p := range d.Accounts {
		n += len(p.Rules)
	}
	if n != writers {
		t.Fatalf("%d rules after %d Updates", n, writers)
	}
}

// TestConformanceCluster runs the suite on a Redis Cluster of three
// primaries, where a command or transaction that spans slots fails.
func TestConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Redis Cluster: skipped with -short")
	}
	c := redistest.StartCluster(t, 3)
	storetest.Run(t, func(t *testing.T) policy.Store {
		c.Flush()
		s, err := Open(t.Context(), c.URL(), Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if s.cluster == nil {
			t.Fatalf("Open(%s) did not make a Cluster client", c.URL())
		}
		return s
	})
}

// TestTornReadRetried: a transaction that lists a rule, then finds it gone
// because another client deleted it in between, is not answered with that
// not-found: its watch was broken, so it is tried again and sees the rule
// gone from the list too. (Two instances running the same last day met
// this: one read a rule the other had just revoked.)
func TestTornReadRetried(t *testing.T) {
	srv := redistest.Start(t)
	s, other := openStore(t, srv), openStore(t, srv)
	ctx := t.Context()
	create(t, s, "torn")
	for n := range 2 {
		if err := addRule(ctx, s, "torn", n); err != nil {
			t.Fatal(err)
		}
	}
	attempts := 0
	var deleted policy.RuleID
	err := s.Update(ctx, "torn", func(tx policy.Tx) error {
		attempts++
		rules, err := tx.Rules()
		if err != nil {
			return err
		}
		if attempts == 1 {
			// The other instance deletes the first rule now, between
			// this transaction's list and its use of it.
			deleted = rules[0].ID
			if err := other.Update(ctx, "torn", func(tx policy.Tx) error { return tx.DeleteRule(deleted) }); err != nil {
				t.Fatalf("the concurrent delete: %v", err)
			}
		}
		for _, r := range rules {
			if err := tx.DeleteRule(r.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || attempts != 2 {
		t.Fatalf("Update: %v after %d attempts, want nil after 2", err, attempts)
	}
	for _, a := range load(t, s).Accounts {
		if a.Account.ID == "torn" && len(a.Rules) != 0 {
			t.Fatalf("rules left: %+v", a.Rules)
		}
	}
	// An error of fn's own, with nothing concurrent, is still its answer.
	boom := errors.New("boom")
	if err := s.Update(ctx, "torn", func(policy.Tx) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("fn's own error: %v", err)
	}
}

// onStandaloneAndCluster runs fn on a standalone redis-server and on a
// three-node Cluster (skipped with -short), each its own subtest.
func onStandaloneAndCluster(t *testing.T, fn func(t *testing.T, url string)) {
	t.Run("standalone", func(t *testing.T) { fn(t, redistest.Start(t).URL()) })
	t.Run("cluster", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts a three-node Redis Cluster: skipped with -short")
		}
		fn(t, redistest.StartCluster(t, 3).URL())
	})
}
