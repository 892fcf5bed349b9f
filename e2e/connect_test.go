package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runConnect runs the real `gatekeeper connect` until the test ends and
// returns the address it listens on and its log.
func runConnect(t *testing.T, args ...string) (string, *syncBuffer) {
	t.Helper()
	addr := freeAddr(t)
	log := &syncBuffer{}
	cmd := exec.Command(gkBinary, append([]string{"connect", "-listen", addr}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Error("connect did not stop within 10s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("connect log:\n%s", log)
		}
	})
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr, log
		}
		select {
		case <-done:
			t.Fatalf("connect exited at start:\n%s", log)
		default:
		}
		if i > 500 {
			t.Fatalf("connect never listened on %s:\n%s", addr, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPsqlThroughConnect is issue 6's round trip with every part real:
// psql → gatekeeper connect (plain TCP in, TLS out, verifying the
// certificate) → gatekeeper's tls listener, routing by SNI → PostgreSQL.
// Through an account that does not allow 127.0.0.1, psql sees a closed
// connection and connect explains the likely cause.
func TestPsqlThroughConnect(t *testing.T) {
	pgPort := postgres(t)
	dir := t.TempDir()
	seed(t, dir, map[string][]string{"clinic": {"127.0.0.1/32"}, "shop": {ipAllowed + "/32"}}, nil)
	writeCert(t, dir, "gate", "clinic.db.test", "shop.db.test")
	gate := freeAddr(t)
	startGatekeeper(t, dir, storeConfig+fmt.Sprintf(`tls: {certificates: [{cert: gate.crt, key: gate.key}], curves: [X25519MLKEM768, X25519]}
listeners:
  - name: desktop
    addr: "%s"
    mode: tls
    routes:
      - {sni: clinic.db.test, account: clinic, upstream: "127.0.0.1:%s"}
      - {sni: shop.db.test, account: shop, upstream: "127.0.0.1:%s"}
`, gate, pgPort, pgPort))
	ca := filepath.Join(dir, "gate.crt")

	psqlVia := func(addr, sql string) (string, error) {
		host, port, _ := net.SplitHostPort(addr)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "psql", "-X", "-q", "-tA", "-w", "-h", host, "-p", port,
			"-U", "postgres", "-d", "postgres", "-c", sql)
		cmd.Env = append(os.Environ(), "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	clinic, _ := runConnect(t, "-server", gate, "-sni", "clinic.db.test", "-ca", ca)
	out, err := psqlVia(clinic, "select 'through the gate ' || 6*7")
	if err != nil || strings.TrimSpace(out) != "through the gate 42" {
		t.Fatalf("psql through connect: %v\n%s", err, out)
	}
	const big = "copy (select i, md5(i::text) from generate_series(1, 100000) i) to stdout"
	direct, err := psql(pgPort, big)
	if err != nil {
		t.Fatal(err)
	}
	via, err := psqlVia(clinic, big)
	if err != nil || sha256.Sum256([]byte(direct)) != sha256.Sum256([]byte(via)) {
		t.Fatalf("a %d-byte COPY through connect differs (%d bytes): %v", len(direct), len(via), err)
	}

	shop, log := runConnect(t, "-server", gate, "-sni", "shop.db.test", "-ca", ca, "-admin-url", "https://gate.db.test/")
	out, err = psqlVia(shop, "select 1")
	if err == nil {
		t.Fatalf("psql got through an account that does not allow 127.0.0.1: %s", out)
	}
	if !strings.Contains(out, "closed the connection unexpectedly") && !strings.Contains(out, "server closed") {
		t.Errorf("psql did not see a closed connection: %s", out)
	}
	for _, want := range []string{"probably not allowed", "https://gate.db.test/"} {
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(log.String(), want) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(log.String(), want) {
			t.Errorf("connect log lacks %q:\n%s", want, log)
		}
	}
}
