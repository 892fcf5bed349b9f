package e2e

// Store faults under the real binary: Redis hung, killed, restarted empty;
// gatekeeper started while Redis is down, with a good, a corrupt or a
// truncated snapshot. docs/reliability.md lists what each measures.

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

const masterPassword = "correct horse battery staple"

// enforcing fails the test if any probe of ips went the wrong way: allowed
// must always get through, denied never.
func enforcing(t *testing.T, c *checker, allowed, denied []string) {
	t.Helper()
	ps := c.results()
	for _, ip := range allowed {
		ok, refused := verdicts(ps, ip)
		if refused > 0 || ok == 0 {
			t.Errorf("%s, allowed throughout: %d refused, %d through", ip, refused, ok)
		}
	}
	for _, ip := range denied {
		if ok, _ := verdicts(ps, ip); ok > 0 {
			t.Errorf("%s, allowed by no rule: got through %d times", ip, ok)
		}
	}
}

// storeTimeout is store.timeout as the instances run it: the default.
const storeTimeout = 2 * time.Second

// TestRedisPaused freezes Redis (SIGSTOP) under a running instance: the
// gate keeps enforcing what it had; admin reads and writes and web pages
// answer 503 once store.timeout is up and change nothing; once Redis is
// back the write retried applies exactly once. Then Redis holds writes
// unanswered (CLIENT PAUSE WRITE): a write whose outcome is unknown answers
// store_unconfirmed, and retrying it applies it once.
func TestRedisPaused(t *testing.T) {
	rs := redistest.Start(t)
	in := startInstance(t, rs.URL(), echoServer(t))
	master := createAccount(t, in.admin, "acct", masterPassword)
	code, kept, _ := master.addRule("acct", ipAllowed)
	if code != http.StatusCreated {
		t.Fatalf("add rule: %d", code)
	}
	waitFor(t, 5*time.Second, "rule enforced", func() bool { return through(ipAllowed, in.db) })
	page := webLogin(t, in.admin, "acct", masterPassword)
	c := startChecker(t, []string{in.db}, []string{ipAllowed, ipDenied}, 2, 10*time.Millisecond)

	storeDown := when(20*time.Second, func() bool { return in.metricValue("gatekeeper_store_up") == 0 })
	rs.Pause()
	paused := time.Now()
	// Each call's first store call waits store.timeout, then the answer
	// is 503. The margin is wide for a loaded machine (CI builds with
	// -race); the figures go to the log and docs/reliability.md.
	const bound = storeTimeout + 4*time.Second
	calls := []struct {
		name string
		do   func() (int, string, time.Duration)
		want string // in the answer
	}{
		{"API: add a rule", func() (int, string, time.Duration) {
			code, b, took := master.call("POST", "/api/v1/accounts/acct/firewall/rules", map[string]any{"cidr": ipOther})
			return code, string(b), took
		}, `"store_unavailable"`},
		{"API: delete a rule", func() (int, string, time.Duration) {
			code, b, took := master.call("DELETE", fmt.Sprintf("/api/v1/accounts/acct/firewall/rules/%d", kept.ID), nil)
			return code, string(b), took
		}, `"store_unavailable"`},
		{"API: read the firewall", func() (int, string, time.Duration) {
			code, b, took := master.call("GET", "/api/v1/accounts/acct/firewall", nil)
			return code, string(b), took
		}, `"store_unavailable"`},
		{"page: firewall", func() (int, string, time.Duration) { return page.get("/accounts/acct/firewall") }, "Could not load this page"},
		{"page: add a rule", func() (int, string, time.Duration) {
			return page.post("/accounts/acct/firewall/rules", url.Values{"cidr": {ipOther}})
		}, "Could not save, nothing changed"},
	}
	var slowest time.Duration
	for _, call := range calls {
		code, body, took := call.do()
		slowest = max(slowest, took)
		t.Logf("%s with Redis frozen: %d after %v", call.name, code, took.Round(time.Millisecond))
		if code != http.StatusServiceUnavailable || !strings.Contains(body, call.want) {
			t.Errorf("%s with Redis frozen: %d, want 503 with %q:\n%s", call.name, code, call.want, body)
		}
		if took > bound {
			t.Errorf("%s with Redis frozen took %v; store.timeout is %v", call.name, took, storeTimeout)
		}
	}
	t.Logf("%d calls with Redis frozen, the slowest answered after %v (store.timeout %v)", len(calls), slowest.Round(time.Millisecond), storeTimeout)
	if at := storeDown(); at.IsZero() {
		t.Error("gatekeeper_store_up did not go to 0 within 20s of the pause")
	} else {
		t.Logf("gatekeeper_store_up went to 0 %v after the pause", at.Sub(paused))
	}
	if code, body := in.readyz(); code != http.StatusOK || !strings.Contains(body, "unreachable") {
		t.Errorf("/readyz with Redis paused: %d %s, want 200 saying the store is unreachable", code, body)
	}
	if through(ipOther, in.db) {
		t.Error("the write that answered 503 lets its address in")
	}
	rs.Resume()
	resumed := time.Now()
	up := waitFor(t, 15*time.Second, "gatekeeper_store_up 1", func() bool { return in.metric("gatekeeper_store_up") == 1 })
	t.Logf("Redis paused for %v; store up again %v after SIGCONT", resumed.Sub(paused), up)

	// Nothing was changed, and the retried write applies exactly once.
	if _, rules := master.rules("acct"); len(rules) != 1 {
		t.Fatalf("after the pause: %d rules, want the one from before (%v)", len(rules), rules)
	}
	if through(ipOther, in.db) {
		t.Error("the write that answered 503 applied after Redis resumed")
	}
	if code, _, _ := master.addRule("acct", ipOther); code != http.StatusCreated {
		t.Fatalf("retried write: %d, want 201", code)
	}
	if code, _, _ := master.addRule("acct", ipOther); code != http.StatusConflict {
		t.Errorf("write retried twice: %d, want 409", code)
	}
	if _, rules := master.rules("acct"); len(rules) != 2 {
		t.Errorf("after the retries: %d rules, want 2 (%v)", len(rules), rules)
	}
	waitFor(t, time.Second, "retried rule enforced", func() bool { return through(ipOther, in.db) })

	// Writes held unanswered: the transaction went out, and whether it
	// applies is up to Redis. A user is created (no rule ID to draw
	// first, so the write itself is what waits).
	// Held long enough that the write, hashed and read first, reaches its
	// commit well within it even in a -race binary.
	hold := storeTimeout + 4*time.Second
	rs.PauseWrites(hold)
	held := time.Now()
	user := map[string]any{"username": "jsmith", "password": "a-first-day-password-1"}
	code, body, took := master.call("POST", "/api/v1/accounts/acct/users", user)
	t.Logf("a write held unanswered: %d after %v: %s", code, took.Round(time.Millisecond), strings.TrimSpace(string(body)))
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), `"store_unconfirmed"`) {
		t.Errorf("a write held unanswered: %d %s, want 503 store_unconfirmed", code, body)
	}
	if took > bound {
		t.Errorf("a write held unanswered took %v; store.timeout is %v", took, storeTimeout)
	}
	time.Sleep(time.Until(held.Add(hold + 100*time.Millisecond)))
	code, _, _ = master.call("POST", "/api/v1/accounts/acct/users", user)
	t.Logf("retried after the pause: %d", code)
	if code != http.StatusCreated && code != http.StatusConflict {
		t.Errorf("retried: %d, want 201 (it had not applied) or 409 (it had)", code)
	}
	if code, _, _ = master.call("POST", "/api/v1/accounts/acct/users", user); code != http.StatusConflict {
		t.Errorf("retried twice: %d, want 409", code)
	}
	code, body, _ = master.call("GET", "/api/v1/accounts/acct/users", nil)
	if n := strings.Count(string(body), `"username":"jsmith"`); code != http.StatusOK || n != 1 {
		t.Errorf("users after the retries: %d, jsmith %d times: %s", code, n, body)
	}

	c.halt()
	enforcing(t, c, []string{ipAllowed}, []string{ipDenied})
	ps := c.results()
	ok, refused := verdicts(ps, ipAllowed)
	through2, _ := verdicts(ps, ipDenied)
	t.Logf("%d probes during the test: allowed address %d through, %d refused; denied address %d through", len(ps), ok, refused, through2)
}

