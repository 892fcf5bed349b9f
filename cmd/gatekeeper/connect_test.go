package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/connector"
)

// writeCertPair writes a self-signed certificate for names and its key as
// PEM files in dir, and returns their paths and the parsed certificate.
func writeCertPair(t testing.TB, dir, base string, notAfter time.Time, names ...string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
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
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	return certFile, keyFile, cert
}

// standInGate plays a gatekeeper tls listener on 127.0.0.1 until the test
// ends: a client whose address allow rejects is closed before any
// certificate is sent, as gatekeeper does; an allowed one completes TLS and
// is joined to upstream.
//
// It stands in for proxy/ until the data plane lands on main; the e2e
// package then runs the same round trip through the real listener.
type standInGate struct {
	addr    string
	ln      net.Listener
	allowed atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
}

func startStandInGate(t testing.TB, certFile, keyFile, upstream string) *standInGate {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &standInGate{addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	g.allowed.Store(true)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.track(c, true)
			g.wg.Add(1)
			go g.serveStandIn(c, cfg, upstream)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		g.mu.Lock()
		for c := range g.conns {
			c.Close()
		}
		g.mu.Unlock()
		g.wg.Wait()
	})
	return g
}

func (g *standInGate) track(c net.Conn, on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if on {
		g.conns[c] = struct{}{}
	} else {
		delete(g.conns, c)
	}
}

func (g *standInGate) serveStandIn(c net.Conn, cfg *tls.Config, upstream string) {
	defer g.wg.Done()
	defer g.track(c, false)
	defer c.Close()
	peer := netip.MustParseAddrPort(c.RemoteAddr().String()).Addr()
	if !peer.IsLoopback() || !g.allowed.Load() {
		return // denied: closed before any certificate
	}
	tc := tls.Server(c, cfg)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return
	}
	tc.SetDeadline(time.Time{})
	up, err := net.DialTimeout("tcp", upstream, 5*time.Second)
	if err != nil {
		return
	}
	g.track(up, true)
	defer g.track(up, false)
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, tc); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(tc, up); tc.CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}

// runConnect runs "gatekeeper connect" with args until the test ends, and
// returns its listen address and its log.
func runConnect(t *testing.T, args ...string) (addr string, log *syncBuffer) {
	t.Helper()
	return runCommand(t, []string{"connect"}, args...)
}

// runCommand runs gatekeeper with cmd, -listen on a free port, and args
// until the test ends, and returns its listen address and its log.
func runCommand(t *testing.T, cmd []string, args ...string) (addr string, log *syncBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	log = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append(append(cmd[:len(cmd):len(cmd)], "-listen", addr), args...), nil, io.Discard, log)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", strings.Join(cmd, " "), err)
			}
		case <-time.After(10 * time.Second):
			t.Error("connect did not stop within 10s of its context ending")
		}
	})
	// Bounded wait for the listener.
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("connect never listened on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr, log
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
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

func TestConnectCheck(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, cert := writeCertPair(t, dir, "gate", time.Now().Add(24*time.Hour), "db.gatekeeper.test")
	otherCert, _, _ := writeCertPair(t, dir, "other", time.Now().Add(24*time.Hour), "db.gatekeeper.test")
	echoUp := startEcho(t)
	g := startStandInGate(t, certFile, keyFile, echoUp)
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	base := []string{"connect", "-check", "-sni", "db.gatekeeper.test", "-timeout", "2s"}

	cases := []struct {
		name    string
		args    []string
		deny    bool
		out     []string // expected on stdout
		err     []string // expected in the error
		usage   bool
		helpErr bool
	}{
		{name: "let through", args: []string{"-server", g.addr, "-ca", certFile},
			out: []string{"ok: gatekeeper at " + g.addr, "TLS 1.3", pinString(cert)}},
		{name: "refused", deny: true, args: []string{"-server", g.addr, "-ca", certFile, "-admin-url", "https://admin.test/"},
			err: []string{"probably not allowed", "https://admin.test/"}},
		{name: "down", args: []string{"-server", closed, "-ca", certFile}, err: []string{"gatekeeper is down"}},
		{name: "wrong ca", args: []string{"-server", g.addr, "-ca", otherCert}, err: []string{"not trusted"}},
		{name: "pin mismatch", args: []string{"-server", g.addr, "-ca", certFile, "-pin", "sha256//" + strings.Repeat("A", 43) + "="},
			err: []string{"does not match -pin", pinString(cert)}},
		{name: "pin match", args: []string{"-server", g.addr, "-ca", certFile, "-pin", pinString(cert)}, out: []string{"ok:"}},
		{name: "no server", args: nil, usage: true, err: []string{"-server is required"}},
		{name: "bad pin", args: []string{"-server", g.addr, "-pin", "sha256//nope"}, usage: true, err: []string{"-pin"}},
		{name: "ca file missing", args: []string{"-server", g.addr, "-ca", filepath.Join(dir, "nope.pem")}, err: []string{"-ca", "no such file"}},
		{name: "ca file not a certificate", args: []string{"-server", g.addr, "-ca", keyFile}, err: []string{"-ca", "no PEM certificate"}},
		{name: "help", args: []string{"-h"}, helpErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g.allowed.Store(!tc.deny)
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append(base, tc.args...), nil, &stdout, &stderr)
			if tc.helpErr {
				if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "-pin sha256//BASE64") {
					t.Fatalf("-h: %v\n%s", err, stderr.String())
				}
				return
			}
			var ue usageError
			if tc.usage != errors.As(err, &ue) {
				t.Errorf("usage error = %v, want %v (%v)", !tc.usage, tc.usage, err)
			}
			if len(tc.err) == 0 && err != nil {
				t.Fatalf("connect -check: %v", err)
			}
			if len(tc.err) > 0 && err == nil {
				t.Fatalf("connect -check succeeded; want an error with %q\n%s", tc.err, stdout.String())
			}
			for _, w := range tc.err {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			for _, w := range tc.out {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
		})
	}
}

// Bytes pass both ways through a running connect, which stops with its
// context.
func TestConnectServes(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeCertPair(t, dir, "gate", time.Now().Add(24*time.Hour), "127.0.0.1")
	g := startStandInGate(t, certFile, keyFile, startEcho(t))
	addr, log := runConnect(t, "-server", g.addr, "-ca", certFile, "-log-level", "debug")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "hello")
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello" {
		t.Fatalf("echo: %q, %v\n%s", got, err, log)
	}
	if !strings.Contains(log.String(), "connected to gatekeeper") {
		t.Errorf("log lacks the first connection:\n%s", log)
	}
}

func TestListenAddr(t *testing.T) {
	cases := []struct{ in, want, err string }{
		{"", "127.0.0.1:5433", ""},
		{"6000", "127.0.0.1:6000", ""},
		{"127.0.0.1:5432", "127.0.0.1:5432", ""},
		{"[::1]:5432", "[::1]:5432", ""},
		{":5432", ":5432", ""},
		{"a:b:c", "", "not host:port"},
	}
	for _, tc := range cases {
		got, err := listenAddr(tc.in, "5433")
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("listenAddr(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// startEcho serves an echo on 127.0.0.1 until the test ends.
func startEcho(t testing.TB) string {
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
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

func pinString(c *x509.Certificate) string { return connector.PinOf(c).String() }
