package admin

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/password"
)

// TestConcurrentGuessesStayWithinTheLimit: many wrong passwords for one
// login at once, from as many addresses, get no more passwords checked
// than the per-login budget. Found by e2e TestHostileClients, where 200
// parallel guesses at a login limited to 5 failures had 203 checked: every
// attempt passed the check before the first failure was counted.
func TestConcurrentGuessesStayWithinTheLimit(t *testing.T) {
	// A realistic hash cost keeps many attempts in flight at once.
	f := newFixture(t, fixtureOptions{trustedProxies: loopback, params: password.Params{Memory: 8 << 10, Time: 1, Threads: 1, KeyLen: 32},
		limits: LoginLimits{PerLogin: Limit{Burst: 5, Every: time.Minute, Lockout: time.Minute}}})
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := range 100 {
		wg.Go(func() {
			r := f.req("POST", "/api/v1/login", "", loginBody(acctA, "alice", fmt.Sprintf("wrong-password-%d", i)),
				fmt.Sprintf("X-Forwarded-For: 198.51.%d.%d", i/200, 1+i%200))
			mu.Lock()
			codes[r.status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("100 concurrent wrong passwords for one login: %v", codes)
	if codes[http.StatusUnauthorized] != 5 || codes[http.StatusTooManyRequests] != 95 {
		t.Errorf("answers %v, want 5 checked (401) and 95 refused (429)", codes)
	}
}
