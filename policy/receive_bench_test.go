package policy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// The receiving fleet of BenchmarkReceive: accounts of 10 rules, as in
// bench/run's churn group, fewer of them (a change's cost does not
// depend on how many there are; BenchmarkPublish shows it).
const (
	receiveAccounts = 10_000
	receiveRules    = 10
)

// BenchmarkReceive measures what a rule change made by another instance
// costs the instance that receives it: reading the change feed, loading
// the changed accounts from a real redis-server, decoding them, compiling
// and publishing their tables and telling the listeners. The process's
// user + system CPU from the first change to the last one enforced is
// divided by the changes (cpu-µs/change; ns/op is wall time), and so are
// the bytes and objects it allocated.
//
// batch=N and batch=feed write the changes first, while the receiver is
// stopped, then let it follow them from its cursor: batch=feed hands the
// engine what each XREAD returned (a follower catching up), batch=N
// hands it N changes at a time (one round trip to load them each).
// rate=1000/gap=G is the steady state: a writer in a process of its own
// (so that its CPU is not the receiver's) writes 1,000 changes a second
// while the receiver follows, and each feed read returns what came since
// the one before, at least G after it (redisstore.Options.FeedGap; the
// default is 2 ms). idle is the receiver's CPU with no change, per ms.
//
//	go test ./policy -run '^$' -bench Receive -benchtime 3000x
func BenchmarkReceive(b *testing.B) {
	if testing.Short() {
		b.Skip("seeds a Redis fleet")
	}
	srv := redistest.Start(b)
	ctx := context.Background()
	writer, err := redisstore.Open(ctx, srv.URL(), redisstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { writer.Close() })
	seedReceiveFleet(b, writer)

	type run struct {
		name  string
		batch int     // changes handed to the engine at a time, 0: as read
		rate  float64 // written while the receiver follows, a second; 0: before
		gap   time.Duration
	}
	const noGap = -1 // every read handed over at once
	for _, r := range []run{{"batch=1", 1, 0, noGap}, {"batch=8", 8, 0, noGap}, {"batch=feed", 0, 0, noGap},
		{"rate=1000/gap=0", 0, 1000, noGap}, {"rate=1000/gap=2ms", 0, 1000, 2 * time.Millisecond},
		{"rate=1000/gap=5ms", 0, 1000, 5 * time.Millisecond}, {"idle", 0, -1, 0}} {
		batch, rate := r.batch, r.rate
		b.Run(r.name, func(b *testing.B) {
			reader, err := redisstore.Open(ctx, srv.URL(), redisstore.Options{FeedGap: r.gap})
			if err != nil {
				b.Fatal(err)
			}
			defer reader.Close()
			e, err := policy.NewEngine(policy.Options{Source: chunkedFeed{reader, batch}})
			if err != nil {
				b.Fatal(err)
			}
			if err := e.Start(ctx); err != nil {
				b.Fatal(err)
			}
			want := map[string]netip.Addr{}
			if rate >= 0 {
				_, want = receiveChanges(b.N)
			}
			if rate == 0 {
				writeReceiveChanges(b, writer, b.N, 0)
			}
			done := make(chan struct{})
			e.OnChange(func(t *policy.Table, accounts []string) {
				for _, id := range accounts {
					if a, ok := want[id]; ok && t.Check(id, a).Verdict == policy.Allowed {
						delete(want, id)
						if len(want) == 0 {
							close(done)
						}
					}
				}
			})
			runtime.GC()
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			cpu0 := processCPU(b)
			b.ResetTimer()
			rctx, cancel := context.WithCancel(ctx)
			ran := make(chan struct{})
			// Labelled, so that a -cpuprofile can be cut to the receiver
			// (pprof -tagfocus part=receive).
			go pprof.Do(rctx, pprof.Labels("part", "receive"), func(ctx context.Context) { defer close(ran); e.Run(ctx) })
			if rate > 0 {
				w := exec.Command(os.Args[0], "-test.run", "^TestReceiveWriter$", "-test.count", "1")
				w.Env = append(os.Environ(), fmt.Sprintf("GK_RECEIVE_WRITER=%s %v %d", srv.URL(), rate, b.N))
				w.Stdout, w.Stderr = os.Stderr, os.Stderr
				if err := w.Run(); err != nil {
					b.Fatalf("writer: %v", err)
				}
			}
			if rate < 0 {
				// Idle: what the receiver costs with no change, per ms.
				time.Sleep(time.Duration(b.N) * time.Millisecond)
				close(done)
			}
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("the receiver did not apply %d changes within 5 minutes (%d accounts left)", b.N, len(want))
			}
			b.StopTimer()
			cpu := processCPU(b) - cpu0
			runtime.ReadMemStats(&ms1)
			cancel()
			<-ran
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/change")
			b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(b.N), "B/change")
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N), "allocs/change")
		})
	}
}

// chunkedFeed hands the engine the feed's changes n at a time (all at
// once for 0), and keeps the store's other methods, LoadAccountPolicies
// included.
type chunkedFeed struct {
	*redisstore.Store
	n int
}

func (c chunkedFeed) Follow(ctx context.Context, cursor string, fn func([]policy.Change)) error {
	return c.Store.Follow(ctx, cursor, func(batch []policy.Change) {
		for c.n > 0 && len(batch) > c.n {
			fn(batch[:c.n])
			batch = batch[c.n:]
		}
		fn(batch)
	})
}

