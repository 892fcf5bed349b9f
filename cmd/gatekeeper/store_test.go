package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// A Redis restarted without its data: the running engine keeps enforcing
// and says why; store reseed restores the policy from the snapshot and the
// engine takes it back; account reset-password makes the account usable.
func TestReseedAfterRedisLostItsData(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	snap := filepath.Join(dir, "policy.snapshot")
	cfg := filepath.Join(dir, "gk.yaml")
	os.WriteFile(cfg, []byte(`store: {url: "`+srv.URL()+`?max_retries=1&dial_timeout=200ms", snapshot: "`+snap+`"}
listeners:
  - {name: desktop, addr: "127.0.0.1:0", mode: tcp, routes: [{account: "10042", upstream: "127.0.0.1:1"}]}
`), 0o600)
	if _, _, err := runCLI(t, "correct horse battery staple\n", "account", "create", "-config", cfg, "-account", "10042"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := redisstore.Open(ctx, srv.URL()+"?max_retries=1&dial_timeout=200ms", redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	office := netip.MustParseAddr("203.0.113.7")
	err = st.Update(ctx, "10042", func(tx policy.Tx) error {
		_, err := tx.PutRule(policy.Rule{Prefix: netip.PrefixFrom(office, 32), Source: policy.SourceManual})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e, stop := runEngine(t, st, snap)
	defer stop()
	waitFor(t, 5*time.Second, "snapshot written", func() bool { _, err := os.Stat(snap); return err == nil })

	srv.Stop()
	srv.Restart() // no persistence: empty
	waitFor(t, 10*time.Second, "lost data not reported", func() bool {
		_, why := e.Ready()
		return strings.Contains(why, "generation")
	})
	if e.Check("10042", office).Verdict != policy.Allowed {
		t.Fatal("the gate closed because Redis lost its data")
	}
	// No account is created on the emptied store: it would take a
	// generation of its own, and the reseed below would be refused.
	if _, _, err := runCLI(t, "correct horse battery staple\n", "account", "create", "-config", cfg, "-account", "20001"); err == nil || !strings.Contains(err.Error(), "store reseed") {
		t.Fatalf("account create on the emptied store: %v", err)
	}

	out, _, err := runCLI(t, "", "store", "reseed", "-config", cfg)
	if err != nil || !strings.Contains(out, "restored 1 accounts with 1 rules") {
		t.Fatalf("store reseed: %q, %v", out, err)
	}
	waitFor(t, 10*time.Second, "engine did not take the re-seeded store back", func() bool {
		ok, why := e.Ready()
		return ok && why == "" && e.StoreUp()
	})
	if e.Check("10042", office).Verdict != policy.Allowed || e.Check("10042", netip.MustParseAddr("198.51.100.1")).Verdict != policy.Denied {
		t.Fatal("policy after reseed differs from before")
	}
	// Running it again changes nothing.
	if out, _, err := runCLI(t, "", "store", "reseed", "-config", cfg); err != nil || !strings.Contains(out, "restored 0 accounts") {
		t.Fatalf("second reseed: %q, %v", out, err)
	}

	out, _, err = runCLI(t, "a brand new master pw\n", "account", "reset-password", "-config", cfg, "-account", "10042")
	if err != nil || !strings.Contains(out, "new master password set for 10042") {
		t.Fatalf("reset-password: %q, %v", out, err)
	}
	a, err := st.Account(ctx, "10042")
	if err != nil || !password.Verify(a.MasterHash, "a brand new master pw") {
		t.Fatalf("master password not set after reset: %v", err)
	}
	if _, _, err := runCLI(t, "short\n", "account", "reset-password", "-config", cfg, "-account", "10042"); err == nil {
		t.Error("a too-short password was accepted")
	}
	if _, _, err := runCLI(t, "a brand new master pw\n", "account", "reset-password", "-config", cfg, "-account", "nope"); err == nil {
		t.Error("reset-password of an unknown account succeeded")
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
