package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// window is when a rule allowed an address: from the moment its add was
// sent to the moment its delete was answered (zero: not deleted).
type window struct{ open, close time.Time }

// oracle knows, for every client address, when some rule allowed it.
type oracle struct {
	mu      sync.Mutex
	windows map[string][]window
}

func (o *oracle) opened(ip string, at time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.windows[ip] = append(o.windows[ip], window{open: at})
}

func (o *oracle) closed(ip string, at time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.windows[ip]
	w[len(w)-1].close = at
}

// late says how long after the last rule for p.ip was deleted the probe p
// got through (0 when a rule allowed it), and whether any rule ever had.
func (o *oracle) late(p probe) (time.Duration, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	best, any := time.Duration(-1), false
	for _, w := range o.windows[p.ip] {
		if p.end.Before(w.open) {
			continue // the rule came after the probe
		}
		any = true
		if w.close.IsZero() || !p.start.After(w.close) {
			return 0, true
		}
		if d := p.start.Sub(w.close); best < 0 || d < best {
			best = d
		}
	}
	return max(best, 0), any
}

// TestFleetNeverOverAllows runs three instances on one Redis under steady
// traffic from ten loopback addresses while two masters add and delete
// rules through different instances' admin APIs. A checker dials every
// instance from every address all along; a probe that gets through must
// fall within a window where a rule allowed its address, or at most the
// grace for a deletion's propagation after it (measured: the latest
// such probe). Every instance converges on the same rules.
func TestFleetNeverOverAllows(t *testing.T) {
	const grace = time.Second // SPEC: a revocation reaches every instance within 1s
	rs := redistest.Start(t)
	up := echoServer(t)
	var fleet []*instance
	var dbs []string
	for range 3 {
		in := startInstance(t, rs.URL(), up)
		fleet = append(fleet, in)
		dbs = append(dbs, in.db)
	}
	master := createAccount(t, fleet[0].admin, "acct", masterPassword)
	steady, never := "127.0.0.10", "127.0.0.30"
	pool := []string{"127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.15", "127.0.0.16", "127.0.0.17", "127.0.0.18"}
	o := &oracle{windows: map[string][]window{}}
	o.opened(steady, time.Now())
	if code, _, _ := master.addRule("acct", steady); code != http.StatusCreated {
		t.Fatalf("add %s: %d", steady, code)
	}
	for _, in := range fleet {
		waitFor(t, 5*time.Second, "steady client allowed", func() bool { return through(steady, in.db) })
	}
	ips := append([]string{steady, never}, pool...)
	duration := 8 * time.Second
	if testing.Short() {
		duration = 3 * time.Second
	}
	c := startChecker(t, dbs, ips, 4, 5*time.Millisecond)

	// Two masters' sessions, each changing its half of the pool through a
	// different instance each time, and measuring how long each change
	// takes to reach every instance.
	var mu sync.Mutex
	var addLag, delLag []time.Duration
	var changes int
	var wg sync.WaitGroup
	deadline := time.Now().Add(duration)
	for w := range 2 {
		mine := pool[w*4 : w*4+4]
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			ids := map[string]uint64{}
			for k := 0; time.Now().Before(deadline); k++ {
				ip := mine[rng.IntN(len(mine))]
				via := master.on(fleet[(k+w)%len(fleet)].admin)
				if id, ok := ids[ip]; ok {
					code, _ := via.deleteRule("acct", id)
					if code != http.StatusNoContent {
						t.Errorf("delete %s through instance %d: %d", ip, (k+w)%len(fleet), code)
						return
					}
					done := time.Now()
					o.closed(ip, done)
					delete(ids, ip)
					lag := time.Since(done)
					for _, in := range fleet {
						for through(ip, in.db) {
							if time.Since(done) > 5*time.Second {
								t.Errorf("%s still let in 5s after its rule was deleted", ip)
								return
							}
							time.Sleep(2 * time.Millisecond)
						}
						lag = time.Since(done)
					}
					mu.Lock()
					delLag, changes = append(delLag, lag), changes+1
					mu.Unlock()
				} else {
					sent := time.Now()
					o.opened(ip, sent)
					code, r, _ := via.addRule("acct", ip)
					if code != http.StatusCreated {
						t.Errorf("add %s through instance %d: %d", ip, (k+w)%len(fleet), code)
						return
					}
					done := time.Now()
					ids[ip] = r.ID
					var lag time.Duration
					for _, in := range fleet {
						for !through(ip, in.db) {
							if time.Since(done) > 5*time.Second {
								t.Errorf("%s not let in 5s after its rule was added", ip)
								return
							}
							time.Sleep(2 * time.Millisecond)
						}
						lag = time.Since(done)
					}
					mu.Lock()
					addLag, changes = append(addLag, lag), changes+1
					mu.Unlock()
				}
				time.Sleep(time.Duration(20+rng.IntN(80)) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	c.halt()

	ps := c.results()
	var over int
	var latest time.Duration
	for _, p := range ps {
		if !p.ok {
			continue
		}
		late, ever := o.late(p)
		if !ever {
			over++
			t.Errorf("instance %d let %s in at %v, when no rule had ever allowed it", p.inst, p.ip, p.start.Format("15:04:05.000"))
			continue
		}
		latest = max(latest, late)
		if late > grace {
			over++
			t.Errorf("instance %d let %s in %v after its rule was deleted (grace %v)", p.inst, p.ip, late, grace)
		}
	}
	if ok, refused := verdicts(ps, steady); refused > 0 {
		t.Errorf("%s, allowed throughout, was refused %d times (%d through)", steady, refused, ok)
	}
	if ok, _ := verdicts(ps, never); ok > 0 {
		t.Errorf("%s, never allowed, got through %d times", never, ok)
	}
	t.Logf("%d rule changes through 3 instances in %v; %d probes, %d over-allowed; the latest success after a deletion came %v after it was answered",
		changes, duration, len(ps), over, latest)
	t.Logf("propagation to all 3 instances, measured by connecting: add %s; delete %s", summary(addLag), summary(delLag))

	// Convergence: every instance holds the same rules as the store and
	// lets in exactly the addresses they allow.
	_, rules := master.rules("acct")
	allowed := map[string]bool{}
	for _, r := range rules {
		allowed[r.CIDR] = true
	}
	for i, in := range fleet {
		waitFor(t, 5*time.Second, fmt.Sprintf("instance %d holding %d rules", i, len(rules)), func() bool {
			return int(in.metric("gatekeeper_policy_rules", "account", "acct")) == len(rules)
		})
		for _, ip := range ips {
			want := allowed[ip+"/32"]
			if got := through(ip, in.db); got != want {
				t.Errorf("instance %d: %s through = %v, want %v", i, ip, got, want)
			}
		}
	}
}

// summary gives the median, p99 and maximum of some durations.
func summary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	r := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	return fmt.Sprintf("n=%d p50 %v p99 %v max %v", len(ds), r(ds[len(ds)/2]), r(ds[len(ds)*99/100]), r(ds[len(ds)-1]))
}
