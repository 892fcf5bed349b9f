package proxy

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TestHandshakeDeadline: a client that does not send its PROXY header or
// ClientHello is closed when the handshake timeout runs out.
func TestHandshakeDeadline(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32", ipBalancer+"/32")
	up := newUpstream(t, echo)
	const timeout = 300 * time.Millisecond
	short := Timeouts{Handshake: timeout}
	ls := []Listener{
		{Name: "tls", Addr: "127.0.0.1:0", Mode: ModeTLS, Timeouts: short,
			Routes: []Route{{Account: "acct", Upstream: up.addr()}}},
		{Name: "sni", Addr: "127.0.0.1:0", Mode: ModeTCP, Timeouts: short,
			Routes: []Route{{SNI: "db.test", Account: "acct", Upstream: up.addr()}}},
		{Name: "pp", Addr: "127.0.0.1:0", Mode: ModeTCP, Timeouts: short,
			ProxyProtocol: &ProxyProtocol{Trusted: []string{ipBalancer}},
			Routes:        []Route{{Account: "acct", Upstream: up.addr()}}},
	}
	px := startProxy(t, Options{Listeners: ls, Engine: p.engine, TLS: tlsConfig(t)})
	cases := []struct {
		listener, from string
		send           string // a first fragment, then nothing
		reason         string
		early          bool // refused before the timeout
	}{
		{"tls", ipAllowed, "", reasonHandshake, false},
		{"tls", ipAllowed, "\x16\x03\x01\x02\x00\x01", reasonHandshake, false},
		{"sni", ipAllowed, "", reasonClientHello, false},
		{"sni", ipAllowed, "\x16\x03\x01\x02\x00\x01", reasonClientHello, false},
		{"pp", ipBalancer, "", reasonProxyHeader, false},
		// go-proxyproto refuses a v1 header that does not come in one piece.
		{"pp", ipBalancer, "PROXY TCP4 127.0.0.2", reasonProxyHeader, true},
	}
	for _, c := range cases {
		start := time.Now()
		conn := dial(t, c.from, px.addr(c.listener))
		conn.Write([]byte(c.send))
		took := closedWithin(t, conn, start, 5*time.Second)
		if (!c.early && took < timeout-50*time.Millisecond) || took > timeout+time.Second {
			t.Errorf("%s, sending %q: closed after %v, want about %v", c.listener, c.send, took, timeout)
		}
		px.waitCounter("gatekeeper_connection_errors_total", 1+btof(c.send != ""), "listener", c.listener, "reason", c.reason)
	}
	if n := up.accepted.Load(); n != 0 {
		t.Errorf("%d connections reached the upstream", n)
	}
}

func btof(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// TestLimits caps live connections per client address and per account.
func TestLimits(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, "127.0.0.0/24")
	up := newUpstream(t, echo)
	ls := []Listener{
		{Name: "ip", Addr: "127.0.0.1:0", Mode: ModeTCP, Limits: Limits{PerIP: 2, PerAccount: -1},
			Routes: []Route{{Account: "acct", Upstream: up.addr()}}},
		{Name: "acct", Addr: "127.0.0.1:0", Mode: ModeTCP, Limits: Limits{PerIP: -1, PerAccount: 3},
			Routes: []Route{{Account: "acct", Upstream: up.addr()}}},
	}
	px := startProxy(t, Options{Listeners: ls, Engine: p.engine})
	open := func(l, from string) (net.Conn, error) {
		c, err := tryDial(t, from, px.addr(l))
		if err != nil {
			return nil, err // refused before connect returned
		}
		return c, roundTrip(t, c, "x")
	}
	mustOpen := func(l, from string) net.Conn {
		t.Helper()
		c, err := open(l, from)
		if err != nil {
			t.Fatalf("%s from %s: %v", l, from, err)
		}
		return c
	}
	mustFail := func(l, from string) {
		t.Helper()
		if _, err := open(l, from); err == nil {
			t.Fatalf("%s from %s: got through beyond the limit", l, from)
		}
	}

	a := mustOpen("ip", "127.0.0.10")
	mustOpen("ip", "127.0.0.10")
	mustFail("ip", "127.0.0.10")
	mustOpen("ip", "127.0.0.11") // another address has its own budget
	a.Close()
	waitFor(t, "the slot to be released", func() bool {
		return px.counter("gatekeeper_connections_active", "listener", "ip") == 2
	})
	mustOpen("ip", "127.0.0.10")

	b := mustOpen("acct", "127.0.0.20")
	mustOpen("acct", "127.0.0.21")
	mustOpen("acct", "127.0.0.22")
	mustFail("acct", "127.0.0.23")
	b.Close()
	waitFor(t, "the slot to be released", func() bool {
		return px.counter("gatekeeper_connections_active", "listener", "acct") == 2
	})
	mustOpen("acct", "127.0.0.23")
	for _, l := range []string{"ip", "acct"} {
		if got := px.counter("gatekeeper_connection_errors_total", "listener", l, "reason", reasonLimit); got != 1 {
			t.Errorf("%s: limit refusals = %v, want 1", l, got)
		}
	}
}

