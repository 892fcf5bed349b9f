package proxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// heldUpstream is an upstream that hands every connection it accepts to
// the test and runs nothing for it: the test speaks for the upstream, and
// an idle connection costs no goroutine on this side either.
type heldUpstream struct {
	ln    net.Listener
	conns chan *net.TCPConn
}

func newHeldUpstream(t *testing.T) *heldUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &heldUpstream{ln: ln, conns: make(chan *net.TCPConn, 1024)}
	var mu sync.Mutex
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			u.conns <- c.(*net.TCPConn)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range held {
			c.Close()
		}
	})
	return u
}

func (u *heldUpstream) addr() string { return u.ln.Addr().String() }

// pair is one connection through the proxy: the client's end and the
// upstream's.
type pair struct {
	client closeWriter
	up     *net.TCPConn
}

// open connects a client through listener "l" and takes the upstream
// connection the proxy dialed for it: one at a time, so they match.
func (u *heldUpstream) open(t *testing.T, px *proxyTest, mode string) pair {
	t.Helper()
	c := connectMode(t, px, mode, "l")
	select {
	case up := <-u.conns:
		return pair{client: c, up: up}
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy never dialed the upstream")
		return pair{}
	}
}

// send writes msg to from and checks that to reads exactly it.
func send(t *testing.T, from, to net.Conn, msg []byte) {
	t.Helper()
	werr := make(chan error, 1)
	go func() { _, err := from.Write(msg); werr <- err }()
	to.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(msg))
	n, err := io.ReadFull(to, got)
	if err != nil {
		t.Fatalf("read %d of %d bytes: %v", n, len(msg), err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("the bytes arrived changed or out of order")
	}
}

// exchange sends a message each way, the client first.
func (pr pair) exchange(t *testing.T, msg string) {
	t.Helper()
	send(t, pr.client, pr.up, []byte(msg))
	send(t, pr.up, pr.client, []byte(msg))
}

// expectEOF reads from c and fails unless it ends cleanly, without data.
func expectEOF(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 16))
	if n != 0 || err != io.EOF {
		t.Fatalf("read %d bytes, %v; want the end (EOF)", n, err)
	}
}

// readUntilClosed reads from c until the proxy closed it, whatever came
// before; it fails if c stays open.
func readUntilClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("connection still open")
		}
		return
	}
}

// waitDormant waits until want directions are dormant in w.
func waitDormant(t *testing.T, w *watcher, want int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d dormant directions", want), func() bool {
		n, _ := w.count()
		return n == want
	})
}

// checkStats fails unless every half the watcher took was woken, ended
// or is still dormant: none lost, none twice.
func checkStats(t *testing.T, w *watcher) watchStats {
	t.Helper()
	n, st := w.count()
	if st.parked != st.woken+st.ended+n {
		t.Errorf("watcher parked %d halves, woke %d, ended %d, holds %d", st.parked, st.woken, st.ended, n)
	}
	return st
}

// connGoroutines counts the goroutines that serve connections: those
// running a pipe's direction or another part of a connection's life.
func connGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("proxy.(*half).")) || bytes.Contains(g, []byte("proxy.(*conn).")) ||
			bytes.Contains(g, []byte("proxy.(*listener).serveConn(")) {
			count++
		}
	}
	return count
}

// waitConnsDone waits until the server counts no connection (s.conns).
func waitConnsDone(t *testing.T, s *Server) {
	t.Helper()
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the server still counts connections")
	}
}

// proxyFDs returns the descriptors of the sockets of the proxy's live
// connections.
func proxyFDs(t *testing.T, s *Server) map[uintptr]bool {
	t.Helper()
	fds := map[uintptr]bool{}
	add := func(tc *net.TCPConn) {
		rc, err := tc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		rc.Control(func(fd uintptr) { fds[fd] = true })
	}
	s.reg.mu.Lock()
	defer s.reg.mu.Unlock()
	for c := range s.reg.all {
		add(c.tcp)
		if up := c.up.Load(); up != nil {
			add(up)
		}
	}
	return fds
}

// idleListener is listener "l" to upstream; connections left open at the
// test's end are closed after a short drain.
func idleListener(mode, upstream string, t Timeouts) Listener {
	t.Drain = 100 * time.Millisecond
	return Listener{Name: "l", Addr: "127.0.0.1:0", Mode: mode, Timeouts: t,
		Routes: []Route{{Account: "acct", Upstream: upstream}}}
}

