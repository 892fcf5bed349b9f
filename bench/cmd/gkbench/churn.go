package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/bench/load"
	"github.com/gatekeeper-dev/gatekeeper/bench/report"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
)

// The churn group's fleet: 100,000 accounts of 10 rules each.
const (
	churnAccounts   = 100_000
	churnPerAccount = 10
	churnPrefix     = "churn-"
	churnProbeNet   = "127.0.2.0/24" // the prober's addresses, one per probe
)

// reviewSettled is how long after its start an instance has made its
// first access-review pass (admin.Options.ReviewScan, a minute) and the
// index check that comes with it.
const reviewSettled = 75 * time.Second

// churnRates are the changes a second offered; 0 is the baseline the
// receiver's CPU and allocations are measured against.
var churnRates = []float64{0, 100, 1000, 5000}

// churnPhase is what one rate gave.
type churnPhase struct {
	rate      float64
	changes   int64 // committed, churn and probes together
	seconds   float64
	prop      []time.Duration // commit → enforced on B, by the prober
	lookups   []time.Duration // the checker's connect + echo on B
	cpu       time.Duration   // B's user + system time
	allocated uint64          // bytes B allocated
}

func (p churnPhase) achieved() float64 { return float64(p.changes) / p.seconds }

// churn seeds the run's Redis with 100,000 accounts and 1,000,000 rules,
// waits until instance B enforces them all, then changes rules of random
// accounts at each rate for a fixed time while a prober times how long B
// takes to let in an address just allowed (on the prop account, through
// its listener) and a checker keeps connecting to B's bench listener.
// gkbench writes through its own store client, as a third instance's
// admin API would: B only ever hears of the changes through Redis.
func (m *measurement) churn(ctx context.Context) error {
	st, err := redisstore.Open(ctx, "redis://"+m.e.addr("REDIS_PORT")+"/0", redisstore.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	ops := m.e.addr("GKB_OPS")
	before, _, err := heapStats(ctx, ops, true)
	if err != nil {
		return err
	}
	accts0, rules0, err := policyTotals(ctx, ops)
	if err != nil {
		return err
	}
	start := time.Now()
	created, err := m.seedChurn(ctx, st)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	// B's own totals, not a series per account: above ops.account_series
	// accounts it exports those of the largest only.
	for deadline := time.Now().Add(5 * time.Minute); ; {
		accts, rules, err := policyTotals(ctx, ops)
		if err != nil {
			return err
		}
		if accts >= accts0+created && rules >= rules0+created*churnPerAccount {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("instance B holds %d of the %d seeded accounts, %d of their %d rules, after 5 minutes",
				accts-accts0, created, rules-rules0, created*churnPerAccount)
		}
		time.Sleep(time.Second)
	}
	m.logf("churn: %d accounts, %d rules seeded and enforced on B in %v", churnAccounts, churnAccounts*churnPerAccount,
		time.Since(start).Round(time.Second))
	live, _, err := heapStats(ctx, ops, true)
	if err != nil {
		return err
	}

	// Each rate runs twice: alone, for B's CPU and allocations per change
	// (the probes and checks would weigh more than the changes), then with
	// the prober and the checker, for the latencies. The rate 0 runs are
	// the baselines: B idle, and the latencies without churn.
	duration := 2 * m.s.duration
	// B is still busy a while after the seeding (the snapshot file of a
	// million rules, the collector): a first idle run lets it settle, or
	// the baseline would hold that and every rate's cost less it. It
	// lasts at least until B's first access-review pass after the
	// seeding, a minute after B started (admin's ReviewScan), which
	// checks the review index of every account once: in a phase, that
	// pass was most of what the phase measured.
	settleFor := duration
	if a, err := age(m.gkB); err == nil {
		settleFor = max(settleFor, reviewSettled-a)
	}
	settle, err := m.churnPhase(ctx, st, 0, settleFor, false)
	if err != nil {
		return fmt.Errorf("settling: %w", err)
	}
	m.logf("churn: B settling after the seeding: %v CPU in %.1f s", settle.cpu, settle.seconds)
	var phases, costs []churnPhase
	for _, rate := range churnRates {
		c, err := m.churnPhase(ctx, st, rate, duration, false)
		if err != nil {
			return fmt.Errorf("%v changes/s: %w", rate, err)
		}
		p, err := m.churnPhase(ctx, st, rate, duration, true)
		if err != nil {
			return fmt.Errorf("%v changes/s, probed: %w", rate, err)
		}
		m.logf("churn %v/s: alone %d changes in %.1f s, B CPU %v, %s bytes allocated; probed %.0f/s, propagation p50 %v p99 %v (%d probes), lookup p50 %v p99 %v",
			rate, c.changes, c.seconds, c.cpu, report.Format(float64(c.allocated)), p.achieved(),
			report.Percentile(p.prop, 50), report.Percentile(p.prop, 99), len(p.prop),
			report.Percentile(p.lookups, 50), report.Percentile(p.lookups, 99))
		phases, costs = append(phases, p), append(costs, c)
	}

	base, idle := phases[0], costs[0]
	perChange := func(c churnPhase) (cpuUs, bytes float64) {
		n := float64(c.changes)
		cpuUs = (c.cpu.Seconds() - idle.cpu.Seconds()/idle.seconds*c.seconds) / n * 1e6
		bytes = (float64(c.allocated) - float64(idle.allocated)/idle.seconds*c.seconds) / n
		return max(cpuUs, 0), max(bytes, 0)
	}
	var lines []string
	costOf := map[float64]churnPhase{}
	for i, p := range phases[1:] {
		c := costs[i+1]
		costOf[p.rate] = c
		cpu, bytes := perChange(c)
		lines = append(lines, fmt.Sprintf("%v/s offered: alone %.0f/s done, CPU %.1f µs and %s bytes allocated per change on B; probed %.0f/s done, propagation p50 %.1f ms p99 %.1f ms (%d probes), lookup p50 %.2f ms p99 %.2f ms",
			p.rate, c.achieved(), cpu, report.Format(bytes), p.achieved(),
			report.Ms(report.Percentile(p.prop, 50)), report.Ms(report.Percentile(p.prop, 99)), len(p.prop),
			report.Ms(report.Percentile(p.lookups, 50)), report.Ms(report.Percentile(p.lookups, 99))))
	}
	detail := fmt.Sprintf("%d accounts, %d rules in one Redis; %v per rate and run; B idle: %.2f CPU s/s; no churn: propagation p50 %.1f ms p99 %.1f ms, lookup p50 %.2f ms p99 %.2f ms; %s",
		churnAccounts, churnAccounts*churnPerAccount, duration, idle.cpu.Seconds()/idle.seconds,
		report.Ms(report.Percentile(base.prop, 50)), report.Ms(report.Percentile(base.prop, 99)),
		report.Ms(report.Percentile(base.lookups, 50)), report.Ms(report.Percentile(base.lookups, 99)), strings.Join(lines, "; "))
	byRate := map[float64]churnPhase{}
	for _, p := range phases {
		byRate[p.rate] = p
	}
	goal := func(name, unit string, v, g float64, detail string) {
		m.add(report.Compare(name, unit, v, report.PeerGoal, g, false), fmt.Sprintf("≤ %s %s", report.Format(g), unit), detail)
	}
	p1k, p5k := byRate[1000], byRate[5000]
	goal("churn-propagation-p99-ms", "ms", report.Ms(report.Percentile(p1k.prop, 99)), 10,
		"at 1,000 changes/s over random accounts: a rule added by another client → B lets the address in; "+detail)
	goal("churn-propagation-p99-ms-5000", "ms", report.Ms(report.Percentile(p5k.prop, 99)), 100,
		"the same at 5,000 changes/s offered (see the achieved rate in churn-propagation-p99-ms)")
	cpu, bytes := perChange(costOf[1000])
	goal("churn-cpu-us-per-change", "µs", cpu, 50,
		fmt.Sprintf("B's utime+stime per change at 1,000/s with no prober or checker, less B's idle CPU; %s bytes allocated per change (TotalAlloc)", report.Format(bytes)))
	m.add(report.Compare("churn-lookup-p99-ms", "ms", report.Ms(report.Percentile(p5k.lookups, 99)), "no-churn",
		report.Ms(report.Percentile(base.lookups, 99)), false), "≈ 1.0×",
		"a checker's connect + echo through B's bench listener at 5,000 changes/s, against no churn (must not move)")
	m.add(report.Own("churn-live-heap-mib", "MiB", float64(live)/mib, false), "≤ 2× the table",
		fmt.Sprintf("B's live heap after a GC with the %d seeded rules loaded; %.1f MiB before they were (the table alone: table-bytes-per-rule × rules)",
			churnAccounts*churnPerAccount, float64(before)/mib))
	return nil
}

// seedChurn creates the fleet's accounts that do not exist yet, 1,000 at
// a time over 8 connections, through Reseed (one transaction and one feed
// entry per account, as an account creation), and says how many it
// created.
func (m *measurement) seedChurn(ctx context.Context, st *redisstore.Store) (int, error) {
	gen, err := storeGeneration(ctx, st)
	if err != nil {
		return 0, err
	}
	created := time.Now().UTC()
	chunks := make(chan int)
	errs := make(chan error, 8)
	var restored atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for first := range chunks {
				d := &policy.Data{Generation: gen}
				for i := first; i < min(first+1000, churnAccounts); i++ {
					id := churnAccount(i)
					ap := policy.AccountPolicy{Account: policy.Account{ID: id, Name: "Studio " + id, Mode: policy.ModeOn, CreatedAt: created}}
					for j := range churnPerAccount {
						ap.Rules = append(ap.Rules, churnRule(i, j, created))
					}
					d.Accounts = append(d.Accounts, ap)
				}
				res, err := st.Reseed(ctx, d, policy.AuditEntry{Actor: "gkbench", Role: policy.RoleOperator, Action: "account.create"})
				if err != nil {
					errs <- err
					return
				}
				restored.Add(int64(res.Restored))
			}
		})
	}
	go func() {
		defer close(chunks)
		for first := 0; first < churnAccounts; first += 1000 {
			select {
			case chunks <- first:
			case <-ctx.Done():
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	m.logf("churn: created %d accounts (the others existed)", restored.Load())
	return int(restored.Load()), ctx.Err()
}

// storeGeneration is the generation the bench store holds: set up already
// holds accounts, so it has one.
func storeGeneration(ctx context.Context, st *redisstore.Store) (string, error) {
	d, err := st.LoadPolicy(ctx)
	if err != nil {
		return "", err
	}
	if d.Generation == "" {
		return "", errors.New("the bench store has no generation")
	}
	return d.Generation, nil
}

func churnAccount(i int) string { return fmt.Sprintf("%s%06d", churnPrefix, i) }

// churnRule is rule j of account i: a /32 in 10.0.0.0/8, a few /24s.
func churnRule(i, j int, created time.Time) policy.Rule {
	a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(j)})
	bits := 32
	if j == 0 {
		a, bits = netip.AddrFrom4([4]byte{11, byte(i >> 8), byte(i), 0}), 24
	}
	return policy.Rule{ID: policy.RuleID(j + 1), Prefix: netip.PrefixFrom(a, bits), Note: "front desk",
		Source: policy.SourceManual, CreatedBy: "master", CreatedAt: created}
}