// TestUpstreamDown: the client is closed and the log says why.
func TestUpstreamDown(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()
	core, logs := observer.New(zap.InfoLevel)
	px := startProxy(t, Options{Listeners: []Listener{tcpListener("l", gone)}, Engine: p.engine, Logger: zap.New(core)})
	c := dial(t, ipAllowed, px.addr("l"))
	expectClosed(t, c, 5*time.Second)
	px.waitCounter("gatekeeper_connection_errors_total", 1, "listener", "l", "reason", reasonUpstream)
	waitFor(t, "the log line", func() bool {
		for _, e := range logs.All() {
			if strings.Contains(e.Message, "upstream unreachable") && e.ContextMap()["upstream"] == gone {
				return true
			}
		}
		return false
	})
	if got := px.counter("gatekeeper_upstream_dial_seconds", "listener", "l"); got != 1 {
		t.Errorf("dial histogram has %v samples, want 1", got)
	}
}

// TestIdleTimeout closes a connection that moves nothing, not one that
// trickles.
func TestIdleTimeout(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	up := newUpstream(t, echo)
	const idle = 600 * time.Millisecond
	for _, mode := range []string{ModeTCP, ModeTLS} {
		t.Run(mode, func(t *testing.T) {
			px := startProxy(t, Options{Listeners: []Listener{{Name: "l", Addr: "127.0.0.1:0", Mode: mode,
				Timeouts: Timeouts{Idle: idle}, Routes: []Route{{Account: "acct", Upstream: up.addr()}}}},
				Engine: p.engine, TLS: tlsConfig(t)})
			quiet, busy := connectMode(t, px, mode, "l"), connectMode(t, px, mode, "l")
			start := time.Now()
			for _, c := range []net.Conn{quiet, busy} {
				if err := roundTrip(t, c, "x"); err != nil {
					t.Fatal(err)
				}
			}
			// The busy one sends a byte every idle/6 for 2 idle periods.
			for time.Since(start) < 2*idle {
				if err := roundTrip(t, busy, "y"); err != nil {
					t.Fatalf("busy connection after %v: %v", time.Since(start), err)
				}
				time.Sleep(idle / 6)
			}
			quiet.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := io.ReadAll(quiet); err != nil {
				t.Fatalf("quiet connection: %v", err)
			}
			px.waitCounter("gatekeeper_connection_errors_total", 1, "listener", "l", "reason", reasonIdle)
		})
	}
}

// TestDenyLogRateLimited: a flood of denied clients makes a bounded number
// of log lines and a summary.
func TestDenyLogRateLimited(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn)
	core, logs := observer.New(zap.InfoLevel)
	px := startProxy(t, Options{Listeners: []Listener{tcpListener("l", "127.0.0.1:9")}, Engine: p.engine,
		Logger: zap.New(core), DenyLogBurst: 5, DenyLogInterval: 300 * time.Millisecond})
	const flood = 200
	for range flood {
		if c, err := tryDial(t, ipDenied, px.addr("l")); err == nil {
			c.Close()
		}
	}
	px.waitCounter("gatekeeper_connections_total", flood, "listener", "l", "verdict", "denied")
	var summary int64
	waitFor(t, "the summary line", func() bool {
		summary = 0
		for _, e := range logs.FilterMessage("log lines suppressed").All() {
			summary += e.ContextMap()["suppressed"].(int64)
		}
		return summary > 0
	})
	denied := logs.FilterMessage("connection denied").Len()
	if denied > 15 {
		t.Errorf("%d denial lines for %d denied connections", denied, flood)
	}
	if int64(denied)+summary > flood {
		t.Errorf("%d lines + %d suppressed > %d denials", denied, summary, flood)
	}
	t.Logf("%d denied connections: %d log lines and summaries of %d", flood, denied, summary)
}

