package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
)

// writeCert writes a self-signed ECDSA certificate for names into dir and
// returns the file pair.
func writeCert(t testing.TB, dir, base string, notAfter time.Time, names ...string) CertFile {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		DNSNames:     names,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := CertFile{Cert: filepath.Join(dir, base+".crt"), Key: filepath.Join(dir, base+".key")}
	if err := os.WriteFile(c.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

func newManager(t *testing.T, opts Options) *Manager {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t)
	}
	m, err := New(t.Context(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(m.Close)
	return m
}

// served performs a handshake against cfg with the given server name and
// ALPN and returns the leaf the server sent.
func served(t *testing.T, cfg *tls.Config, serverName string, alpn ...string) (*x509.Certificate, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc := tls.Server(c, cfg)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		tc.Handshake()
	}()
	defer func() { <-done }()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(),
		&tls.Config{ServerName: serverName, InsecureSkipVerify: true, NextProtos: alpn})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func TestSelfSigned(t *testing.T) {
	m := newManager(t, Options{TLS: TLS{SelfSigned: true}})
	for _, sni := range []string{"localhost", "", "other.example"} {
		leaf, err := served(t, m.TLSConfig(), sni)
		if err != nil {
			t.Fatalf("sni %q: handshake: %v", sni, err)
		}
		pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			t.Errorf("sni %q: key is %T, want ECDSA P-256", sni, leaf.PublicKey)
		}
		if err := leaf.VerifyHostname("localhost"); err != nil {
			t.Errorf("sni %q: %v", sni, err)
		}
		if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
			t.Errorf("sni %q: %v", sni, err)
		}
	}
}

