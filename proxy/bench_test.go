package proxy

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// BenchmarkDeny measures a denied client end to end: connect, get reset.
// Client and proxy share the machine, so ns/op includes the client's
// connect; compare the two accept loops.
func BenchmarkDeny(b *testing.B) {
	p := newPolicy(b)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	for _, loop := range []struct {
		name     string
		portable bool
	}{{"raw-accept4", false}, {"net.Listener", true}} {
		b.Run(loop.name, func(b *testing.B) {
			px := startProxy(b, Options{Listeners: []Listener{tcpListener("l", "127.0.0.1:9")},
				Engine: p.engine, Logger: zap.NewNop(), portableAccept: loop.portable})
			addr := px.addr("l")
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ipDenied)}}
			buf := make([]byte, 1)
			b.ReportAllocs()
			for b.Loop() {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue // reset before connect returned
				}
				c.Read(buf)
				c.Close()
			}
			b.StopTimer()
			px.waitCounter("gatekeeper_connections_total", float64(b.N), "listener", "l", "verdict", "denied")
		})
	}
}

// BenchmarkDenyCPU is the proxy's CPU time per denied client: the
// clients run in another process (this test binary, re-run as
// TestDenyClientProcess), so that the process time measured here is the
// proxy's alone (reported as proxy-cpu-ns/op).
func BenchmarkDenyCPU(b *testing.B) {
	p := newPolicy(b)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	for _, loop := range []struct {
		name     string
		portable bool
	}{{"raw-accept4", false}, {"net.Listener", true}} {
		b.Run(loop.name, func(b *testing.B) {
			px := startProxy(b, Options{Listeners: []Listener{tcpListener("l", "127.0.0.1:9")},
				Engine: p.engine, Logger: zap.NewNop(), portableAccept: loop.portable})
			before := px.counter("gatekeeper_connections_total", "listener", "l", "verdict", "denied")
			cmd := exec.Command(os.Args[0], "-test.run=^TestDenyClientProcess$")
			cmd.Env = append(os.Environ(), "GK_DENY_CLIENT_ADDR="+px.addr("l"), "GK_DENY_CLIENT_N="+strconv.Itoa(b.N))
			cpu0 := processCPU(b)
			b.ResetTimer()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("client process: %v\n%s", err, out)
			}
			px.waitCounter("gatekeeper_connections_total", before+float64(b.N), "listener", "l", "verdict", "denied")
			b.StopTimer()
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "proxy-cpu-ns/op")
		})
	}
}

// TestDenyClientProcess is BenchmarkDenyCPU's client when run with its
// environment; otherwise it does nothing.
func TestDenyClientProcess(t *testing.T) {
	addr := os.Getenv("GK_DENY_CLIENT_ADDR")
	if addr == "" {
		t.Skip("only a helper process for BenchmarkDenyCPU")
	}
	n, _ := strconv.Atoi(os.Getenv("GK_DENY_CLIENT_N"))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ipDenied)}}
	buf := make([]byte, 1)
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			continue
		}
		c.Read(buf)
		c.Close()
	}
}

// BenchmarkDropAtAccept is the proxy's own work for a denied client past
// the accept system call: the check, the counter, the log rate limit.
func BenchmarkDropAtAccept(b *testing.B) {
	p := newPolicy(b)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	px := startProxy(b, Options{Listeners: []Listener{tcpListener("l", "127.0.0.1:9")}, Engine: p.engine, Logger: zap.NewNop()})
	l := px.srv.listeners["l"]
	lc := l.cfg.Load()
	client := netip.MustParseAddr(ipDenied)
	b.ReportAllocs()
	for b.Loop() {
		if !l.dropAtAccept(lc, client) {
			b.Fatal("not dropped")
		}
	}
}

// BenchmarkReadClientHello parses the hellos of helloCases.
func BenchmarkReadClientHello(b *testing.B) {
	for _, c := range helloCases {
		hello := clientHello(b, c.config)
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, 4096)
			b.SetBytes(int64(len(hello)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := readClientHello(bytes.NewReader(hello), buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCopy moves bytes from a client to an upstream that discards
// them: directly, through a tcp listener (splice) and through a tls
// listener. MB/s is the figure.
func BenchmarkCopy(b *testing.B) {
	p := newPolicy(b)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	received := make(chan int64, 1)
	sink := newUpstream(b, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		received <- n
	})
	tlsConf := tlsConfig(b)
	tlsConf.CurvePreferences = []tls.CurveID{tls.X25519}
	px := startProxy(b, Options{Listeners: []Listener{
		{Name: "tcp", Addr: "127.0.0.1:0", Mode: ModeTCP, Routes: []Route{{Account: "acct", Upstream: sink.addr()}}},
		{Name: "tls", Addr: "127.0.0.1:0", Mode: ModeTLS, Routes: []Route{{Account: "acct", Upstream: sink.addr()}}},
	}, Engine: p.engine, TLS: tlsConf, Logger: zap.NewNop()})

	const chunk = 256 << 10
	data := make([]byte, chunk)
	for _, c := range []struct {
		name string
		dial func() closeWriter
	}{
		{"direct", func() closeWriter { return dial(b, ipAllowed, sink.addr()) }},
		{"tcp-splice", func() closeWriter { return dial(b, ipAllowed, px.addr("tcp")) }},
		{"tls", func() closeWriter {
			tc, _, err := dialTLS(b, ipAllowed, px.addr("tls"), "localhost")
			if err != nil {
				b.Fatal(err)
			}
			return tc
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			conn := c.dial()
			conn.SetDeadline(time.Now().Add(10 * time.Minute))
			b.SetBytes(chunk)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := conn.Write(data); err != nil {
					b.Fatal(err)
				}
			}
			conn.CloseWrite()
			n := <-received // all of it arrived
			b.StopTimer()
			if n != int64(b.N)*chunk {
				b.Fatalf("upstream got %d bytes, sent %d", n, int64(b.N)*chunk)
			}
			conn.Close()
		})
	}
}