// TestPendingBound floods a tls listener routed by SNI with connections
// that never send their ClientHello, from few addresses and then from
// many, and measures: the connections not yet checked stay within
// limits.pending and limits.pending_per_ip, every one over them is reset
// at once (counted, and read as a reset by the client before any
// timeout), and an allowed client keeps being served while the flood
// holds its per-address share. A trusted balancer is bounded overall
// only.
func TestPendingBound(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	up := newUpstream(t, echo)
	const overall, perIP = 40, 5
	lim := Limits{Pending: overall, PendingPerIP: perIP}
	long := Timeouts{Handshake: time.Minute} // the flood outlasts the test
	ls := []Listener{
		{Name: "sni", Addr: "127.0.0.1:0", Mode: ModeTLS, Timeouts: long, Limits: lim,
			Routes: []Route{{SNI: "db.test", Account: "acct", Upstream: up.addr()}}},
		{Name: "pp", Addr: "127.0.0.1:0", Mode: ModeTCP, Timeouts: long, Limits: lim,
			ProxyProtocol: &ProxyProtocol{Trusted: []string{ipBalancer}},
			Routes:        []Route{{Account: "acct", Upstream: up.addr()}}},
	}
	px := startProxy(t, Options{Listeners: ls, Engine: p.engine, TLS: tlsConfig(t)})
	// flood opens n idle connections from each of addrs, waits until the
	// proxy has either filed or reset every one, and returns them with
	// how many it reset (at accept, having read nothing: the counter says
	// so while the kept ones wait for their minute).
	flood := func(listener string, addrs []string, n int) (conns []*net.TCPConn, reset int) {
		before := px.counter("gatekeeper_connection_errors_total", "listener", listener, "reason", reasonPending)
		for _, from := range addrs {
			for range n {
				if c, err := tryDial(t, from, px.addr(listener)); err == nil {
					conns = append(conns, c)
				}
			}
		}
		count := func() int {
			return int(px.counter("gatekeeper_connection_errors_total", "listener", listener, "reason", reasonPending) - before)
		}
		waitFor(t, "every connection filed or reset", func() bool {
			return count()+int(px.counter("gatekeeper_connections_pending", "listener", listener)) == len(addrs)*n
		})
		return conns, count()
	}
	closeAll := func(listener string, cs []*net.TCPConn) {
		for _, c := range cs {
			c.Close()
		}
		waitFor(t, "pending connections closed", func() bool {
			return px.counter("gatekeeper_connections_pending", "listener", listener) == 0
		})
	}
	addrs := func(from, n int) []string {
		var as []string
		for i := range n {
			as = append(as, fmt.Sprintf("127.0.0.%d", from+i))
		}
		return as
	}
	served := func() int {
		ok := 0
		for range 10 {
			c, _, err := dialTLS(t, ipAllowed, px.addr("sni"), "db.test")
			if err == nil && roundTrip(t, c, "ping") == nil {
				ok++
			}
			if c != nil {
				c.Close()
			}
		}
		return ok
	}

	// Few addresses: the per-address bound holds them, others are served.
	held, reset := flood("sni", addrs(100, 4), 12)
	if reset != 4*(12-perIP) {
		t.Errorf("4 addresses × 12: %d reset, want %d", reset, 4*(12-perIP))
	}
	if got := px.counter("gatekeeper_connections_pending", "listener", "sni"); got != 4*perIP {
		t.Errorf("gatekeeper_connections_pending %v, want %d", got, 4*perIP)
	}
	if ok := served(); ok != 10 {
		t.Errorf("during the flood %d of 10 allowed clients were served", ok)
	}
	closeAll("sni", held)

	// Many addresses: the overall bound holds them.
	held, reset = flood("sni", addrs(100, 20), perIP)
	if reset != 20*perIP-overall {
		t.Errorf("20 addresses × %d: %d reset, want %d", perIP, reset, 20*perIP-overall)
	}
	if got := px.counter("gatekeeper_connections_pending", "listener", "sni"); got != overall {
		t.Errorf("gatekeeper_connections_pending %v, want %d", got, overall)
	}
	closeAll("sni", held)

	// A trusted balancer carries many clients: only the overall bound.
	held, reset = flood("pp", []string{ipBalancer}, overall+3)
	if reset != 3 || px.counter("gatekeeper_connections_pending", "listener", "pp") != overall {
		t.Errorf("balancer: %d reset, want 3", reset)
	}
	closeAll("pp", held)
}