// webSession is a browser's session on the admin pages: cookies, and the
// CSRF token of the last page.
type webSession struct {
	base string
	c    *http.Client
	csrf string
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// webLogin logs a master in through the login page.
func webLogin(t *testing.T, adminAddr, account, pw string) *webSession {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	w := &webSession{base: "https://" + adminAddr, c: &http.Client{Jar: jar, Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}} // self-signed
	if code, _, _ := w.get("/login?as=master"); code != http.StatusOK {
		t.Fatalf("login page: %d", code)
	}
	if code, body, _ := w.post("/login", url.Values{"as": {"master"}, "account": {account}, "password": {pw}}); code != http.StatusSeeOther {
		t.Fatalf("log in through the page: %d %s", code, body)
	}
	if code, _, _ := w.get("/accounts/" + account + "/firewall"); code != http.StatusOK {
		t.Fatalf("firewall page: %d", code)
	}
	return w
}

func (w *webSession) get(path string) (int, string, time.Duration) {
	req, _ := http.NewRequest("GET", w.base+path, nil)
	return w.do(req)
}

// post sends a form as the browser would, with the CSRF token.
func (w *webSession) post(path string, form url.Values) (int, string, time.Duration) {
	form.Set("csrf", w.csrf)
	req, _ := http.NewRequest("POST", w.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", w.base)
	return w.do(req)
}

func (w *webSession) do(req *http.Request) (int, string, time.Duration) {
	start := time.Now()
	res, err := w.c.Do(req)
	took := time.Since(start)
	if err != nil {
		return 0, err.Error(), took
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if m := csrfField.FindSubmatch(b); m != nil {
		w.csrf = string(m[1])
	}
	return res.StatusCode, string(b), took
}

// TestRedisKilled kills Redis (SIGKILL) under two instances and restarts
// it with its data: both keep enforcing, writes fail fast with 503 while it
// is gone, and both resynchronise. A change made through one instance
// while the other is frozen (SIGSTOP, its own outage) reaches the other
// once it runs again.
func TestRedisKilled(t *testing.T) {
	rs := redistest.Start(t, redistest.AppendOnly())
	up := echoServer(t)
	a := startInstance(t, rs.URL(), up)
	b := startInstance(t, rs.URL(), up)
	master := createAccount(t, a.admin, "acct", masterPassword)
	master.addRule("acct", ipAllowed)
	_, doomed, _ := master.addRule("acct", ipOther)
	for _, in := range []*instance{a, b} {
		waitFor(t, 5*time.Second, "rules enforced", func() bool { return through(ipAllowed, in.db) && through(ipOther, in.db) })
	}
	c := startChecker(t, []string{a.db, b.db}, []string{ipAllowed, ipDenied}, 2, 10*time.Millisecond)

	var noticed []func() time.Time
	for _, in := range []*instance{a, b} {
		noticed = append(noticed, when(20*time.Second, func() bool { return in.metricValue("gatekeeper_store_up") == 0 }))
	}
	rs.Kill()
	killed := time.Now()
	code, _, took := master.call("POST", "/api/v1/accounts/acct/firewall/rules", map[string]any{"cidr": ipDenied})
	t.Logf("admin write with Redis killed: %d after %v", code, took)
	if code != http.StatusServiceUnavailable || took > 10*time.Second {
		t.Errorf("admin write with Redis killed: %d after %v, want 503 within 10s", code, took)
	}
	for i, at := range noticed {
		if at().IsZero() {
			t.Fatalf("instance %d: gatekeeper_store_up not 0 within 20s of the kill", i)
		}
		t.Logf("instance %d noticed the outage %v after the kill", i, at().Sub(killed))
	}
	// b freezes: its own outage, over Redis's restart and a change.
	b.cmd.Process.Signal(syscall.SIGSTOP)
	rs.Restart()
	restarted := time.Now()
	waitFor(t, 15*time.Second, "instance a back on the store", func() bool { return a.metric("gatekeeper_store_up") == 1 })
	t.Logf("instance a resynchronised %v after Redis restarted", time.Since(restarted))
	var code2 int
	waitFor(t, 10*time.Second, "a write through a", func() bool {
		code2, _ = master.deleteRule("acct", doomed.ID)
		return code2 == http.StatusNoContent
	})
	_, added, _ := master.addRule("acct", ipDenied)
	if added.ID == 0 {
		t.Fatal("rule not added through a after the restart")
	}
	b.cmd.Process.Signal(syscall.SIGCONT)
	d := waitFor(t, 15*time.Second, "b applying the changes made while it was frozen", func() bool {
		return through(ipDenied, b.db) && !through(ipOther, b.db)
	})
	t.Logf("instance b applied the changes made during its outage %v after it ran again", d)
	if !through(ipDenied, a.db) || through(ipOther, a.db) {
		t.Error("instance a does not enforce its own changes")
	}
	c.halt()
	// ipDenied was allowed at the end: look only at what must hold
	// throughout.
	enforcing(t, c, []string{ipAllowed}, nil)
	for _, p := range c.results() {
		if p.ip == ipDenied && p.ok && p.start.Before(killed) {
			t.Errorf("instance %d let %s in before any rule allowed it", p.inst, ipDenied)
		}
	}
	for i, in := range []*instance{a, b} {
		waitFor(t, 10*time.Second, "ready without a problem", func() bool {
			code, body := in.readyz()
			return code == http.StatusOK && policyProblem(body) == ""
		})
		if _, rules := master.on(in.admin).rules("acct"); len(rules) != 2 {
			t.Errorf("instance %d lists %d rules after the restart, want 2", i, len(rules))
		}
		// go-redis's own complaints during the outage included.
		in.structuredLog()
	}
}

// TestRedisRestartedEmpty restarts Redis without persistence under two
// instances: neither opens or closes a gate, both raise the alarm (metric,
// log, /readyz detail), writes answer 503, and `gatekeeper store reseed`
// brings the store and both instances back.
func TestRedisRestartedEmpty(t *testing.T) {
	rs := redistest.Start(t)
	up := echoServer(t)
	a := startInstance(t, rs.URL(), up)
	b := startInstance(t, rs.URL(), up)
	master := createAccount(t, a.admin, "acct", masterPassword)
	master.addRule("acct", ipAllowed)
	for _, in := range []*instance{a, b} {
		waitFor(t, 5*time.Second, "rule enforced", func() bool { return through(ipAllowed, in.db) })
		// The snapshot, which reseed reads, is written within 2s of a change.
		waitFor(t, 10*time.Second, "snapshot written", func() bool {
			_, err := os.Stat(filepath.Join(in.dir, "data", "policy.snapshot"))
			return err == nil
		})
	}
	for _, in := range []*instance{a, b} {
		waitSnapshotRules(t, in, "acct", 1) // the snapshot of the rule, not of the empty account
	}
	c := startChecker(t, []string{a.db, b.db}, []string{ipAllowed, ipDenied}, 2, 10*time.Millisecond)

	var alarms []func() time.Time
	for _, in := range []*instance{a, b} {
		alarms = append(alarms, when(20*time.Second, func() bool { return in.metricValue("gatekeeper_store_generation_mismatch") == 1 }))
	}
	rs.Restart() // no persistence: empty
	lost := time.Now()
	for i, in := range []*instance{a, b} {
		if alarms[i]().IsZero() {
			t.Fatalf("instance %d: gatekeeper_store_generation_mismatch not 1 within 20s", i)
		}
		code, body := in.readyz()
		t.Logf("instance %d raised the alarm %v after Redis came back empty; /readyz %d %s", i, alarms[i]().Sub(lost), code, strings.TrimSpace(body))
		if !strings.Contains(body, "generation") {
			t.Errorf("instance %d: /readyz does not say the store lost its data: %s", i, body)
		}
		if !strings.Contains(in.log.String(), "refusing to load policy from a store that lost its data") {
			t.Errorf("instance %d: no log line about the lost data", i)
		}
	}
	// The sessions went with the data: the master is logged out, and
	// cannot log in to an account the store no longer has.
	code, body, _ := master.call("POST", "/api/v1/accounts/acct/firewall/rules", map[string]any{"cidr": ipOther})
	if code != http.StatusUnauthorized {
		t.Errorf("admin write on the emptied store: %d %s, want 401 (the session is gone)", code, body)
	}
	code, body, _ = newAdmin(b.admin, "").call("POST", "/api/v1/login", map[string]any{"account": "acct", "password": masterPassword})
	if code != http.StatusUnauthorized {
		t.Errorf("login on the emptied store: %d %s, want 401", code, body)
	}
	// Nor does the operator create an account there, which would give the
	// emptied store a generation of its own and make the reseed below
	// impossible.
	code, body, _ = newAdmin(a.admin, operatorToken).call("POST", "/api/v1/accounts", map[string]any{"id": "other", "password": masterPassword})
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "store_lost_data") {
		t.Errorf("account created on the emptied store: %d %s, want 503 store_lost_data", code, body)
	}
	// An instance restarted now enforces its snapshot rather than the empty
	// store, with the same alarm, and does not create its bootstrap
	// account there (which would make the loss permanent).
	c.halt()
	enforcing(t, c, []string{ipAllowed}, []string{ipDenied})
	t.Logf("%d probes from the data loss to the restart of instance 1", len(c.results()))
	b.stop(40 * time.Second)
	b.writeConfig(strings.ReplaceAll(mustRead(t, b.config), "listeners:", "bootstrap: {account: demo, password_file: ./data/demo.password}\nlisteners:"))
	b.spawn()
	b.waitReady()
	if !through(ipAllowed, b.db) || through(ipDenied, b.db) {
		t.Error("an instance restarted on the emptied store does not enforce its snapshot")
	}
	if code, body := b.readyz(); code != http.StatusOK || !strings.Contains(body, "generation") || b.metric("gatekeeper_store_generation_mismatch") != 1 {
		t.Errorf("an instance restarted on the emptied store: /readyz %d %s, mismatch %v", code, body, b.metric("gatekeeper_store_generation_mismatch"))
	}
	if !strings.Contains(b.log.String(), "not creating the bootstrap account") {
		t.Error("no log line about skipping the bootstrap account")
	}

	c = startChecker(t, []string{a.db, b.db}, []string{ipAllowed, ipDenied}, 2, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond)

	// The operator re-seeds from an instance's snapshot, with the binary.
	out, err := runBinary(a.dir, "", "store", "reseed", "-config", a.config)
	t.Logf("gatekeeper store reseed: %s", strings.TrimSpace(out))
	if err != nil || !strings.Contains(out, "restored 1 accounts with 1 rules") {
		t.Fatalf("store reseed: %v\n%s", err, out)
	}
	reseeded := time.Now()
	for i, in := range []*instance{a, b} {
		d := waitFor(t, 15*time.Second, "alarm cleared", func() bool {
			code, body := in.readyz()
			return in.metric("gatekeeper_store_generation_mismatch") == 0 && code == http.StatusOK && policyProblem(body) == ""
		})
		t.Logf("instance %d took the re-seeded store back %v after reseed", i, d)
	}
	c.halt()
	enforcing(t, c, []string{ipAllowed}, []string{ipDenied})
	t.Logf("%d probes from the restart to %v after the reseed", len(c.results()), time.Since(reseeded))

	// The account needs a new master password (a snapshot has none).
	if out, err := runBinary(a.dir, "a brand new master password\n", "account", "reset-password", "-config", a.config, "-account", "acct"); err != nil {
		t.Fatalf("account reset-password: %v\n%s", err, out)
	}
	m2 := login(t, b.admin, "acct", "a brand new master password")
	if code, _, _ := m2.addRule("acct", ipOther); code != http.StatusCreated {
		t.Fatalf("write after the reseed: %d", code)
	}
	for _, in := range []*instance{a, b} {
		waitFor(t, 2*time.Second, "write after reseed enforced", func() bool { return through(ipOther, in.db) })
	}
}

// TestStartWithRedisDown restarts an instance while Redis is down: it
// serves from its snapshot, ready, and resynchronises when Redis returns.
// A corrupt or truncated snapshot is refused: not ready, everything
// denied, never half loaded.
func TestStartWithRedisDown(t *testing.T) {
	rs := redistest.Start(t, redistest.AppendOnly())
	up := echoServer(t)
	in := startInstance(t, rs.URL(), up)
	master := createAccount(t, in.admin, "acct", masterPassword)
	master.addRule("acct", ipAllowed)
	waitFor(t, 5*time.Second, "rule enforced", func() bool { return through(ipAllowed, in.db) })
	snap := filepath.Join(in.dir, "data", "policy.snapshot")
	waitSnapshotRules(t, in, "acct", 1)
	good, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}

	rs.Stop()
	start := time.Now()
	in.restart()
	t.Logf("restarted with Redis down: ready from the snapshot after %v", time.Since(start))
	if code, body := in.readyz(); code != http.StatusOK || !strings.Contains(body, "snapshot") {
		t.Errorf("/readyz from the snapshot: %d %s", code, body)
	}
	if !through(ipAllowed, in.db) || through(ipDenied, in.db) {
		t.Error("the snapshot is not enforced")
	}
	rs.Restart()
	d := waitFor(t, 15*time.Second, "resynchronised", func() bool {
		code, body := in.readyz()
		return in.metric("gatekeeper_store_up") == 1 && code == http.StatusOK && policyProblem(body) == ""
	})
	t.Logf("resynchronised %v after Redis came back", d)

	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"corrupt", func() []byte { b := append([]byte(nil), good...); b[len(b)/2] ^= 0x40; return b }()},
		{"truncated", good[:len(good)/2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs.Stop()
			in.stop(40 * time.Second)
			if err := os.WriteFile(snap, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			in.spawn()
			waitFor(t, 20*time.Second, "/readyz answering", func() bool { code, _ := in.readyz(); return code != 0 })
			// It stays unready and closed.
			for range 20 {
				if code, body := in.readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "corrupt") {
					t.Fatalf("/readyz with a %s snapshot and Redis down: %d %s, want 503 naming the corrupt snapshot", tc.name, code, body)
				}
				if through(ipAllowed, in.db) {
					t.Fatalf("a %s snapshot let a client in", tc.name)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if n := in.metric("gatekeeper_policy_rules", "account", "acct"); n != 0 {
				t.Errorf("a %s snapshot loaded %v rules", tc.name, n)
			}
			// Redis back: the instance loads from it and gets ready.
			rs.Restart()
			d := waitFor(t, 15*time.Second, "ready once Redis is back", func() bool { code, _ := in.readyz(); return code == http.StatusOK })
			if !through(ipAllowed, in.db) {
				t.Error("rule not enforced once Redis is back")
			}
			t.Logf("with a %s snapshot: not ready and closed while Redis was down; ready %v after Redis came back", tc.name, d)
		})
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitSnapshotRules waits until the instance's snapshot file holds n rules
// for account. Snapshot writes are paced by how long the last one took, so
// a loaded machine can take longer than any fixed sleep.
func waitSnapshotRules(t *testing.T, in *instance, account string, n int) {
	t.Helper()
	path := filepath.Join(in.dir, "data", "policy.snapshot")
	waitFor(t, 30*time.Second, "the snapshot holds the rule", func() bool {
		d, _, err := policy.ReadSnapshotFile(path)
		if err != nil {
			return false
		}
		for _, a := range d.Accounts {
			if a.Account.ID == account {
				return len(a.Rules) == n
			}
		}
		return false
	})
}