func TestFilesAndReload(t *testing.T) {
	dir := t.TempDir()
	a := writeCert(t, dir, "a", time.Now().Add(48*time.Hour), "a.example", "www.a.example")
	b := writeCert(t, dir, "b", time.Now().Add(72*time.Hour), "b.example")
	reg := prometheus.NewRegistry()
	m := newManager(t, Options{TLS: TLS{Certificates: []CertFile{a, b}}, Registerer: reg})
	cfg := m.TLSConfig()

	cases := []struct{ sni, want string }{
		{"a.example", "a.example"},
		{"www.a.example", "a.example"},
		{"b.example", "b.example"},
		{"", "a.example"},             // no server name: the first file
		{"unknown.test", "a.example"}, // no match: the first file
	}
	for _, c := range cases {
		leaf, err := served(t, cfg, c.sni)
		if err != nil {
			t.Fatalf("sni %q: %v", c.sni, err)
		}
		if leaf.Subject.CommonName != c.want {
			t.Errorf("sni %q: served %q, want %q", c.sni, leaf.Subject.CommonName, c.want)
		}
	}

	exp := m.Expiries()
	if got := exp["a.example"]; got.Before(time.Now().Add(47 * time.Hour)) {
		t.Errorf("expiry of a.example = %v", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, mf := range mfs {
		if mf.GetName() == "gatekeeper_certificate_expiry_timestamp_seconds" {
			found = len(mf.GetMetric())
		}
	}
	if found != 2 {
		t.Errorf("expiry metric has %d series, want 2", found)
	}

	// Replace a's files in place, as a renewal by another tool would, and
	// drop b from the list.
	old, _ := served(t, cfg, "a.example")
	a2 := writeCert(t, dir, "a", time.Now().Add(96*time.Hour), "a.example")
	if err := m.Reload(t.Context(), TLS{Certificates: []CertFile{a2}}); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	leaf, err := served(t, cfg, "a.example")
	if err != nil {
		t.Fatal(err)
	}
	if leaf.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Error("after Reload the old certificate is still served")
	}
	if leaf, _ := served(t, cfg, "b.example"); leaf != nil && leaf.Subject.CommonName == "b.example" {
		t.Error("after Reload without it, b.example is still served")
	}

	// A broken file keeps what was loaded.
	if err := os.WriteFile(a2.Cert, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(t.Context(), TLS{Certificates: []CertFile{a2}}); err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	after, err := served(t, cfg, "a.example")
	if err != nil {
		t.Fatalf("after a failed Reload: %v", err)
	}
	if after.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Error("a failed Reload changed the served certificate")
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeCert(t, dir, "g", time.Now().Add(time.Hour), "g.example")
	cases := []struct {
		name string
		tls  TLS
		want string
	}{
		{"missing file", TLS{Certificates: []CertFile{{Cert: filepath.Join(dir, "nope"), Key: good.Key}}}, "tls.certificates[0]"},
		{"key mismatch", TLS{Certificates: []CertFile{{Cert: good.Cert, Key: writeCert(t, dir, "h", time.Now().Add(time.Hour), "h.example").Key}}}, "tls.certificates[0]"},
		{"unknown curve", TLS{SelfSigned: true, Curves: []string{"X448"}}, "tls.curves"},
		{"acme without challenge", TLS{ACME: &ACME{Domains: []string{"x.example"}, Storage: dir}}, "no challenge"},
		{"acme bad root", TLS{ACME: &ACME{Domains: []string{"x.example"}, Storage: dir, CARoot: good.Key, HTTPAddr: "127.0.0.1:0"}}, "ca_root"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := New(t.Context(), Options{TLS: c.tls, Logger: zaptest.NewLogger(t)})
			if err == nil {
				m.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestCurves(t *testing.T) {
	ids, err := Curves([]string{"X25519", "P256"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0] != tls.X25519 || ids[1] != tls.CurveP256 {
		t.Errorf("Curves = %v", ids)
	}
	if ids, _ := Curves(nil); ids != nil {
		t.Errorf("Curves(nil) = %v, want nil (Go's defaults)", ids)
	}
	for _, n := range KnownCurves {
		if _, err := Curves([]string{n}); err != nil {
			t.Errorf("KnownCurves has %q, which Curves rejects", n)
		}
	}

	// The server honours the configured groups.
	m := newManager(t, Options{TLS: TLS{SelfSigned: true, Curves: []string{"P256"}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			tc := tls.Server(c, m.TLSConfig())
			tc.Handshake()
			tc.Close()
		}
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().CurveID; got != tls.CurveP256 {
		t.Errorf("negotiated %v, want P256", got)
	}
}

func TestChallengeWithoutPendingGetsNothing(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, Options{
		TLS:      TLS{SelfSigned: true, ACME: &ACME{Domains: []string{"gate.example"}, Storage: dir, CA: "https://127.0.0.1:1/dir"}},
		ALPNAddr: "127.0.0.1:9",
	})
	if m.ChallengePending() {
		t.Error("a challenge is pending before Run")
	}
	cfg := m.TLSConfig()
	if len(cfg.NextProtos) != 1 || cfg.NextProtos[0] != ALPNChallenge {
		t.Errorf("NextProtos = %v, want the ACME protocol", cfg.NextProtos)
	}
	if _, err := served(t, cfg, "gate.example", ALPNChallenge); err == nil {
		t.Error("a TLS-ALPN-01 handshake with no challenge pending succeeded (fallback certificate served?)")
	}
	m.onEvent(context.Background(), "cert_obtaining", map[string]any{"identifier": "gate.example"})
	if !m.ChallengePending() {
		t.Error("no challenge pending while obtaining")
	}
	m.onEvent(context.Background(), "cert_failed", map[string]any{"identifier": "gate.example"})
	if m.ChallengePending() {
		t.Error("a challenge still pending after the attempt failed")
	}
}

// TestCipherSuites: by default TLS 1.2 offers forward-secret AEAD suites
// only (no CBC: LUCKY13); the key widens it, and refuses what Go deems
// insecure or TLS 1.3's.
func TestCipherSuites(t *testing.T) {
	ids, err := CipherSuites(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		name := tls.CipherSuiteName(id)
		if !strings.Contains(name, "_GCM_") && !strings.Contains(name, "CHACHA20_POLY1305") || !strings.HasPrefix(name, "TLS_ECDHE_") {
			t.Errorf("default suite %s is not forward-secret AEAD", name)
		}
	}
	if len(ids) != 6 {
		t.Errorf("%d default suites, want 6", len(ids))
	}
	if ids, err := CipherSuites([]string{"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"}); err != nil || len(ids) != 1 || ids[0] != tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA {
		t.Errorf("widened: %v, %v", ids, err)
	}
	for _, bad := range []string{"TLS_RSA_WITH_RC4_128_SHA", "TLS_AES_128_GCM_SHA256", "nope"} {
		if _, err := CipherSuites([]string{bad}); err == nil {
			t.Errorf("CipherSuites(%q) accepted", bad)
		}
	}
}
