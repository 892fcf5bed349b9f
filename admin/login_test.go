package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func loginBody(account, username, pw string) LoginRequest {
	return LoginRequest{Account: account, Username: username, Password: pw}
}

// TestLoginSameAnswer: whatever part is wrong, the answer is the same.
func TestLoginSameAnswer(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.token(master)
	f.req("PATCH", "/api/v1/accounts/10042/users/bob", m, map[string]bool{"active": false})
	cases := []struct {
		name string
		body any
	}{
		{"wrong account", loginBody("99999", "alice", pwAlice)},
		{"invalid account", loginBody("../../etc", "alice", pwAlice)},
		{"wrong user", loginBody(acctA, "mallory", pwAlice)},
		{"invalid username", loginBody(acctA, "Robert'); DROP", pwAlice)},
		{"wrong password", loginBody(acctA, "alice", "not-the-password")},
		{"wrong master password", loginBody(acctA, "", "not-the-password")},
		{"deactivated user, right password", loginBody(acctA, "bob", pwBob)},
		{"empty password", loginBody(acctA, "alice", "")},
	}
	var first resp
	for i, c := range cases {
		r := f.req("POST", "/api/v1/login", "", c.body)
		if r.status != http.StatusUnauthorized || r.errCode() != CodeInvalidCredentials {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
		}
		if i == 0 {
			first = r
		} else if string(r.body) != string(first.body) {
			t.Errorf("%s: answer %s differs from %s", c.name, r.body, first.body)
		}
	}
	// Failed attempts on an existing account are in its audit trail.
	es, _ := f.bolt.Audit(context.Background(), acctA, policy.AuditQuery{Limit: 10})
	fails := 0
	for _, e := range es {
		if e.Action == "login.failure" {
			fails++
			if e.ClientIP != "127.0.0.1" || e.Time.IsZero() || e.Role == "" || e.Actor == "" {
				t.Errorf("incomplete audit entry %+v", e)
			}
		}
	}
	if fails != 6 {
		t.Errorf("%d failed logins audited on %s, want 6", fails, acctA)
	}
	if got := counterValue(t, f.svc.loginFailures.WithLabelValues("invalid_credentials")); got != float64(len(cases)) {
		t.Errorf("gatekeeper_login_failures_total = %v, want %d", got, len(cases))
	}
}

// TestLoginBurstFromOneIP: wrong passwords from one address, each for a
// different login, are refused with 429 once the address's budget is
// spent, even for a right password; other addresses are unaffected.
func TestLoginBurstFromOneIP(t *testing.T) {
	f := newFixture(t, fixtureOptions{trustedProxies: loopback,
		limits: LoginLimits{PerIP: Limit{Burst: 10, Every: time.Minute, Lockout: time.Minute}, PerLogin: Limit{Burst: 5}}})
	from := func(ip string) string { return "X-Forwarded-For: " + ip }
	var codes []int
	var retry string
	start := time.Now()
	for i := range 30 {
		r := f.req("POST", "/api/v1/login", "", loginBody(acctA, fmt.Sprintf("guess%d", i), "wrong-password-1"), from("198.51.100.9"))
		codes = append(codes, r.status)
		if r.status == http.StatusTooManyRequests && retry == "" {
			retry = r.header.Get("Retry-After")
		}
	}
	t.Logf("30 wrong logins from one IP in %v: %v", time.Since(start), codes)
	for i, c := range codes {
		want := http.StatusUnauthorized
		if i >= 10 {
			want = http.StatusTooManyRequests
		}
		if c != want {
			t.Fatalf("attempt %d: %d, want %d", i+1, c, want)
		}
	}
	if n, err := strconv.Atoi(retry); err != nil || n < 50 || n > 60 {
		t.Errorf("Retry-After %q, want about 60", retry)
	}
	if r := f.req("POST", "/api/v1/login", "", loginBody(acctA, "alice", pwAlice), from("198.51.100.9")); r.status != http.StatusTooManyRequests {
		t.Errorf("right password from a locked-out address: %d", r.status)
	}
	if r := f.req("POST", "/api/v1/login", "", loginBody(acctA, "alice", pwAlice), from("198.51.100.10")); r.status != http.StatusOK {
		t.Errorf("another address: %d %s", r.status, r.body)
	}
	// The spoofed leftmost entry is not believed: the client cannot choose
	// its way out of the lockout.
	if r := f.req("POST", "/api/v1/login", "", loginBody(acctA, "alice", pwAlice), from("1.2.3.4, 198.51.100.9")); r.status != http.StatusTooManyRequests {
		t.Errorf("spoofed X-Forwarded-For escaped the lockout: %d", r.status)
	}
	if got := counterValue(t, f.svc.loginFailures.WithLabelValues("rate_limited")); got != 22 {
		t.Errorf("rate_limited failures %v, want 22", got)
	}
}

