package e2e

// Store faults under the real binary: Redis hung, killed, restarted empty;
// gatekeeper started while Redis is down, with a good, a corrupt or a
// truncated snapshot. docs/reliability.md lists what each measures.

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestRedisPaused freezes Redis (SIGSTOP) under a running instance: the
// gate keeps enforcing what it had, an admin write answers 503 within a
// bounded time and changes nothing, and once Redis is back the write
// retried applies exactly once.
func TestRedisPaused(t *testing.T) {
	rs := redistest.Start(t)
	in := startInstance(t, rs.URL(), echoServer(t))
	master := createAccount(t, in.admin, "acct", masterPassword)
	if code, _, _ := master.addRule("acct", ipAllowed); code != http.StatusCreated {
		t.Fatalf("add rule: %d", code)
	}
	waitFor(t, 5*time.Second, "rule enforced", func() bool { return through(ipAllowed, in.db) })
	c := startChecker(t, []string{in.db}, []string{ipAllowed, ipDenied}, 2, 10*time.Millisecond)

	storeDown := when(20*time.Second, func() bool { return in.metricValue("gatekeeper_store_up") == 0 })
	rs.Pause()
	paused := time.Now()
	code, body, took := master.call("POST", "/api/v1/accounts/acct/firewall/rules", map[string]any{"cidr": ipOther})
	t.Logf("admin write with Redis paused: %d %s after %v", code, strings.TrimSpace(string(body)), took)
	if code != http.StatusServiceUnavailable {
		t.Errorf("admin write with Redis paused: %d, want 503", code)
	}
	// The API bounds a call at 15s (admin.RequestTimeout); allow for a
	// loaded machine.
	if took > 20*time.Second {
		t.Errorf("admin write with Redis paused took %v, want at most about 15s", took)
	}
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
	c.halt()
	enforcing(t, c, []string{ipAllowed}, []string{ipDenied})
	t.Logf("%d probes during the pause", len(c.results()))

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
			return code == http.StatusOK && !strings.Contains(body, "detail")
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
	time.Sleep(2500 * time.Millisecond) // the snapshot of the rule, not of the empty account
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
			return in.metric("gatekeeper_store_generation_mismatch") == 0 && code == http.StatusOK && !strings.Contains(body, "detail")
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
	time.Sleep(2500 * time.Millisecond) // the snapshot holds the rule
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
		return in.metric("gatekeeper_store_up") == 1 && code == http.StatusOK && !strings.Contains(body, "detail")
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
