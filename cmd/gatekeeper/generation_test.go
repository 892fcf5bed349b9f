package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/certs"
	"github.com/gatekeeper-dev/gatekeeper/config"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// lostStore is a store that held generation gen, as this machine's
// snapshot says, and has lost its data.
type lostStore struct {
	cfg, dir string
	url      string
	gen      string
}

// TestNoGenerationMinted goes through every command and API path that
// could give a store a generation, on each backend, with a store that
// lost its data: each refuses and leaves the store without a generation,
// except store reseed, the one told to, which gives it back the old one.
// The rule lives in policy.Lineage; these are the entry points that
// inherit it.
func TestNoGenerationMinted(t *testing.T) {
	backends := []struct {
		name string
		lose func(t *testing.T) (url string, lose func(dir string))
	}{
		{"embedded file replaced", func(t *testing.T) (string, func(string)) {
			return "file:gk.db", func(dir string) {
				if err := os.Remove(filepath.Join(dir, "gk.db")); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"redis flushed", func(t *testing.T) (string, func(string)) {
			srv := redistest.Start(t)
			return srv.URL() + "?max_retries=1&dial_timeout=200ms", func(string) { srv.Flush() }
		}},
	}
	paths := []struct {
		name string
		// try runs the path; it returns what the operator was told.
		try func(t *testing.T, ls lostStore) error
		// told is true for the one path allowed to set a generation.
		told bool
	}{
		{name: "account create", try: func(t *testing.T, ls lostStore) error {
			_, _, err := runCLI(t, "a-chosen-password-1\n", "account", "create", "-config", ls.cfg, "-account", "20001")
			return err
		}},
		{name: "account create while serve holds the store", try: func(t *testing.T, ls lostStore) error {
			// The embedded store is locked: the CLI goes through the
			// running server's operator API.
			defer startAdminServer(t, ls.cfg)()
			_, _, err := runCLI(t, "a-chosen-password-1\n", "account", "create", "-config", ls.cfg, "-account", "20001")
			return err
		}},
		{name: "POST /api/v1/accounts", try: func(t *testing.T, ls lostStore) error {
			defer startAdminServer(t, ls.cfg)()
			return postAccount(t, ls)
		}},
		{name: "serve with a bootstrap account", try: func(t *testing.T, ls lostStore) error {
			logs := &lockedBuffer{}
			c, err := config.Load(ls.cfg)
			if err != nil {
				t.Fatal(err)
			}
			c.Admin.Addr = "" // the bootstrap is the path here
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(logs), zapcore.InfoLevel))
			go func() { done <- serve(ctx, c, ls.cfg, log) }()
			// The listeners start after the bootstrap.
			waitFor(t, 10*time.Second, "serve did not start its listeners", func() bool {
				return strings.Contains(logs.String(), `"msg":"listening"`)
			})
			cancel()
			<-done
			if _, err := os.Stat(filepath.Join(ls.dir, "demo.password")); err == nil {
				t.Error("serve wrote a bootstrap password file")
			}
			if strings.Contains(logs.String(), "not creating the bootstrap account") {
				return errors.New("not creating the bootstrap account: re-seed")
			}
			t.Logf("serve's log:\n%s", logs.String())
			return nil
		}},
		{name: "account reset-password", try: func(t *testing.T, ls lostStore) error {
			_, _, err := runCLI(t, "a brand new master pw\n", "account", "reset-password", "-config", ls.cfg, "-account", "10042")
			return err
		}},
		{name: "store reseed", told: true, try: func(t *testing.T, ls lostStore) error {
			_, _, err := runCLI(t, "", "store", "reseed", "-config", ls.cfg)
			return err
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, p := range paths {
				t.Run(p.name, func(t *testing.T) {
					url, lose := b.lose(t)
					ls := newLostStore(t, url, lose)
					err := p.try(t, ls)
					gen := generationOf(t, ls)
					t.Logf("%s: %v; generation now %q", p.name, err, gen)
					if p.told {
						if err != nil || gen != ls.gen {
							t.Fatalf("%s: %v, generation %q; want the snapshot's %q back", p.name, err, gen, ls.gen)
						}
						return
					}
					if err == nil || !strings.Contains(err.Error(), "re-seed") {
						t.Errorf("%s on a store that lost its data: %v; want a refusal that says to re-seed it", p.name, err)
					}
					if gen != "" {
						t.Errorf("%s gave the store that lost its data a new generation %q", p.name, gen)
					}
				})
			}
		})
	}
}

