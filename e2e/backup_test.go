package e2e

// Backups and restores with the real binary: a fleet on a Redis without
// persistence loses it and gets everything back from a scheduled backup;
// the embedded store is backed up while serve holds it, during a burst of
// writes; damaged backups are refused.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// policyProblem is the policy check's detail in a /readyz answer: what is
// wrong with the enforced policy, "" when nothing is. Other checks (the
// store's durability) add details that are not problems.
func policyProblem(body string) string {
	var r struct {
		Checks map[string]struct{ Detail string }
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return "unparseable /readyz: " + body
	}
	return r.Checks["policy"].Detail
}

// userLogin logs a user in from an address and returns the session.
func userLogin(t *testing.T, adminAddr, from, account, username, password string) (*adminClient, bool) {
	t.Helper()
	code, b, _ := newAdminFrom(from, adminAddr, "").call("POST", "/api/v1/login",
		map[string]any{"account": account, "username": username, "password": password})
	if code != http.StatusOK {
		t.Fatalf("login of %s: %d %s", username, code, b)
	}
	var res struct {
		Token             string `json:"token"`
		MustResetPassword bool   `json:"must_reset_password"`
	}
	json.Unmarshal(b, &res)
	return newAdminFrom(from, adminAddr, res.Token), res.MustResetPassword
}

type auditLine struct {
	ID     string `json:"id"`
	Action string `json:"action"`
	Actor  string `json:"actor"`
	Target string `json:"target"`
}

func auditTrail(t *testing.T, master *adminClient, acct string) []auditLine {
	t.Helper()
	code, b, _ := master.call("GET", "/api/v1/accounts/"+acct+"/audit?limit=1000", nil)
	if code != http.StatusOK {
		t.Fatalf("audit: %d %s", code, b)
	}
	var out struct{ Entries []auditLine }
	if err := json.Unmarshal(b, &out); err != nil || len(out.Entries) == 0 {
		// Some versions answer a bare list.
		var list []auditLine
		if err := json.Unmarshal(b, &list); err != nil {
			t.Fatalf("audit answer %s: %v", b, err)
		}
		return list
	}
	return out.Entries
}

// newestBackup is the newest scheduled backup in dir.
func newestBackup(t *testing.T, dir string) string {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "gatekeeper-*.gkbackup"))
	if len(names) == 0 {
		t.Fatal("no scheduled backup")
	}
	slices.Sort(names)
	return names[len(names)-1]
}