// TestIdleHop: both directions of idle connections wait in the watcher,
// with no goroutine per connection; after that every byte still arrives,
// in order, whichever side speaks first; a half-close from either side, a
// revocation of connections with both directions dormant, and new
// connections on the descriptors they had, all work from there.
func TestIdleHop(t *testing.T) {
	p := newPolicy(t)
	ids := p.account("acct", policy.ModeOn, ipAllowed+"/32")
	tlsConf := tlsConfig(t)
	const n = 40
	for _, mode := range []string{ModeTCP, ModeTLS} {
		t.Run(mode, func(t *testing.T) {
			u := newHeldUpstream(t)
			px := startProxy(t, Options{Listeners: []Listener{idleListener(mode, u.addr(), Timeouts{Idle: time.Minute})},
				Engine: p.engine, TLS: tlsConf})
			w := px.srv.watcher
			if w == nil {
				t.Fatal("no watcher on Linux")
			}
			// One connection first, so that whatever the first one starts
			// for good is in the base count.
			pairs := []pair{u.open(t, px, mode)}
			pairs[0].exchange(t, "warm-up")
			waitDormant(t, w, 2)
			waitFor(t, "no goroutine serving a connection", func() bool { return connGoroutines() == 0 })
			base := runtime.NumGoroutine()
			for range n {
				pr := u.open(t, px, mode)
				pr.exchange(t, "hello")
				pairs = append(pairs, pr)
			}
			waitDormant(t, w, 2*(n+1))
			waitFor(t, fmt.Sprintf("%d more idle connections to cost no goroutine", n), func() bool {
				return runtime.NumGoroutine() <= base && connGoroutines() == 0
			})

			// Whichever side speaks first after the dormancy, every byte
			// arrives, in order; 128 KiB is several buffers, spliced in tcp.
			msg := make([]byte, 128<<10)
			rand.Read(msg)
			for i, pr := range pairs {
				if i%2 == 0 {
					send(t, pr.client, pr.up, msg)
					send(t, pr.up, pr.client, msg[:1000])
				} else {
					send(t, pr.up, pr.client, msg)
					send(t, pr.client, pr.up, msg[:1000])
				}
			}
			waitDormant(t, w, 2*(n+1))

			// The client ends first; the upstream goes on, then ends.
			a := pairs[0]
			a.client.CloseWrite()
			expectEOF(t, a.up)
			waitDormant(t, w, 2*n+1)
			send(t, a.up, a.client, []byte("after the client's end"))
			a.up.CloseWrite()
			expectEOF(t, a.client)
			waitFor(t, "the connection to finish", func() bool { return px.srv.reg.count() == n })

			// The upstream ends first; the client goes on, then ends.
			b := pairs[1]
			waitDormant(t, w, 2*n)
			b.up.CloseWrite()
			expectEOF(t, b.client)
			waitDormant(t, w, 2*n-1)
			send(t, b.client, b.up, []byte("after the upstream's end"))
			b.client.CloseWrite()
			expectEOF(t, b.up)
			waitFor(t, "the connection to finish", func() bool { return px.srv.reg.count() == n-1 })

			// A revocation closes connections whose both directions are
			// dormant: nothing is left of them.
			live := pairs[2:]
			waitDormant(t, w, 2*len(live))
			before := checkStats(t, w)
			old := proxyFDs(t, px.srv)
			p.remove("acct", ids[ipAllowed+"/32"])
			for _, pr := range live {
				closedWithin(t, pr.client, time.Now(), 5*time.Second)
				readUntilClosed(t, pr.up)
			}
			px.waitCounter("gatekeeper_connections_revoked_total", float64(len(live)), "account", "acct")
			px.waitCounter("gatekeeper_connections_active", 0, "listener", "l")
			waitFor(t, "the registry to forget them", func() bool { return px.srv.reg.count() == 0 })
			waitConnsDone(t, px.srv)
			waitDormant(t, w, 0)
			if after := checkStats(t, w); after.ended-before.ended != 2*len(live) {
				t.Errorf("the revocation ended %d dormant directions, want %d", after.ended-before.ended, 2*len(live))
			}
			waitFor(t, "no goroutine serving a connection", func() bool { return connGoroutines() == 0 })
			ids[ipAllowed+"/32"] = p.allow("acct", ipAllowed+"/32")

			// New connections take the descriptors the revoked ones had
			// (the lowest free number is taken): they are served as well.
			var fresh []pair
			reused := 0
			for range 8 {
				pr := u.open(t, px, mode)
				pr.exchange(t, "new")
				fresh = append(fresh, pr)
			}
			for fd := range proxyFDs(t, px.srv) {
				if old[fd] {
					reused++
				}
			}
			if reused == 0 {
				t.Fatal("no new connection got a descriptor of a revoked one")
			}
			waitDormant(t, w, 2*len(fresh))
			for i, pr := range fresh {
				if i%2 == 0 {
					pr.exchange(t, "again")
				} else {
					send(t, pr.up, pr.client, []byte("again"))
					send(t, pr.client, pr.up, []byte("again"))
				}
			}
			waitDormant(t, w, 2*len(fresh))
			checkStats(t, w)
		})
	}
}