// churnPhase runs the churn at rate for d, with the prober and the
// checker if probed, and measures B.
func (m *measurement) churnPhase(ctx context.Context, st *redisstore.Store, rate float64, d time.Duration, probed bool) (churnPhase, error) {
	p := churnPhase{rate: rate}
	ops := m.e.addr("GKB_OPS")
	_, alloc0, err := heapStats(ctx, ops, false)
	if err != nil {
		return p, err
	}
	cpu0, err := cpuTime(m.gkB)
	if err != nil {
		return p, err
	}
	// pctx says when to stop; I/O runs on ctx, so that a call cut short
	// by the phase's end is not taken for a failure.
	t0 := time.Now()
	pctx, stop := context.WithDeadline(ctx, t0.Add(d))
	defer stop()
	var changes atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			stop()
		}
	}
	const writers = 32
	if rate > 0 {
		interval := time.Duration(float64(time.Second) * writers / rate)
		for w := range writers {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), uint64(rate)))
				next := t0.Add(interval * time.Duration(w) / writers)
				for {
					if load.SleepUntil(pctx, next) != nil {
						return
					}
					next = next.Add(interval)
					if err := churnChange(ctx, st, r); err != nil {
						fail(err)
						return
					}
					changes.Add(1)
				}
			})
		}
	}
	if probed {
		m.probeAndCheck(ctx, pctx.Done(), st, &wg, &mu, &p, &changes, fail)
	}
	wg.Wait()
	<-pctx.Done() // the whole phase, when nothing runs in it (the idle baseline)
	if firstErr != nil {
		return p, firstErr
	}
	// Let B apply what is still in flight before its counters are read.
	time.Sleep(200 * time.Millisecond)
	p.seconds = time.Since(t0).Seconds()
	cpu1, err := cpuTime(m.gkB)
	if err != nil {
		return p, err
	}
	_, alloc1, err := heapStats(ctx, ops, false)
	if err != nil {
		return p, err
	}
	p.changes, p.cpu, p.allocated = changes.Load(), cpu1-cpu0, alloc1-alloc0
	if probed && len(p.prop) == 0 {
		return p, errors.New("the prober timed no change")
	}
	return p, nil
}

