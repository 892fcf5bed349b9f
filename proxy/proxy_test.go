package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TestAllowDeny runs the same clients against a fixed-account listener of
// each mode that joins to a TCP upstream.
func TestAllowDeny(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32", "::1/128")
	up := newUpstream(t, echo)
	tlsConf := tlsConfig(t)

	for _, v := range []struct {
		mode     string
		portable bool // the accept loop for platforms without a raw one
	}{{ModeTCP, false}, {ModeTCP, true}, {ModeTLS, false}} {
		mode := v.mode
		name := mode
		if v.portable {
			name += "-portable-accept"
		}
		t.Run(name, func(t *testing.T) {
			lc := tcpListener("l", up.addr())
			lc.Mode = mode
			px := startProxy(t, Options{Listeners: []Listener{lc}, Engine: p.engine, TLS: tlsConf, portableAccept: v.portable})
			addr := px.addr("l")
			addr6 := ""
			if a6 := startV6(t, p, up, mode, tlsConf); a6 != nil {
				addr6 = a6.addr("l6")
			}
			cases := []struct {
				from, to string
				allowed  bool
			}{
				{ipAllowed, addr, true},
				{ipDenied, addr, false},
				{"127.0.0.1", addr, false},
				{"::1", addr6, true},
			}
			before := up.accepted.Load()
			wantUp := int64(0)
			for _, c := range cases {
				if c.to == "" {
					continue
				}
				var conn net.Conn
				var err error
				if mode == ModeTCP {
					conn, err = tryDial(t, c.from, c.to)
					if err != nil {
						if c.allowed {
							t.Fatal(err)
						}
						continue // reset before connect returned
					}
				} else {
					var seen []*tlsCertSeen
					conn, seen, err = dialTLS(t, c.from, c.to, "localhost")
					if !c.allowed {
						if err == nil {
							t.Errorf("%s: denied client completed a TLS handshake", c.from)
						}
						if len(seen) > 0 {
							t.Errorf("%s: denied client was sent a certificate (%s)", c.from, seen[0].subject)
						}
						continue
					}
					if err != nil {
						t.Fatalf("%s: handshake: %v", c.from, err)
					}
				}
				if c.allowed {
					wantUp++
					if err := roundTrip(t, conn, "hello from "+c.from); err != nil {
						t.Errorf("%s: %v", c.from, err)
					}
				} else {
					expectClosed(t, conn, 2*time.Second)
				}
			}
			waitFor(t, "upstream connections", func() bool { return up.accepted.Load()-before == wantUp })
			if got := px.counter("gatekeeper_connections_total", "listener", "l", "verdict", "denied"); got != 2 {
				t.Errorf("denied count = %v, want 2", got)
			}
			if got := px.counter("gatekeeper_connections_total", "listener", "l", "account", "acct", "verdict", "allowed"); got != 1 {
				t.Errorf("allowed count = %v, want 1", got)
			}
		})
	}
}

// startV6 starts a second proxy on [::1] when the machine has it.
func startV6(t *testing.T, p *testPolicy, up *upstream, mode string, tlsConf any) *proxyTest {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Log("no IPv6 loopback: skipping the ::1 client")
		return nil
	}
	ln.Close()
	lc := tcpListener("l6", up.addr())
	lc.Addr = "[::1]:0"
	lc.Mode = mode
	opts := Options{Listeners: []Listener{lc}, Engine: p.engine}
	if mode == ModeTLS {
		opts.TLS = tlsConfig(t)
	}
	return startProxy(t, opts)
}