// newLostStore sets up a store at url the way an operator would (an
// account created on a first start, a snapshot written by the engine),
// then loses its data.
func newLostStore(t *testing.T, url string, lose func(dir string)) lostStore {
	t.Helper()
	dir := t.TempDir()
	if strings.HasPrefix(url, "file:") {
		url = "file:" + filepath.Join(dir, strings.TrimPrefix(url, "file:"))
	}
	ls := lostStore{dir: dir, url: url, cfg: filepath.Join(dir, "gk.yaml")}
	y := fmt.Sprintf(`store: {url: %q, snapshot: %q}
tls: {self_signed: true}
listeners:
  - {name: desktop, addr: "127.0.0.1:0", mode: tcp, routes: [{account: "10042", upstream: "127.0.0.1:1"}]}
admin: {addr: %q, operator_token_file: %q}
bootstrap: {account: demo, password_file: %q}
`, url, filepath.Join(dir, "policy.snapshot"), freeAddr(t), filepath.Join(dir, "operator.token"), filepath.Join(dir, "demo.password"))
	if err := os.WriteFile(ls.cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "a-chosen-password-1\n", "account", "create", "-config", ls.cfg, "-account", "10042"); err != nil {
		t.Fatalf("first account on a new store: %v", err)
	}
	ls.gen = writeSnapshot(t, ls.cfg)
	lose(dir)
	if gen := generationOf(t, ls); gen != "" {
		t.Fatalf("the store kept generation %q", gen)
	}
	return ls
}

// writeSnapshot runs a policy engine on the configured store until it has
// written the snapshot file, and returns the generation in it.
func writeSnapshot(t *testing.T, cfg string) string {
	t.Helper()
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := openStore(ctx, c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, stop := runEngine(t, st, c.Store.Snapshot)
	defer stop()
	var d *policy.Data
	waitFor(t, 10*time.Second, "snapshot written", func() bool {
		d, _, err = policy.ReadSnapshotFile(c.Store.Snapshot)
		return err == nil && d.Generation != ""
	})
	return d.Generation
}

// runEngine runs a policy engine on st, writing its snapshot to snap
// promptly, until stop is called.
func runEngine(t *testing.T, st policy.Source, snap string) (e *policy.Engine, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e, err := policy.NewEngine(policy.Options{Source: st, SnapshotPath: snap, SnapshotInterval: 10 * time.Millisecond,
		RetryMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	return e, func() { cancel(); <-done }
}

// generationOf reads the store's generation as a machine that knows none.
func generationOf(t *testing.T, ls lostStore) string {
	t.Helper()
	st, err := store.Open(context.Background(), ls.url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d, err := st.LoadPolicy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d.Generation
}

// startAdminServer serves the configured admin API over the configured
// store, as serve does, until the returned function is called.
func startAdminServer(t *testing.T, cfg string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := openStore(ctx, c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := certs.New(ctx, certs.Options{TLS: certsTLS(c.TLS), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := newAdminServer(c, st, cm.TLSConfig(), nil, prometheus.NewRegistry(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", c.Admin.Addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	return func() { cancel(); <-done; cm.Close(); st.Close() }
}

// postAccount creates an account through the operator API and returns
// the API's error, if any.
func postAccount(t *testing.T, ls lostStore) error {
	t.Helper()
	c, err := config.Load(ls.cfg)
	if err != nil {
		t.Fatal(err)
	}
	token, err := admin.ReadOperatorToken(c.Admin.OperatorTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "https://"+c.Admin.Addr+"/api/v1/accounts",
		strings.NewReader(`{"id":"20001","password":"a-chosen-password-1"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // the throwaway self-signed certificate
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode == http.StatusCreated {
		return nil
	}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	json.Unmarshal(b, &e)
	if res.StatusCode != http.StatusServiceUnavailable || e.Error.Code != admin.CodeStoreLostData {
		t.Errorf("POST /api/v1/accounts: %d %s, want 503 %s", res.StatusCode, b, admin.CodeStoreLostData)
	}
	return fmt.Errorf("%d %s: %s", res.StatusCode, e.Error.Code, e.Error.Message)
}