func seedReceiveFleet(b *testing.B, st *redisstore.Store) {
	b.Helper()
	created := time.Now().UTC()
	for first := 0; first < receiveAccounts; first += 1000 {
		d := &policy.Data{Generation: "receive-bench"}
		for i := first; i < min(first+1000, receiveAccounts); i++ {
			ap := policy.AccountPolicy{Account: policy.Account{ID: receiveAccount(i), Name: "Studio", Mode: policy.ModeOn, CreatedAt: created}}
			for j := range receiveRules {
				a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(j)})
				ap.Rules = append(ap.Rules, policy.Rule{ID: policy.RuleID(j + 1), Prefix: netip.PrefixFrom(a, 32),
					Note: "front desk", Source: policy.SourceManual, CreatedBy: "master", CreatedAt: created})
			}
			d.Accounts = append(d.Accounts, ap)
		}
		if _, err := st.Reseed(context.Background(), d, policy.AuditEntry{Actor: "bench", Role: policy.RoleOperator, Action: "account.create"}); err != nil {
			b.Fatal(err)
		}
	}
}

func receiveAccount(i int) string { return fmt.Sprintf("acct-%06d", i) }

// receiveChange moves one rule of an account to a new address.
type receiveChange struct {
	account string
	rule    policy.RuleID
	addr    netip.Addr
}

// receiveWriters write the changes, each those of its own accounts, in
// order, as bench/run's churn writers do.
const receiveWriters = 16

// receiveChanges returns n changes of random accounts, the same for the
// same n, split between receiveWriters, and the address each changed
// account must end up allowing.
func receiveChanges(n int) ([][]receiveChange, map[string]netip.Addr) {
	r := rand.New(rand.NewPCG(uint64(n), 19))
	byWriter := make([][]receiveChange, receiveWriters)
	want := make(map[string]netip.Addr)
	for i := range n {
		c := receiveChange{account: receiveAccount(r.IntN(receiveAccounts)), rule: policy.RuleID(r.IntN(receiveRules) + 1),
			addr: netip.AddrFrom4([4]byte{12, byte(i >> 16), byte(i >> 8), byte(i)})}
		w := fnv(c.account) % receiveWriters
		byWriter[w] = append(byWriter[w], c)
		want[c.account] = c.addr
	}
	return byWriter, want
}

// writeReceiveChanges writes n changes (receiveChanges), as fast as it can
// or, with rate > 0, at rate a second over all writers.
func writeReceiveChanges(tb testing.TB, st *redisstore.Store, n int, rate float64) {
	tb.Helper()
	byWriter, _ := receiveChanges(n)
	var wg sync.WaitGroup
	errs := make(chan error, receiveWriters)
	start := time.Now()
	for w, cs := range byWriter {
		wg.Go(func() {
			var interval time.Duration
			if rate > 0 {
				interval = time.Duration(float64(time.Second) * receiveWriters / rate)
			}
			next := start.Add(interval * time.Duration(w) / receiveWriters)
			for _, c := range cs {
				if interval > 0 {
					time.Sleep(time.Until(next))
					next = next.Add(interval)
				}
				err := st.Update(context.Background(), c.account, func(tx policy.Tx) error {
					_, err := tx.PutRule(policy.Rule{ID: c.rule, Prefix: netip.PrefixFrom(c.addr, 32), Note: "moved",
						Source: policy.SourceManual, CreatedBy: "bench", CreatedAt: time.Now()})
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatal(err)
	}
}

// TestReceiveWriter is BenchmarkReceive's writer at a steady rate, run in
// a process of its own so that its CPU is not counted as the receiver's.
// It does nothing unless the benchmark starts it.
func TestReceiveWriter(t *testing.T) {
	spec := os.Getenv("GK_RECEIVE_WRITER")
	if spec == "" {
		t.Skip("run by BenchmarkReceive")
	}
	var url string
	var rate float64
	var n int
	if _, err := fmt.Sscan(spec, &url, &rate, &n); err != nil {
		t.Fatalf("GK_RECEIVE_WRITER=%q: %v", spec, err)
	}
	st, err := redisstore.Open(context.Background(), url, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	writeReceiveChanges(t, st, n, rate)
}

func fnv(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// processCPU is the process's user + system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleRoundTrip is the floor under BenchmarkReceive's steady
// state: a process that is otherwise idle waits the default feed gap on
// a timer, then makes one call to a real redis-server through the store
// (one GET, Store.Account) and waits for the answer, as the feed reader
// does for every batch. cpu-µs/op is the process's CPU for one such
// wake-up and round trip, with no change in it: at a batch every gap,
// what a change costs can be no less than this divided by the changes a
// batch holds.
//
//	go test ./policy -run '^$' -bench IdleRoundTrip -benchtime 3000x
func BenchmarkIdleRoundTrip(b *testing.B) {
	if testing.Short() {
		b.Skip("talks to a redis-server")
	}
	srv := redistest.Start(b)
	ctx := context.Background()
	st, err := redisstore.Open(ctx, srv.URL(), redisstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	a := policy.Account{ID: "idle", Name: "Studio", Mode: policy.ModeOn, CreatedAt: time.Now().UTC()}
	if err := st.CreateAccount(ctx, a, policy.AuditEntry{Actor: "bench", Role: policy.RoleOperator, Action: "account.create"}); err != nil {
		b.Fatal(err)
	}
	cpu0 := processCPU(b)
	b.ResetTimer()
	for b.Loop() {
		t := time.NewTimer(redisstore.DefaultFeedGap)
		<-t.C
		if _, err := st.Account(ctx, a.ID); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}
