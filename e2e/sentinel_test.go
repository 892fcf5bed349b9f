package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// TestFleetOnSentinel runs two instances on a Sentinel-managed primary with
// two replicas and kills the primary (SIGKILL) in the middle of traffic and
// of admin writes through both instances: enforcement never flickers,
// every write answered 201 survives, writes resume on the new primary, and
// both instances follow it.
//
//	go test -run TestFleetOnSentinel -v ./e2e/
func TestFleetOnSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a primary, two replicas and three Sentinels, and fails over: skipped with -short")
	}
	sg := redistest.StartSentinel(t, 2, 3)
	up := echoServer(t)
	a := startInstance(t, sg.URL(), up)
	b := startInstance(t, sg.URL(), up)
	fleet := []*instance{a, b}
	master := createAccount(t, a.admin, "acct", masterPassword)
	if code, _, _ := master.addRule("acct", ipAllowed); code != http.StatusCreated {
		t.Fatalf("add rule: %d", code)
	}
	for _, in := range fleet {
		waitFor(t, 5*time.Second, "rule enforced", func() bool { return through(ipAllowed, in.db) })
	}
	c := startChecker(t, []string{a.db, b.db}, []string{ipAllowed, ipDenied}, 2, 5*time.Millisecond)

	// Writers: each adds rules for addresses of its own through its
	// instance, and notes which ones were acknowledged.
	var mu sync.Mutex
	acked := map[string]time.Time{}
	failures := map[int]int{}
	var firstFail, lastFail time.Time
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var seq atomic.Int64
	for w, in := range fleet {
		wg.Go(func() {
			api := master.on(in.admin)
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := seq.Add(1)
				ip := fmt.Sprintf("127.0.%d.%d", 2+n/250, 1+n%250)
				code, _, _ := api.addRule("acct", ip)
				now := time.Now()
				mu.Lock()
				if code == http.StatusCreated {
					acked[ip] = now
				} else {
					failures[code]++
					if firstFail.IsZero() {
						firstFail = now
					}
					lastFail = now
					if code != http.StatusServiceUnavailable {
						t.Errorf("writer %d: adding %s answered %d, want 201 or 503", w, ip, code)
					}
				}
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	ackedAfter := func(at time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, t := range acked {
			if t.After(at) {
				n++
			}
		}
		return n
	}

	time.Sleep(1500 * time.Millisecond)
	old := sg.Primary(t)
	old.Kill()
	killed := time.Now()
	next := sg.AwaitNewPrimary(t, old)
	elected := time.Since(killed)
	resumed := waitFor(t, 30*time.Second, "admin writes resuming on the new primary", func() bool { return ackedAfter(killed.Add(elected)) >= 10 })
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	c.halt()
	t.Logf("primary %s killed; the Sentinels promoted %s after %v; writes resumed %v later", old.Addr(), next.Addr(), elected, resumed)
	mu.Lock()
	t.Logf("%d writes acknowledged, failures %v between %v and %v after the kill",
		len(acked), failures, firstFail.Sub(killed).Round(time.Millisecond), lastFail.Sub(killed).Round(time.Millisecond))
	mu.Unlock()
	enforcing(t, c, []string{ipAllowed}, []string{ipDenied})
	t.Logf("%d probes of both instances during the failover", len(c.results()))

	// Every acknowledged write is in the store and enforced by both.
	_, rules := master.on(b.admin).rules("acct")
	have := map[string]bool{}
	for _, r := range rules {
		have[r.CIDR] = true
	}
	lost := 0
	for ip := range acked {
		if !have[ip+"/32"] {
			lost++
			t.Errorf("%s was acknowledged (201) and is gone after the failover", ip)
		}
	}
	for i, in := range fleet {
		d := waitFor(t, 10*time.Second, fmt.Sprintf("instance %d enforcing every rule", i), func() bool {
			return int(in.metric("gatekeeper_policy_rules", "account", "acct")) == len(rules)
		})
		t.Logf("instance %d holds the %d rules %v after the writes stopped", i, len(rules), d)
		if !through(ipAllowed, in.db) || through(ipDenied, in.db) {
			t.Errorf("instance %d: wrong verdicts after the failover", i)
		}
	}
	// Both follow the new primary: a change through one reaches the other.
	if code, _, _ := master.on(b.admin).addRule("acct", ipOther); code != http.StatusCreated {
		t.Fatalf("add through b after the failover: %d", code)
	}
	d := waitFor(t, 2*time.Second, "a change through b reaching a", func() bool { return through(ipOther, a.db) })
	t.Logf("a change through one instance reached the other %v after it was answered", d)
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost", lost, len(acked))
	}
}