// TestSNIRoutes routes two accounts by server name on a tls listener and on
// a tcp listener that passes TLS through.
func TestSNIRoutes(t *testing.T) {
	p := newPolicy(t)
	p.account("alpha", policy.ModeOn, ipAllowed+"/32")
	p.account("beta", policy.ModeOn, ipOther+"/32")
	tlsConf := tlsConfig(t)

	// For tls mode the upstreams are plain echo servers; for tcp mode they
	// are TLS servers, so that a completed handshake proves the ClientHello
	// reached them untouched.
	plainA, plainB := newUpstream(t, echo), newUpstream(t, echo)
	tlsEcho := func(c net.Conn) {
		tc := tls.Server(c, tlsConf)
		io.Copy(tc, tc)
	}
	tlsA, tlsB := newUpstream(t, tlsEcho), newUpstream(t, tlsEcho)

	listeners := []Listener{
		{Name: "tls", Addr: "127.0.0.1:0", Mode: ModeTLS, Routes: []Route{
			{SNI: "alpha.test", Account: "alpha", Upstream: plainA.addr()},
			{SNI: "*.beta.test", Account: "beta", Upstream: plainB.addr()},
		}},
		{Name: "tcp", Addr: "127.0.0.1:0", Mode: ModeTCP, Routes: []Route{
			{SNI: "alpha.test", Account: "alpha", Upstream: tlsA.addr()},
			{SNI: "*.beta.test", Account: "beta", Upstream: tlsB.addr()},
		}},
	}
	px := startProxy(t, Options{Listeners: listeners, Engine: p.engine, TLS: tlsConf})

	cases := []struct {
		from, sni string
		up        func(mode string) *upstream
		ok        bool
	}{
		{ipAllowed, "alpha.test", func(m string) *upstream { return pick(m, plainA, tlsA) }, true},
		{ipAllowed, "ALPHA.test", func(m string) *upstream { return pick(m, plainA, tlsA) }, true},
		{ipOther, "db.beta.test", func(m string) *upstream { return pick(m, plainB, tlsB) }, true},
		{ipAllowed, "db.beta.test", nil, false}, // alpha's address, beta's name
		{ipOther, "alpha.test", nil, false},
		{ipAllowed, "gamma.test", nil, false}, // no route
		{ipAllowed, "", nil, false},           // no server name, no default route
	}
	for _, mode := range []string{"tls", "tcp"} {
		for _, c := range cases {
			name := fmt.Sprintf("%s/%s/%s", mode, c.from, c.sni)
			var before int64
			if c.up != nil {
				before = c.up(mode).accepted.Load()
			}
			conn, seen, received, err := dialTLSCounting(t, c.from, px.addr(mode), c.sni)
			if !c.ok {
				if err == nil {
					t.Errorf("%s: handshake succeeded", name)
				}
				if len(seen) > 0 {
					t.Errorf("%s: a refused client was sent a certificate", name)
				}
				if received > 0 {
					t.Errorf("%s: a refused client was sent %d bytes (an alert?); it must get nothing", name, received)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if err := roundTrip(t, conn, "ping "+name); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			if got := c.up(mode).accepted.Load() - before; got != 1 {
				t.Errorf("%s: %d connections reached the route's upstream, want 1", name, got)
			}
			conn.Close()
		}
	}
	for _, l := range []string{"tls", "tcp"} {
		if got := px.counter("gatekeeper_connections_total", "listener", l, "account", "alpha", "verdict", "denied"); got != 1 {
			t.Errorf("%s: alpha denied = %v, want 1", l, got)
		}
		if got := px.counter("gatekeeper_connection_errors_total", "listener", l, "reason", "no_route"); got != 2 {
			t.Errorf("%s: no_route = %v, want 2", l, got)
		}
	}
}

func pick(mode string, forTLS, forTCP *upstream) *upstream {
	if mode == "tls" {
		return forTLS
	}
	return forTCP
}

// TestModes checks monitor and off against a client no rule allows.
func TestModes(t *testing.T) {
	p := newPolicy(t)
	p.account("mon", policy.ModeMonitor)
	p.account("off", policy.ModeOff)
	p.account("on", policy.ModeOn)
	up := newUpstream(t, echo)
	var ls []Listener
	for _, a := range []string{"mon", "off", "on"} {
		ls = append(ls, tcpListener(a, "", Route{Account: a, Upstream: up.addr()}))
	}
	px := startProxy(t, Options{Listeners: ls, Engine: p.engine})
	cases := []struct {
		account, verdict string
		through          bool
	}{
		{"mon", "monitored", true},
		{"off", "allowed", true},
		{"on", "denied", false},
	}
	for _, c := range cases {
		conn, err := tryDial(t, ipDenied, px.addr(c.account))
		if c.through {
			if err != nil {
				t.Fatal(err)
			}
			if err := roundTrip(t, conn, "x"); err != nil {
				t.Errorf("%s: %v", c.account, err)
			}
		} else if err == nil {
			expectClosed(t, conn, 2*time.Second)
		}
		if got := px.counter("gatekeeper_connections_total", "listener", c.account, "verdict", c.verdict); got != 1 {
			t.Errorf("%s: %s = %v, want 1", c.account, c.verdict, got)
		}
	}
}