// TestIdleKillWhileWaking ends many connections while both their
// directions are being woken: by a kill (revocation, idle sweep,
// shutdown all kill), or by the upstream's reset, which one direction
// reads and whose end kills the other, still dormant or waking. Every
// connection finishes once, and nothing is left.
func TestIdleKillWhileWaking(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	tlsConf := tlsConfig(t)
	const n, rounds = 24, 4
	for _, mode := range []string{ModeTCP, ModeTLS} {
		t.Run(mode, func(t *testing.T) {
			u := newHeldUpstream(t)
			px := startProxy(t, Options{Listeners: []Listener{idleListener(mode, u.addr(), Timeouts{Idle: time.Minute})},
				Engine: p.engine, TLS: tlsConf})
			w := px.srv.watcher
			for round := range rounds {
				pairs := make([]pair, n)
				for i := range pairs {
					pairs[i] = u.open(t, px, mode)
					pairs[i].exchange(t, "x")
				}
				waitDormant(t, w, 2*n)
				// The proxy's connection of each pair, by the upstream socket.
				byUp := map[string]*conn{}
				px.srv.reg.mu.Lock()
				for c := range px.srv.reg.all {
					byUp[c.up.Load().LocalAddr().String()] = c
				}
				px.srv.reg.mu.Unlock()

				start := make(chan struct{})
				var wg sync.WaitGroup
				do := func(f func()) {
					wg.Add(1)
					go func() { defer wg.Done(); <-start; f() }()
				}
				for i, pr := range pairs {
					c := byUp[pr.up.RemoteAddr().String()]
					if c == nil {
						t.Fatal("no connection for a pair")
					}
					do(func() { pr.client.Write([]byte("wake")) })
					if i%3 == 0 { // a reset; in odd rounds a kill too
						do(func() { pr.up.SetLinger(0); pr.up.Close() })
						if round%2 == 1 {
							do(c.kill)
						}
					} else {
						do(func() { pr.up.Write([]byte("wake")) })
						do(c.kill)
					}
				}
				close(start)
				wg.Wait()
				for i, pr := range pairs {
					readUntilClosed(t, pr.client)
					if i%3 != 0 {
						readUntilClosed(t, pr.up)
					}
					pr.client.Close()
					pr.up.Close()
				}
				waitFor(t, "the registry to forget them", func() bool { return px.srv.reg.count() == 0 })
				waitConnsDone(t, px.srv)
				waitDormant(t, w, 0)
				waitFor(t, "no goroutine serving a connection", func() bool { return connGoroutines() == 0 })
				px.waitCounter("gatekeeper_connections_active", 0, "listener", "l")
				st := checkStats(t, w)
				t.Logf("round %d: %d woken, %d ended dormant so far", round, st.woken, st.ended)
			}
		})
	}
}

// TestIdleTimeoutDormant: the idle sweep closes a connection whose both
// directions are dormant, which no longer wake up every tick.
func TestIdleTimeoutDormant(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	tlsConf := tlsConfig(t)
	for _, mode := range []string{ModeTCP, ModeTLS} {
		t.Run(mode, func(t *testing.T) {
			u := newHeldUpstream(t)
			// Long enough for both directions to go dormant (idleHop) first.
			px := startProxy(t, Options{Listeners: []Listener{idleListener(mode, u.addr(), Timeouts{Idle: 2 * time.Second})},
				Engine: p.engine, TLS: tlsConf})
			w := px.srv.watcher
			pr := u.open(t, px, mode)
			pr.exchange(t, "x")
			waitDormant(t, w, 2)
			closedWithin(t, pr.client, time.Now(), 10*time.Second)
			readUntilClosed(t, pr.up)
			px.waitCounter("gatekeeper_connection_errors_total", 1, "listener", "l", "reason", reasonIdle)
			waitFor(t, "the registry to forget it", func() bool { return px.srv.reg.count() == 0 })
			waitConnsDone(t, px.srv)
			if st := checkStats(t, w); st.ended != 2 {
				t.Errorf("the idle sweep ended %d dormant directions, want both", st.ended)
			}
		})
	}
}

// TestIdleShutdown: shutdown closes connections whose directions are
// dormant, Run returns, and nothing is left: no connection, no dormant
// direction, no watcher.
func TestIdleShutdown(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	tlsConf := tlsConfig(t)
	const n = 10
	for _, mode := range []string{ModeTCP, ModeTLS} {
		t.Run(mode, func(t *testing.T) {
			u := newHeldUpstream(t)
			srv, stop, done := runServer(t, Options{Engine: p.engine, TLS: tlsConf,
				Listeners: []Listener{idleListener(mode, u.addr(), Timeouts{Idle: time.Minute})}})
			px := &proxyTest{t: t, srv: srv}
			w := srv.watcher
			var pairs []pair
			for range n {
				pr := u.open(t, px, mode)
				pr.exchange(t, "x")
				pairs = append(pairs, pr)
			}
			waitDormant(t, w, 2*n)
			stop()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return")
			}
			for _, pr := range pairs {
				readUntilClosed(t, pr.client)
				readUntilClosed(t, pr.up)
			}
			if c := srv.reg.count(); c != 0 {
				t.Errorf("%d connections left", c)
			}
			select {
			case <-w.done:
			default:
				t.Error("the watcher still runs")
			}
			if st := checkStats(t, w); st.ended != 2*n {
				t.Errorf("%d dormant directions ended, want %d", st.ended, 2*n)
			}
			waitFor(t, "no goroutine serving a connection", func() bool { return connGoroutines() == 0 })
		})
	}
}