// TestLoginAcrossIPs: wrong passwords for one login from many addresses
// lock that login, and only that login.
func TestLoginAcrossIPs(t *testing.T) {
	f := newFixture(t, fixtureOptions{trustedProxies: loopback,
		limits: LoginLimits{PerIP: Limit{Burst: 10}, PerLogin: Limit{Burst: 5, Every: time.Minute, Lockout: time.Minute}}})
	var codes []int
	for i := range 20 {
		ip := fmt.Sprintf("X-Forwarded-For: 198.51.100.%d", i+1)
		codes = append(codes, f.req("POST", "/api/v1/login", "", loginBody(acctA, "alice", "wrong-password-1"), ip).status)
	}
	t.Logf("20 wrong logins for one user from 20 IPs: %v", codes)
	for i, c := range codes {
		want := http.StatusUnauthorized
		if i >= 5 {
			want = http.StatusTooManyRequests
		}
		if c != want {
			t.Fatalf("attempt %d: %d, want %d", i+1, c, want)
		}
	}
	// Case and spaces do not make a new login.
	if r := f.req("POST", "/api/v1/login", "", loginBody(acctA, " ALICE ", pwAlice), "X-Forwarded-For: 203.0.113.50"); r.status != http.StatusTooManyRequests {
		t.Errorf("right password for the locked login from a new address: %d", r.status)
	}
	if r := f.req("POST", "/api/v1/login", "", loginBody(acctA, "bob", pwBob), "X-Forwarded-For: 198.51.100.1"); r.status != http.StatusOK {
		t.Errorf("another user from the same addresses: %d %s", r.status, r.body)
	}
}

// TestLockoutGrows: each failure right after a lockout locks for longer,
// up to the maximum, and a quiet period forgets it all.
func TestLockoutGrows(t *testing.T) {
	l := newLimiter(Limit{Burst: 3, Every: time.Minute, Lockout: time.Minute, MaxLockout: 8 * time.Minute}, 10)
	now := time.Unix(1_700_000_000, 0)
	var locks []time.Duration
	for range 3 {
		locks = append(locks, l.fail("k", now))
	}
	for range 5 {
		now = now.Add(l.wait("k", now))
		locks = append(locks, l.fail("k", now))
	}
	want := []time.Duration{0, 0, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 8 * time.Minute, 8 * time.Minute}
	if !slices.Equal(locks, want) {
		t.Fatalf("lockouts %v, want %v", locks, want)
	}
	now = now.Add(time.Hour)
	if w := l.wait("k", now); w != 0 {
		t.Fatalf("still waiting %v after an hour", w)
	}
	if d := l.fail("k", now); d != 0 {
		t.Fatalf("history not forgotten: locked %v", d)
	}
	// The map stays bounded.
	for i := range 100 {
		l.fail(strconv.Itoa(i), now)
	}
	if n := len(l.keys); n > 10 {
		t.Fatalf("%d keys kept, max 10", n)
	}
}

// TestFailedLoginsCostTheSame: a wrong username, account or password
// does the same work, exactly one argon2id verification with the same
// parameters, so that timing does not tell which logins exist. Counting the
// work rather than timing it keeps the test exact on a shared machine.
func TestFailedLoginsCostTheSame(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	var mu sync.Mutex
	var verified []string // the parameter part of each hash checked
	real := f.svc.checkHash
	f.svc.checkHash = func(hash, pw string) bool {
		mu.Lock()
		verified = append(verified, hashParams(hash))
		mu.Unlock()
		return real(hash, pw)
	}
	err := f.bolt.Update(context.Background(), acctA, func(tx policy.Tx) error {
		u, err := tx.User("bob")
		if err != nil {
			return err
		}
		u.Active = false
		return tx.PutUser(u)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := hashParams(mustHash(t, "anything-at-all", cheap))
	for _, tc := range []struct {
		name string
		body LoginRequest
	}{
		{"wrong user", loginBody(acctA, "nobody-here", "wrong-password-1")},
		{"wrong password", loginBody(acctA, "alice", "wrong-password-1")},
		{"deactivated user", loginBody(acctA, "bob", pwBob)},
		{"wrong account", loginBody("99999", "alice", "wrong-password-1")},
		{"malformed account", loginBody("not-an-account", "alice", "wrong-password-1")},
		{"wrong master password", loginBody(acctA, "", "wrong-password-1")},
		{"master of a missing account", loginBody("99999", "", "wrong-password-1")},
	} {
		mu.Lock()
		verified = nil
		mu.Unlock()
		r := f.req("POST", "/api/v1/login", "", tc.body)
		if r.status != http.StatusUnauthorized || r.errCode() != CodeInvalidCredentials {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
		mu.Lock()
		got := slices.Clone(verified)
		mu.Unlock()
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s: verified %q, want one verification with %q", tc.name, got, want)
		}
	}
}

// hashParams is the algorithm and cost part of a PHC hash string, which
// decides how long verifying it takes.
func hashParams(h string) string {
	parts := strings.Split(h, "$")
	if len(parts) < 4 {
		return "malformed: " + h
	}
	return strings.Join(parts[:4], "$")
}

func mustHash(t *testing.T, pw string, p password.Params) string {
	t.Helper()
	h, err := password.Hash(pw, p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestConcurrentLogins: logins in parallel are all served, within the
// hashing bound, and each gets its own session.
func TestConcurrentLogins(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	var wg sync.WaitGroup
	tokens := make([]string, 8)
	for i := range tokens {
		wg.Go(func() {
			r := f.req("POST", "/api/v1/login", "", loginBody(acctA, "alice", pwAlice))
			var res LoginResult
			if r.status == 200 {
				r.decode(t, &res)
			}
			tokens[i] = res.Token
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, tok := range tokens {
		if tok == "" || seen[tok] {
			t.Fatalf("tokens %v", tokens)
		}
		seen[tok] = true
	}
}