// TestRestoreAfterRedisLostEverything is issue 20's story: two instances on
// a Redis without persistence take scheduled backups (one at a time);
// Redis restarts empty; `gatekeeper store restore` brings everything back:
// the master logs in with the old password, the employee with theirs, the
// audit trail is whole up to the backup, both instances clear their alarm,
// and no probe of either instance gets a wrong verdict throughout.
func TestRestoreAfterRedisLostEverything(t *testing.T) {
	const (
		grantIP  = "127.0.0.5"
		userPW0  = "first-day-password-1"
		userPW   = "my-own-password-2026"
		userName = "jsmith"
		goneIP   = "127.0.0.6" // allowed at the backup, deleted after it
	)
	rs := redistest.Start(t)
	up := echoServer(t)
	backups := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "backup.key")
	if out, err := runBinary(t.TempDir(), "", "store", "backup", "-new-key", keyFile); err != nil {
		t.Fatalf("new key: %v %s", err, out)
	}
	start := func() *instance {
		in := &instance{db: freeAddr(t), admin: freeAddr(t)}
		cfg := fleetConfig(rs.URL(), in.db, in.admin, up, "")
		cfg = strings.Replace(cfg, "snapshot: ./data/policy.snapshot}",
			fmt.Sprintf("snapshot: ./data/policy.snapshot, backup: {every: 2s, dir: %q, keep: 3, key_file: %q}}", backups, keyFile), 1)
		in.gatekeeper = startGatekeeper(t, prepareDir(t), cfg)
		return in
	}
	a, b := start(), start()
	waitFor(t, 10*time.Second, "durability read", func() bool { return a.metricValue("gatekeeper_store_durability_known") == 1 })
	if d := a.metric("gatekeeper_store_durable"); d != 0 {
		t.Errorf("gatekeeper_store_durable on a Redis without persistence: %v, want 0", d)
	}
	if _, body := a.readyz(); !strings.Contains(body, "no persistence") {
		t.Errorf("/readyz does not say Redis persists nothing: %s", body)
	}
	if !strings.Contains(a.log.String(), "the Redis store is not durable") {
		t.Error("no warning in the log about a Redis without persistence")
	}

	master := createAccount(t, a.admin, "acct", masterPassword)
	if code, _, _ := master.addRule("acct", ipAllowed); code != http.StatusCreated {
		t.Fatalf("add rule: %d", code)
	}
	code, gone, _ := master.addRule("acct", goneIP)
	if code != http.StatusCreated {
		t.Fatalf("add rule: %d", code)
	}
	if code, b, _ := master.call("POST", "/api/v1/accounts/acct/users", map[string]any{"username": userName, "password": userPW0}); code != http.StatusCreated {
		t.Fatalf("create user: %d %s", code, b)
	}
	if code, b, _ := master.call("PATCH", "/api/v1/accounts/acct/users/"+userName, map[string]any{"desktop_access": true}); code != http.StatusOK {
		t.Fatalf("desktop access: %d %s", code, b)
	}
	user, mustReset := userLogin(t, b.admin, grantIP, "acct", userName, userPW0)
	if !mustReset {
		t.Fatal("a new user need not reset the password")
	}
	if code, body, _ := user.call("POST", "/api/v1/password", map[string]any{"current": userPW0, "new": userPW}); code != http.StatusOK {
		t.Fatalf("user sets a password: %d %s", code, body)
	}
	user, _ = userLogin(t, b.admin, grantIP, "acct", userName, userPW)
	if code, body, _ := user.call("POST", "/api/v1/accounts/acct/unblock", map[string]any{}); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("user unblocks their address: %d %s", code, body)
	}
	for _, in := range []*instance{a, b} {
		waitFor(t, 5*time.Second, "rule and grant enforced", func() bool { return through(ipAllowed, in.db) && through(grantIP, in.db) })
	}
	before := auditTrail(t, master, "acct")
	wrote := time.Now()

	// A scheduled backup after the last write: the fleet's last success
	// moves past it.
	waitFor(t, 30*time.Second, "a scheduled backup after the writes", func() bool {
		return a.metric("gatekeeper_backup_last_success_timestamp_seconds") > float64(wrote.Unix()+1)
	})
	file := newestBackup(t, backups)
	// After the backup, the master deletes a rule: a restore must not let
	// that address in again, not even for a moment.
	if code, _ := master.deleteRule("acct", gone.ID); code != http.StatusNoContent {
		t.Fatalf("delete rule: %d", code)
	}
	for _, in := range []*instance{a, b} {
		waitFor(t, 5*time.Second, "deletion enforced", func() bool { return !through(goneIP, in.db) })
	}
	// The snapshot the restore compares with is written within 2s of a change.
	time.Sleep(2500 * time.Millisecond)
	taken := strings.Count(a.log.String(), "scheduled backup taken") + strings.Count(b.log.String(), "scheduled backup taken")
	names, _ := filepath.Glob(filepath.Join(backups, "gatekeeper-*.gkbackup"))
	t.Logf("%d scheduled backups taken by the two instances, %d kept; restoring %s", taken, len(names), filepath.Base(file))
	if len(names) > 3 {
		t.Errorf("%d backups kept, want at most 3 (keep: 3)", len(names))
	}

	c := startChecker(t, []string{a.db, b.db}, []string{ipAllowed, grantIP, ipDenied, goneIP}, 2, 10*time.Millisecond)
	rs.Restart() // no persistence: everything is gone
	lost := time.Now()
	for i, in := range []*instance{a, b} {
		waitFor(t, 20*time.Second, "alarm raised", func() bool { return in.metricValue("gatekeeper_store_generation_mismatch") == 1 })
		t.Logf("instance %d raised the alarm %v after the loss", i, time.Since(lost))
	}
	if code, _, _ := newAdmin(a.admin, "").call("POST", "/api/v1/login", map[string]any{"account": "acct", "password": masterPassword}); code != http.StatusUnauthorized {
		t.Fatalf("login on the emptied store: %d, want 401", code)
	}

	// A damaged copy is refused whole, and leaves the store as it was.
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "cut.gkbackup")
	os.WriteFile(bad, data[:len(data)-10], 0o600)
	out, err := runBinary(a.dir, "", "store", "restore", "-config", a.config, "-in", bad, "-key", keyFile)
	if err == nil || !strings.Contains(out, "nothing was restored") {
		t.Fatalf("a truncated backup: %v %s", err, out)
	}
	t.Logf("truncated backup: %s", strings.TrimSpace(out))
	if out, err := runBinary(a.dir, "", "store", "restore", "-config", a.config, "-in", file); err == nil || !strings.Contains(out, "encrypted") {
		t.Fatalf("an encrypted backup without its key: %v %s", err, out)
	}

	out, err = runBinary(a.dir, "", "store", "restore", "-config", a.config, "-in", file, "-key", keyFile)
	t.Logf("gatekeeper store restore:\n%s", strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("store restore: %v", err)
	}
	if !strings.Contains(out, goneIP+"/32 deleted after the backup") || !strings.Contains(out, "brought the policy forward") {
		t.Errorf("the restore does not report and undo the rule deleted after the backup:\n%s", out)
	}
	restored := time.Now()
	for i, in := range []*instance{a, b} {
		d := waitFor(t, 15*time.Second, "alarm cleared", func() bool {
			code, body := in.readyz()
			return in.metric("gatekeeper_store_generation_mismatch") == 0 && code == http.StatusOK && policyProblem(body) == ""
		})
		t.Logf("instance %d took the restored store back %v after the restore", i, d)
	}
	// A restore over the store that now holds data is refused.
	if out, err := runBinary(a.dir, "", "store", "restore", "-config", a.config, "-in", file, "-key", keyFile); err == nil || !strings.Contains(out, "holds data") {
		t.Fatalf("a restore over a populated store: %v %s", err, out)
	}

	c.halt()
	enforcing(t, c, []string{ipAllowed, grantIP}, []string{ipDenied, goneIP})
	t.Logf("%d probes of both instances from before the loss to %v after the restore: none wrong", len(c.results()), time.Since(restored))

	// Everyone logs in as before; the trail is whole up to the backup.
	m2 := login(t, b.admin, "acct", masterPassword)
	after := auditTrail(t, m2, "acct")
	byID := map[string]auditLine{}
	for _, e := range after {
		byID[e.ID] = e
	}
	for _, e := range before {
		if byID[e.ID] != e {
			t.Errorf("audit entry %+v is not back after the restore", e)
		}
	}
	t.Logf("audit trail: %d entries before the loss, all back (%d now)", len(before), len(after))
	u2, mustReset := userLogin(t, a.admin, grantIP, "acct", userName, userPW)
	if mustReset {
		t.Error("the restored user must reset their password again")
	}
	if code, body, _ := u2.call("GET", "/api/v1/me", nil); code != http.StatusOK {
		t.Errorf("the restored user's session: %d %s", code, body)
	}
	if code, _, _ := m2.addRule("acct", ipOther); code != http.StatusCreated {
		t.Fatalf("write after the restore: %d", code)
	}
	for _, in := range []*instance{a, b} {
		waitFor(t, 2*time.Second, "write after the restore enforced", func() bool { return through(ipOther, in.db) })
	}
}

