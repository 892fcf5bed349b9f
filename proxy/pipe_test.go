package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// closeWriter is a connection that can half-close: *net.TCPConn and
// *tls.Conn (close_notify).
type closeWriter interface {
	net.Conn
	CloseWrite() error
}

// connectMode opens a client connection through listener l of mode.
func connectMode(t *testing.T, px *proxyTest, mode, l string) closeWriter {
	t.Helper()
	if mode == ModeTCP {
		return dial(t, ipAllowed, px.addr(l))
	}
	c, _, err := dialTLS(t, ipAllowed, px.addr(l), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestHalfClose checks that each side can finish sending while the other
// goes on.
func TestHalfClose(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	tlsConf := tlsConfig(t)

	got := make(chan string, 1)
	// Client finishes first: the upstream reads to EOF, then answers.
	clientFirst := newUpstream(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		io.WriteString(c, "got:"+string(b))
	})
	// Upstream finishes first: it greets, half-closes, then reads to EOF.
	upstreamFirst := newUpstream(t, func(c net.Conn) {
		io.WriteString(c, "greeting")
		c.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(c)
		got <- string(b)
	})
	for _, mode := range []string{ModeTCP, ModeTLS} {
		t.Run(mode, func(t *testing.T) {
			ls := []Listener{
				{Name: "cf", Addr: "127.0.0.1:0", Mode: mode, Routes: []Route{{Account: "acct", Upstream: clientFirst.addr()}}},
				{Name: "uf", Addr: "127.0.0.1:0", Mode: mode, Routes: []Route{{Account: "acct", Upstream: upstreamFirst.addr()}}},
			}
			px := startProxy(t, Options{Listeners: ls, Engine: p.engine, TLS: tlsConf})

			c := connectMode(t, px, mode, "cf")
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "request")
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(c)
			if err != nil || string(b) != "got:request" {
				t.Errorf("client first: read %q, %v; want %q", b, err, "got:request")
			}

			c = connectMode(t, px, mode, "uf")
			c.SetDeadline(time.Now().Add(5 * time.Second))
			b, err = io.ReadAll(c)
			if err != nil || string(b) != "greeting" {
				t.Errorf("upstream first: read %q, %v; want %q", b, err, "greeting")
			}
			if _, err := io.WriteString(c, "still here"); err != nil {
				t.Fatalf("write after the upstream half-closed: %v", err)
			}
			c.CloseWrite()
			select {
			case s := <-got:
				if s != "still here" {
					t.Errorf("upstream got %q after half-closing", s)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("upstream never saw the client's end")
			}
		})
	}
}

// TestLargeTransfer sends random bytes both ways at once and compares
// hashes.
func TestLargeTransfer(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	tlsConf := tlsConfig(t)
	up := newUpstream(t, echo)
	sizes := map[string]int64{ModeTCP: 64 << 20, ModeTLS: 16 << 20}
	for _, mode := range []string{ModeTCP, ModeTLS} {
		t.Run(mode, func(t *testing.T) {
			px := startProxy(t, Options{Listeners: []Listener{
				{Name: "l", Addr: "127.0.0.1:0", Mode: mode, Routes: []Route{{Account: "acct", Upstream: up.addr()}}},
			}, Engine: p.engine, TLS: tlsConf})
			c := connectMode(t, px, mode, "l")
			c.SetDeadline(time.Now().Add(60 * time.Second))
			n := sizes[mode]
			sent := sha256.New()
			werr := make(chan error, 1)
			go func() {
				_, err := io.CopyN(io.MultiWriter(c, sent), rand.Reader, n)
				if err == nil {
					err = c.CloseWrite()
				}
				werr <- err
			}()
			recv := sha256.New()
			m, err := io.Copy(recv, c)
			if err != nil {
				t.Fatalf("read after %d bytes: %v", m, err)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if m != n {
				t.Fatalf("got %d bytes back, sent %d", m, n)
			}
			if string(sent.Sum(nil)) != string(recv.Sum(nil)) {
				t.Fatal("bytes came back changed")
			}
			px.waitCounter("gatekeeper_transferred_bytes_total", float64(n), "listener", "l", "direction", "in")
			px.waitCounter("gatekeeper_transferred_bytes_total", float64(n), "listener", "l", "direction", "out")
		})
	}
}

var _ closeWriter = (*tls.Conn)(nil)

// parkedIdle counts the goroutines waiting in waitReadable: the
// directions of pipes that went idle and handed over to a fresh
// goroutine (half.resume), where there is no watcher.
func parkedIdle() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return bytes.Count(buf[:n], []byte("proxy.waitReadable("))
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestIdleHopFallback: without the watcher (other systems, or its epoll
// set could not be created), both directions of an idle connection move
// to fresh goroutines that only wait; after that every byte still
// arrives, in order, whichever side speaks first; half-closing, a
// revocation and the connection's end work from there, and no goroutine
// stays behind. TestIdleHop is the same with the watcher, on Linux.
func TestIdleHopFallback(t *testing.T) {
	if !idleHops {
		t.Skip("idle directions keep their goroutine on this system")
	}
	p := newPolicy(t)
	ids := p.account("acct", policy.ModeOn, ipAllowed+"/32")
	tlsConf := tlsConfig(t)
	push := make(chan string)
	up := newUpstream(t, func(c net.Conn) {
		stop := make(chan struct{})
		defer close(stop)
		go func() { // the upstream speaks first when told to
			for {
				select {
				case s := <-push:
					io.WriteString(c, s)
				case <-stop:
					return
				}
			}
		}()
		echo(c)
	})
	base := parkedIdle()
	for _, mode := range []string{ModeTCP, ModeTLS} {
		t.Run(mode, func(t *testing.T) {
			px := startProxy(t, Options{Listeners: []Listener{{Name: "l", Addr: "127.0.0.1:0", Mode: mode,
				Timeouts: Timeouts{Idle: time.Minute}, Routes: []Route{{Account: "acct", Upstream: up.addr()}}}},
				Engine: p.engine, TLS: tlsConf, noWatcher: true})
			if px.srv.watcher != nil {
				t.Fatal("a watcher despite noWatcher")
			}
			idle := func(want int) {
				t.Helper()
				waitFor(t, fmt.Sprintf("%d idle directions", want), func() bool { return parkedIdle() == base+want })
			}
			c := connectMode(t, px, mode, "l")
			if err := roundTrip(t, c, "before"); err != nil {
				t.Fatal(err)
			}
			idle(2)

			// The client speaks first: 1 MiB both ways, in order.
			msg := make([]byte, 1<<20)
			rand.Read(msg)
			if err := roundTrip(t, c, string(msg)); err != nil {
				t.Fatal(err)
			}
			idle(2)

			// The upstream speaks first.
			push <- "pushed"
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, len("pushed"))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != "pushed" {
				t.Fatalf("from the upstream: %q, %v", got, err)
			}
			idle(2)

			// The client half-closes: the echo ends, and so does the
			// connection, everything given back.
			io.WriteString(c, "last")
			c.CloseWrite()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(c)
			if err != nil || string(b) != "last" {
				t.Fatalf("after the half-close: %q, %v", b, err)
			}
			c.Close()
			px.waitCounter("gatekeeper_connections_active", 0, "listener", "l")
			idle(0)

			// A revocation closes an idle connection at once.
			c = connectMode(t, px, mode, "l")
			if err := roundTrip(t, c, "before"); err != nil {
				t.Fatal(err)
			}
			idle(2)
			p.remove("acct", ids[ipAllowed+"/32"])
			defer func() { ids[ipAllowed+"/32"] = p.allow("acct", ipAllowed+"/32") }()
			closedWithin(t, c, time.Now(), time.Second)
			px.waitCounter("gatekeeper_connections_revoked_total", 1, "account", "acct")
			px.waitCounter("gatekeeper_connections_active", 0, "listener", "l")
			idle(0)
		})
	}
}