// probeAndCheck starts the prober and the checker until done.
func (m *measurement) probeAndCheck(ctx context.Context, done <-chan struct{}, st *redisstore.Store,
	wg *sync.WaitGroup, mu *sync.Mutex, p *churnPhase, changes *atomic.Int64, fail func(error)) {
	wg.Go(func() {
		prop, n, err := m.churnProbe(ctx, done, st)
		mu.Lock()
		p.prop = prop
		mu.Unlock()
		changes.Add(n)
		if err != nil {
			fail(err)
		}
	})
	wg.Go(func() {
		lat, err := m.churnCheck(ctx, done)
		mu.Lock()
		p.lookups = lat
		mu.Unlock()
		if err != nil {
			fail(err)
		}
	})
}

// churnChange moves one rule of a random account to a new address.
func churnChange(ctx context.Context, st *redisstore.Store, r *rand.Rand) error {
	i, j := r.IntN(churnAccounts), r.IntN(churnPerAccount-1)+1
	a := netip.AddrFrom4([4]byte{12, byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
	return st.Update(ctx, churnAccount(i), func(tx policy.Tx) error {
		_, err := tx.PutRule(policy.Rule{ID: policy.RuleID(j + 1), Prefix: netip.PrefixFrom(a, 32), Note: "moved",
			Source: policy.SourceManual, CreatedBy: "gkbench", CreatedAt: time.Now()})
		return err
	})
}

// churnProbe allows a fresh address for the prop account, times until B
// lets it in through the prop listener, removes the rule, and again until
// done. It returns the times and the changes it made.
func (m *measurement) churnProbe(ctx context.Context, done <-chan struct{}, st *redisstore.Store) ([]time.Duration, int64, error) {
	b := m.e.addr("GKB_PROP")
	base := netip.MustParsePrefix(churnProbeNet).Addr()
	var out []time.Duration
	var n int64
	for i := 0; !closed(done); i++ {
		src := base
		for range i%250 + 1 {
			src = src.Next()
		}
		var id policy.RuleID
		t0 := time.Now()
		err := st.Update(ctx, propAccount, func(tx policy.Tx) error {
			r, err := tx.PutRule(policy.Rule{Prefix: netip.PrefixFrom(src, 32), Source: policy.SourceManual, CreatedBy: "gkbench", CreatedAt: t0})
			id = r.ID
			return err
		})
		if err != nil {
			return out, n, err
		}
		n++
		c, at, err := probe(ctx, b, src, t0.Add(enforceTimeout))
		if err != nil {
			return out, n, fmt.Errorf("rule for %v: not enforced on B within %v: %w", src, enforceTimeout, err)
		}
		c.Close()
		out = append(out, at.Sub(t0))
		if err := st.Update(ctx, propAccount, func(tx policy.Tx) error { return tx.DeleteRule(id) }); err != nil {
			return out, n, err
		}
		n++
		time.Sleep(10 * time.Millisecond)
	}
	return out, n, nil
}

// churnCheck connects to B's bench listener from allowed addresses, one
// echo each, every 2 ms until done, and returns the times.
func (m *measurement) churnCheck(ctx context.Context, done <-chan struct{}) ([]time.Duration, error) {
	addr := m.e.addr("GKB_TCP")
	var out []time.Duration
	for !closed(done) {
		t0 := time.Now()
		c, err := load.OpenEcho(ctx, addr, m.allowed.Next(), nil, load.Negotiated{})
		if err != nil {
			return out, fmt.Errorf("an allowed client was refused during the churn: %w", err)
		}
		out = append(out, time.Since(t0))
		c.Close()
		time.Sleep(2 * time.Millisecond)
	}
	return out, nil
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// policyTotals reads the accounts and live rules an instance enforces
// from its metrics.
func policyTotals(ctx context.Context, ops string) (accounts, rules int, err error) {
	body, err := get(ctx, "http://"+ops+"/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	var found int
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		var to *int
		switch {
		case !ok:
			continue
		case name == "gatekeeper_policy_accounts":
			to = &accounts
		case name == "gatekeeper_policy_live_rules":
			to = &rules
		default:
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("metrics line %q: %w", sc.Text(), err)
		}
		*to = int(f)
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("http://%s/metrics: no gatekeeper_policy_accounts and gatekeeper_policy_live_rules", ops)
	}
	return accounts, rules, nil
}

// heapStats reads an instance's live heap (HeapAlloc, after a GC if gc)
// and the bytes it has allocated since start (TotalAlloc), from
// /debug/pprof/heap on its ops listener.
func heapStats(ctx context.Context, ops string, gc bool) (live, total uint64, err error) {
	u := "http://" + ops + "/debug/pprof/heap?debug=1"
	if gc {
		u += "&gc=1"
	}
	body, err := get(ctx, u)
	if err != nil {
		return 0, 0, err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var found int
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "# "), " = ")
		if !ok {
			continue
		}
		switch k {
		case "HeapAlloc":
			live, err = strconv.ParseUint(v, 10, 64)
			found++
		case "TotalAlloc":
			total, err = strconv.ParseUint(v, 10, 64)
			found++
		}
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %s = %q: %w", u, k, v, err)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("%s: no HeapAlloc and TotalAlloc (is ops.pprof on?)", u)
	}
	return live, total, nil
}

func get(ctx context.Context, u string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return resp.Body, nil
}
