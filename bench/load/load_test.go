package load

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/bench/upstream"
)

func TestRange(t *testing.T) {
	s := Range(netip.MustParseAddr("127.0.0.254"), netip.MustParseAddr("127.0.1.1"))
	if s.Len() != 4 {
		t.Fatalf("Len = %d, want 4", s.Len())
	}
	var got []string
	for range 5 {
		got = append(got, s.Next().String())
	}
	if want := "127.0.0.254 127.0.0.255 127.0.1.0 127.0.1.1 127.0.0.254"; strings.Join(got, " ") != want {
		t.Errorf("Next: %s, want %s", strings.Join(got, " "), want)
	}
	defer func() {
		if recover() == nil {
			t.Error("a backwards range did not panic")
		}
	}()
	Range(netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1"))
}

func TestReadResponse(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		keep     bool
		err      string
	}{
		{"keep-alive", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcNEXT", true, ""},
		{"no body", "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", true, ""},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", false, ""},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", false, ""},
		{"not 200", "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", false, "status"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, "chunked"},
		{"no length", "HTTP/1.1 200 OK\r\n\r\n", false, "without Content-Length"},
		{"garbage", "SSH-2.0-OpenSSH\r\n", false, "bad status line"},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", false, "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.in))
			keep, err := readResponse(br)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil || keep != tc.keep {
				t.Fatalf("keep, err = %v, %v; want %v, nil", keep, err, tc.keep)
			}
			if rest, _ := br.ReadString(0); tc.name == "keep-alive" && rest != "NEXT" {
				t.Errorf("left %q after the response, want NEXT", rest)
			}
		})
	}
}

// The generators against the upstream package's servers, for a fraction
// of a second each: they connect, count and stop when told.

var clients = Range(netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"))

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func serveUpstream(t *testing.T, conf *tls.Config) string {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	if conf != nil {
		ln = tls.NewListener(ln, conf)
	}
	srv := upstream.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return addr
}

func serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"bench.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		CurvePreferences: []tls.CurveID{tls.X25519}, NextProtos: []string{"http/1.1"}}
}

var (
	clientTLS = &tls.Config{ServerName: "bench.test", InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519}, NextProtos: []string{"http/1.1"}}
	wantTLS = Negotiated{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Curve: tls.X25519}
)

const (
	warmup = 20 * time.Millisecond
	dur    = 500 * time.Millisecond
)

func TestStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		srv  *tls.Config
		cli  *tls.Config
	}{{"tcp", nil, nil}, {"tls", serverTLS(t), clientTLS}} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveUpstream(t, tc.srv)
			start := time.Now()
			bps, err := Stream{Addr: addr, TLS: tc.cli, Want: wantTLS, From: clients, Conns: 2, Warmup: warmup, Duration: dur}.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if bps <= 0 {
				t.Errorf("%v bytes/s", bps)
			}
			if took := time.Since(start); took > warmup+dur+10*time.Second {
				t.Errorf("took %v for a %v run", took, warmup+dur)
			}
		})
	}
}

func TestHandshakes(t *testing.T) {
	addr := serveUpstream(t, serverTLS(t))
	n, err := Handshakes{Addr: addr, TLS: clientTLS, Want: wantTLS, From: clients, Workers: 2, Warmup: warmup, Duration: dur}.Run(context.Background())
	if err != nil || n <= 0 {
		t.Fatalf("%v handshakes/s, %v", n, err)
	}
	// Asking for a group the server does not use is a mismatch, not a
	// figure.
	want := wantTLS
	want.Curve = tls.X25519MLKEM768
	_, err = Handshakes{Addr: addr, TLS: clientTLS, Want: want, From: clients, Workers: 1, Duration: dur, MaxErrors: 1}.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "key exchange") {
		t.Errorf("mismatched group: %v", err)
	}
	resuming := clientTLS.Clone()
	resuming.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	if _, err := (Handshakes{Addr: addr, TLS: resuming, From: clients, Duration: dur}).Run(context.Background()); err == nil {
		t.Error("a client that resumes sessions was accepted")
	}
}

func TestEcho(t *testing.T) {
	addr := serveUpstream(t, nil)
	rt, lat, err := Echo{Addr: addr, From: clients, Conns: 2, Warmup: warmup, Duration: dur}.Run(context.Background())
	if err != nil || rt <= 0 || len(lat.All()) == 0 {
		t.Fatalf("%v round trips/s, %d samples, %v", rt, len(lat.All()), err)
	}
}

func TestHTTP(t *testing.T) {
	ln := listen(t)
	srv := &http.Server{Handler: upstream.HTTPHandler([]byte("hello")), TLSConfig: serverTLS(t)}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	rps, lat, err := HTTP{Addr: ln.Addr().String(), TLS: clientTLS, Want: wantTLS, From: clients, Conns: 2,
		Warmup: warmup, Duration: dur}.Run(context.Background())
	if err != nil || rps <= 0 || len(lat.All()) == 0 {
		t.Fatalf("%v requests/s, %d samples, %v", rps, len(lat.All()), err)
	}
}

// resetServer resets every connection at once, as a proxy does a denied
// client.
func resetServer(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

func TestFlood(t *testing.T) {
	addr := resetServer(t)
	r, err := Flood{Addr: addr, From: clients, Workers: 4, Count: 200, Duration: 10 * time.Second}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Attempts != 200 || r.Refused+r.Failed != 200 || r.Admitted != 0 {
		t.Errorf("closed loop, 200 attempts: %+v", r)
	}
	r, err = Flood{Addr: addr, From: clients, Workers: 4, Rate: 1000, Duration: 200 * time.Millisecond}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Attempts+r.Skipped < 100 || r.Attempts+r.Skipped > 250 || r.RefusedRate() <= 0 {
		t.Errorf("1000/s for 200ms: %+v", r)
	}
	// A server that lets the flood in is reported as such.
	open := serveUpstream(t, nil)
	r, err = Flood{Addr: open, From: clients, Workers: 2, Count: 2, Duration: 5 * time.Second}.Run(context.Background())
	if err != nil || r.Admitted != 2 {
		t.Errorf("flood against an open server: %+v, %v", r, err)
	}
	if _, err := (Flood{Addr: addr, From: clients}).Run(context.Background()); err == nil {
		t.Error("an unbounded flood was accepted")
	}
}

func TestOpenIdle(t *testing.T) {
	addr := serveUpstream(t, serverTLS(t))
	conns, err := OpenIdle(context.Background(), addr, clients, clientTLS, wantTLS, 20, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(conns)
	for i, c := range conns {
		if c == nil {
			t.Fatalf("connection %d missing", i)
		}
	}
	if _, err := OpenIdle(context.Background(), resetServer(t), clients, nil, Negotiated{}, 5, 2); err == nil {
		t.Error("connections that were reset counted as open")
	}
}
