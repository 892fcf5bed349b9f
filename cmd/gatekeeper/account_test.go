package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/certs"
	"github.com/gatekeeper-dev/gatekeeper/config"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// writeAdminConfig writes a config whose store is in dir, with the admin
// API at adminAddr (none if empty).
func writeAdminConfig(t *testing.T, dir, adminAddr string) string {
	t.Helper()
	y := fmt.Sprintf(`store: {url: "file:%s/gk.db", snapshot: "%s/policy.snapshot"}
tls: {self_signed: true}
listeners:
  - {name: desktop, addr: "127.0.0.1:0", mode: tls, routes: [{account: "demo", upstream: "127.0.0.1:1"}]}
admin: {addr: %q, operator_token_file: "%s/operator.token"}
`, dir, dir, adminAddr, dir)
	if adminAddr == "" {
		y = strings.Replace(y, "admin: {addr: \"\", ", "admin: {", 1)
	}
	path := filepath.Join(dir, "gk.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAccountCreateWhileServing: when a running gatekeeper holds the
// embedded store, account create goes through its operator API, and says
// how to proceed when that server has no admin API.
func TestAccountCreateWhileServing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	// Nobody holds the store yet: the parent is made directly.
	cfg := writeAdminConfig(t, dir, "127.0.0.1:1")
	var out, errb bytes.Buffer
	err := run(ctx, []string{"account", "create", "-config", cfg, "-account", "10042", "-name", "Smith Studio"},
		strings.NewReader("a-chosen-password-1\n"), &out, &errb)
	if err != nil || !strings.Contains(out.String(), "created account 10042 (Smith Studio)") || strings.Contains(out.String(), "shown once") {
		t.Fatalf("direct: %v %q", err, out.String())
	}

	// A running gatekeeper holds it: the CLI uses its operator API.
	st, err := boltstore.Open(filepath.Join(dir, "gk.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg = writeAdminConfig(t, dir, ln.Addr().String())
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := certs.New(ctx, certs.Options{TLS: certsTLS(c.TLS), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()
	srv, err := newAdminServer(c, st, cm.TLSConfig(), nil, prometheus.NewRegistry(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	defer func() { stop(); <-done }()

	out.Reset()
	err = run(ctx, []string{"account", "create", "-config", cfg, "-account", "10043", "-parent", "10042"},
		strings.NewReader(""), &out, &errb)
	if err != nil || !strings.Contains(out.String(), "created account 10043") {
		t.Fatalf("through the API: %v %q", err, out.String())
	}
	_, pw, ok := strings.Cut(out.String(), "master password (shown once): ")
	pw = strings.TrimSpace(pw)
	if !ok || len(pw) != 20 {
		t.Fatalf("no generated password in %q", out.String())
	}
	a, err := st.Account(ctx, "10043")
	if err != nil || a.Parent != "10042" || !password.Verify(a.MasterHash, pw) {
		t.Fatalf("account made through the API: %+v %v", a, err)
	}
	err = run(ctx, []string{"account", "create", "-config", cfg, "-account", "10043"}, strings.NewReader(""), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("duplicate through the API: %v", err)
	}

	// The server has no admin API: say how to proceed.
	cfg = writeAdminConfig(t, dir, "")
	err = run(ctx, []string{"account", "create", "-config", cfg, "-account", "10044"}, strings.NewReader(""), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "in use by a running gatekeeper") || !strings.Contains(err.Error(), "stop gatekeeper") {
		t.Fatalf("no admin API: %v", err)
	}
}
