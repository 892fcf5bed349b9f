package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/internal/freeport"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// gkBinary is the gatekeeper built once by TestMain, in workDir, which
// holds the run's other binaries too and goes when the run ends.
var gkBinary, workDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatekeeper-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	gkBinary = filepath.Join(dir, "gatekeeper")
	args := []string{"build", "-o", gkBinary}
	if raceBuild {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "github.com/gatekeeper-dev/gatekeeper/cmd/gatekeeper")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build gatekeeper: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	browser.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Client addresses: Linux routes all of 127.0.0.0/8 to lo.
const (
	ipAllowed = "127.0.0.2"
	ipDenied  = "127.0.0.3"
	ipOther   = "127.0.0.4"
)

// needTool skips when a program is missing, unless under CI.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (required when CI is set)", name)
		}
		t.Skipf("%s not found: skipping", name)
	}
	return p
}

// freeAddr returns a loopback address for a listener of the gatekeeper
// under test: free now, never returned before in this run, and safe from
// other processes' ephemeral ports (package freeport says why).
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := freeport.Loopback(false)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// gatekeeper is one running `gatekeeper serve`.
type gatekeeper struct {
	t      *testing.T
	dir    string
	config string
	ops    string
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{}
	err    error // set when exited is closed
}

// seed writes accounts and rules into the embedded store of dir before
// gatekeeper starts: the running binary holds the file's lock.
func seed(t *testing.T, dir string, accounts map[string][]string, modes map[string]policy.Mode) {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(dir, "data", "gatekeeper.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	seedStore(t, st, accounts, modes)
}

// seedStore creates accounts with rules (CIDRs) in any policy.Store.
func seedStore(t *testing.T, st policy.Store, accounts map[string][]string, modes map[string]policy.Mode) map[string]policy.RuleID {
	t.Helper()
	ctx := context.Background()
	ids := map[string]policy.RuleID{}
	for acct, cidrs := range accounts {
		mode := modes[acct]
		if mode == "" {
			mode = policy.ModeOn
		}
		err := st.CreateAccount(ctx, policy.Account{ID: acct, Name: acct, Mode: mode, CreatedAt: time.Now()},
			policy.AuditEntry{Actor: "e2e", Role: policy.RoleOperator, Action: "account.create"})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cidrs {
			err := st.Update(ctx, acct, func(tx policy.Tx) error {
				r, err := tx.PutRule(policy.Rule{Account: acct, Prefix: netip.MustParsePrefix(c),
					Source: policy.SourceManual, CreatedBy: "e2e", CreatedAt: time.Now()})
				ids[acct+" "+c] = r.ID
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return ids
}

// startGatekeeper writes config (YAML; {{ops}} is replaced by the ops
// address) into dir and runs gatekeeper there until the test ends. It
// returns once /readyz answers 200.
func startGatekeeper(t *testing.T, dir, config string) *gatekeeper {
	t.Helper()
	g := &gatekeeper{t: t, dir: dir, ops: freeAddr(t), log: &syncBuffer{}, exited: make(chan struct{})}
	g.config = filepath.Join(dir, "gatekeeper.yaml")
	g.writeConfig(config)
	g.cmd = exec.Command(gkBinary, "serve", "-config", g.config)
	g.cmd.Dir = dir
	g.cmd.Stdout = g.log
	g.cmd.Stderr = g.log
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.err = g.cmd.Wait(); close(g.exited) }()
	t.Cleanup(func() {
		g.stop(40 * time.Second)
		if t.Failed() {
			t.Logf("gatekeeper log (%s):\n%s", dir, g.log.String())
		}
	})
	g.waitReady()
	return g
}

func (g *gatekeeper) writeConfig(config string) {
	g.t.Helper()
	config = strings.ReplaceAll(config, "{{ops}}", g.ops)
	if err := os.WriteFile(g.config, []byte(config), 0o600); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gatekeeper) waitReady() {
	g.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-g.exited:
			g.t.Fatalf("gatekeeper exited at start: %v\n%s", g.err, g.log.String())
		default:
		}
		resp, err := http.Get("http://" + g.ops + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.t.Fatalf("gatekeeper not ready within 30s\n%s", g.log.String())
}

// stop sends SIGTERM and waits for the process to exit; it kills it after
// timeout.
func (g *gatekeeper) stop(timeout time.Duration) error {
	select {
	case <-g.exited:
		return g.err
	default:
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
		return g.err
	case <-time.After(timeout):
		g.cmd.Process.Kill()
		<-g.exited
		g.t.Errorf("gatekeeper did not stop within %v of SIGTERM", timeout)
		return g.err
	}
}

// structuredLog fails the test for any line of the log that is not a
// JSON object: everything gatekeeper and its libraries say must reach the
// operator's log pipeline as structured entries.
func (g *gatekeeper) structuredLog() {
	g.t.Helper()
	for _, line := range strings.Split(g.log.String(), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if line[0] != '{' || !json.Valid([]byte(line)) {
			g.t.Errorf("a log line that is not a JSON object: %q", line)
		}
	}
}

// waitLog waits until the log has a line containing s, after the first
// `after` lines that did.
func (g *gatekeeper) waitLog(s string, after int) {
	g.t.Helper()
	for i := 0; i < 1000; i++ {
		if strings.Count(g.log.String(), s) > after {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.t.Fatalf("no log line with %q within 10s", s)
}

// metric scrapes /metrics and returns the value of the first series of
// name whose labels include the given pairs (0 if none).
func (g *gatekeeper) metric(name string, labels ...string) float64 {
	g.t.Helper()
	resp, err := http.Get("http://" + g.ops + "/metrics")
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	mf := mfs[name]
	if mf == nil {
		return 0
	}
	for _, m := range mf.GetMetric() {
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

func (g *gatekeeper) waitMetric(want float64, name string, labels ...string) {
	g.t.Helper()
	for i := 0; i < 500; i++ {
		if g.metric(name, labels...) == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.t.Fatalf("%s%v = %v, want %v", name, labels, g.metric(name, labels...), want)
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// dialFrom connects from a loopback address of the test's choosing.
func dialFrom(from, to string) (*net.TCPConn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", to)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// echoServer echoes every connection and half-closes after the client.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// roundTrip writes msg and expects it back.
func roundTrip(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	b := make([]byte, len(msg))
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if string(b) != msg {
		return fmt.Errorf("got %q back, want %q", b, msg)
	}
	return nil
}

// writeCert writes a self-signed ECDSA P-256 certificate for names to
// dir/base.crt and dir/base.key and returns the certificate.
func writeCert(t *testing.T, dir, base string, names ...string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Write to temporary names and rename: a reload never sees half a file.
	for _, f := range []struct {
		name string
		b    []byte
	}{
		{base + ".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{base + ".key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})},
	} {
		tmp := filepath.Join(dir, f.name+".tmp")
		if err := os.WriteFile(tmp, f.b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			t.Fatal(err)
		}
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}
