package certs

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// localConn is a net.Conn with only addresses, for a ClientHelloInfo.
type localConn struct {
	net.Conn
	addr net.Addr
}

func (c localConn) LocalAddr() net.Addr { return c.addr }
func (c localConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 50000}
}

// TestStaticMatchesCertmagic checks that without ACME the Manager picks
// the certificate certmagic would have: by exact name, by wildcard, by
// the local address when there is no server name, the valid one of two
// for a name, and the fallback when nothing matches.
func TestStaticMatchesCertmagic(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	files := []CertFile{
		writeCert(t, dir, "a", now.Add(48*time.Hour), "a.example", "www.a.example"),
		writeCert(t, dir, "wild", now.Add(48*time.Hour), "*.wild.example"),
		writeCert(t, dir, "ip", now.Add(48*time.Hour), "ip.example", "127.0.0.1"),
		writeCert(t, dir, "expired", now.Add(-time.Minute), "two.example"),
		writeCert(t, dir, "valid", now.Add(48*time.Hour), "two.example"),
	}
	for _, selfSigned := range []bool{false, true} {
		m := newManager(t, Options{TLS: TLS{Certificates: files, SelfSigned: selfSigned}})
		if m.static.Load() == nil {
			t.Fatal("no static certificates without ACME")
		}
		local := localConn{addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443}}
		other := localConn{addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 443}}
		for _, hello := range []*tls.ClientHelloInfo{
			{ServerName: "a.example"},
			{ServerName: "WWW.A.Example."},
			{ServerName: "x.wild.example"},
			{ServerName: "wild.example"},
			{ServerName: "two.example"},
			{ServerName: "localhost"},
			{ServerName: "nothing.test"},
			{Conn: local},
			{Conn: other},
		} {
			if hello.Conn == nil {
				hello.Conn = other
			}
			hello.SupportedVersions = []uint16{tls.VersionTLS13}
			hello.SignatureSchemes = []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}
			got, err := m.certificate(hello)
			if err != nil {
				t.Fatalf("self_signed %v, %q: %v", selfSigned, hello.ServerName, err)
			}
			m.static.Store(nil) // the certmagic path, for comparison
			want, err := m.certificate(hello)
			m.static.Store(newStaticCerts(staticList(m, files)))
			if err != nil {
				t.Fatalf("certmagic, %q: %v", hello.ServerName, err)
			}
			if got.Leaf.SerialNumber.Cmp(want.Leaf.SerialNumber) != 0 {
				t.Errorf("self_signed %v, server name %q, conn %v: served %v, certmagic would serve %v",
					selfSigned, hello.ServerName, hello.Conn, got.Leaf.DNSNames, want.Leaf.DNSNames)
			}
		}
		if _, err := m.certificate(&tls.ClientHelloInfo{ServerName: "a.example", SupportedProtos: []string{ALPNChallenge}}); err == nil {
			t.Error("an ACME challenge got a certificate without ACME")
		}
	}
}

// staticList rebuilds what loadFiles gives newStaticCerts.
func staticList(m *Manager, files []CertFile) []*tls.Certificate {
	var out []*tls.Certificate
	if m.selfSigned != nil {
		out = append(out, m.selfSigned)
	}
	for _, f := range files {
		c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			panic(err)
		}
		out = append(out, &c)
	}
	return out
}

func BenchmarkCertificate(b *testing.B) {
	dir := b.TempDir()
	f := writeCert(b, dir, "a", time.Now().Add(time.Hour), "a.example")
	m, err := New(b.Context(), Options{TLS: TLS{Certificates: []CertFile{f}}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	hello := &tls.ClientHelloInfo{ServerName: "a.example"}
	for _, path := range []string{"static", "certmagic"} {
		b.Run(path, func(b *testing.B) {
			if path == "certmagic" {
				m.static.Store(nil)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.certificate(hello); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