// TestDurableMetric: gatekeeper_store_durable is 1 against a Redis with an
// append-only file, with its settings in /readyz (never a failure).
func TestDurableMetric(t *testing.T) {
	rs := redistest.Start(t, redistest.AppendOnly())
	in := startInstance(t, rs.URL(), echoServer(t))
	waitFor(t, 10*time.Second, "durability read", func() bool { return in.metricValue("gatekeeper_store_durability_known") == 1 })
	if d := in.metric("gatekeeper_store_durable"); d != 1 {
		t.Errorf("gatekeeper_store_durable with appendonly yes: %v, want 1", d)
	}
	code, body := in.readyz()
	if code != http.StatusOK || !strings.Contains(body, "appendonly yes") {
		t.Errorf("/readyz: %d %s", code, body)
	}
	t.Logf("/readyz: %s", strings.TrimSpace(body))
}

// TestEmbeddedBackupWhileServing backs up the embedded store through the
// running serve during a burst of writes: the backup holds every rule
// acknowledged before it began, and restores into an empty file that
// another serve then runs on.
func TestEmbeddedBackupWhileServing(t *testing.T) {
	dir := prepareDir(t)
	up := echoServer(t)
	gate, adminAddr := freeAddr(t), freeAddr(t)
	cfg := func(db string) string { return fleetConfig("file:"+db, gate, adminAddr, up, "") }
	g := startGatekeeper(t, dir, cfg("./data/gatekeeper.db"))
	master := createAccount(t, adminAddr, "acct", masterPassword)

	var mu sync.Mutex
	var acked []uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				code, r, _ := master.addRule("acct", fmt.Sprintf("10.%d.%d.%d/32", w, i/250, i%250))
				if code != http.StatusCreated {
					t.Errorf("write: %d", code)
					return
				}
				mu.Lock()
				acked = append(acked, r.ID)
				mu.Unlock()
			}
		})
	}
	waitFor(t, 30*time.Second, "a burst under way", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 50 })
	mu.Lock()
	ackedBefore := slices.Clone(acked)
	mu.Unlock()
	file := filepath.Join(t.TempDir(), "gk.gkbackup")
	out, err := runBinary(dir, "", "store", "backup", "-config", g.config, "-out", file)
	mu.Lock()
	during := len(acked) - len(ackedBefore)
	mu.Unlock()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("store backup while serve holds the file: %v %s", err, out)
	}
	t.Logf("store backup: %s (%d writes acknowledged before it began, %d more while it ran)", strings.TrimSpace(out), len(ackedBefore), during)
	if !strings.Contains(g.log.String(), "backup taken through the socket") {
		t.Error("the backup did not go through the running serve")
	}

	// Restore into an empty file; serve runs on it.
	g.stop(40 * time.Second)
	g.writeConfig(cfg("./data/restored.db"))
	// The snapshot, written after the backup, has the burst's later rules:
	// keep the backup's policy to see exactly what the backup holds.
	out, err = runBinary(dir, "", "store", "restore", "-config", g.config, "-in", file, "-keep-backup-policy")
	if err != nil {
		t.Fatalf("store restore: %v %s", err, out)
	}
	g.spawn()
	g.waitReady()
	m2 := login(t, adminAddr, "acct", masterPassword)
	code, rules := m2.rules("acct")
	if code != http.StatusOK {
		t.Fatalf("rules after the restore: %d", code)
	}
	have := map[uint64]bool{}
	for _, r := range rules {
		have[r.ID] = true
	}
	for _, id := range ackedBefore {
		if !have[id] {
			t.Errorf("rule %d, acknowledged before the backup began, is not in it", id)
		}
	}
	t.Logf("restored file holds %d rules; all %d acknowledged before the backup are there", len(rules), len(ackedBefore))
	// A restore over the populated file is refused.
	g.stop(40 * time.Second)
	again, err := runBinary(dir, "", "store", "backup", "-config", g.config, "-out", filepath.Join(t.TempDir(), "again.gkbackup"))
	if err != nil {
		t.Fatalf("backup of the restored file: %v %s", err, again)
	}
	if n := fmt.Sprintf("rules %d,", len(rules)); !strings.Contains(out, n) || !strings.Contains(again, n) {
		t.Errorf("%d rules through the API; the restore said %q, a backup of the restored file %q", len(rules), out, again)
	}
	if out, err := runBinary(dir, "", "store", "restore", "-config", g.config, "-in", file); err == nil || !strings.Contains(out, "holds data") {
		t.Fatalf("a restore over a populated file: %v %s", err, out)
	}
}
