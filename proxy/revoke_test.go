package proxy

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// closedWithin waits for the peer to close conn and returns how long that
// took from start; it fails the test after limit.
func closedWithin(t *testing.T, conn net.Conn, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	conn.SetReadDeadline(start.Add(limit))
	buf := make([]byte, 64)
	for {
		_, err := conn.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection still open %v after the change", limit)
			}
			return time.Since(start)
		}
	}
}

// TestRevocation closes live connections when the policy stops allowing
// them, in every way it can, and leaves the others alone.
func TestRevocation(t *testing.T) {
	p := newPolicy(t)
	up := newUpstream(t, echo)
	tlsConf := tlsConfig(t)

	type change struct {
		name  string
		setup func(acct string) (from string, apply func())
	}
	changes := []change{
		{"rule deleted", func(acct string) (string, func()) {
			ids := p.account(acct, policy.ModeOn, ipAllowed+"/32")
			return ipAllowed, func() { p.remove(acct, ids[ipAllowed+"/32"]) }
		}},
		{"mode back to on", func(acct string) (string, func()) {
			p.account(acct, policy.ModeMonitor)
			return ipDenied, func() { p.setMode(acct, policy.ModeOn) }
		}},
		{"grant expired", func(acct string) (string, func()) {
			p.account(acct, policy.ModeOn)
			expires := time.Now().Add(400 * time.Millisecond)
			err := p.st.Update(context.Background(), acct, func(tx policy.Tx) error {
				_, err := tx.PutRule(policy.Rule{Account: acct, Prefix: netip.MustParsePrefix(ipOther + "/32"),
					Source: policy.SourceUnblock, Owner: "jane", CreatedAt: time.Now(), ExpiresAt: expires})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			p.waitCheck(acct, netip.MustParseAddr(ipOther), policy.Allowed)
			// The engine rounds expiries up to the next second.
			return ipOther, func() { time.Sleep(time.Until(expires.Truncate(time.Second).Add(time.Second))) }
		}},
	}
	for _, mode := range []string{ModeTCP, ModeTLS} {
		for i, ch := range changes {
			t.Run(mode+"/"+ch.name, func(t *testing.T) {
				acct := mode + "-" + string(rune('a'+i))
				from, apply := ch.setup(acct)
				// A bystander: another account, another client, unchanged.
				p.account(acct+"-x", policy.ModeOn, ipAllowed+"/32", ipOther+"/32", ipDenied+"/32")
				ls := []Listener{
					{Name: "l", Addr: "127.0.0.1:0", Mode: mode, Routes: []Route{{Account: acct, Upstream: up.addr()}}},
					{Name: "x", Addr: "127.0.0.1:0", Mode: mode, Routes: []Route{{Account: acct + "-x", Upstream: up.addr()}}},
				}
				px := startProxy(t, Options{Listeners: ls, Engine: p.engine, TLS: tlsConf})
				connect := func(listener string) net.Conn {
					if mode == ModeTCP {
						return dial(t, from, px.addr(listener))
					}
					c, _, err := dialTLS(t, from, px.addr(listener), "localhost")
					if err != nil {
						t.Fatal(err)
					}
					return c
				}
				conn, bystander := connect("l"), connect("x")
				for _, c := range []net.Conn{conn, bystander} {
					if err := roundTrip(t, c, "before"); err != nil {
						t.Fatal(err)
					}
				}
				apply()
				start := time.Now()
				latency := closedWithin(t, conn, start, time.Second)
				t.Logf("%s: live connection closed %v after the change was committed", ch.name, latency)
				if err := roundTrip(t, bystander, "after"); err != nil {
					t.Errorf("bystander: %v", err)
				}
				px.waitCounter("gatekeeper_connections_revoked_total", 1, "account", acct)
				px.waitCounter("gatekeeper_connections_active", 0, "listener", "l")
				if got := px.counter("gatekeeper_connections_revoked_total", "account", acct+"-x"); got != 0 {
					t.Errorf("bystander account revoked %v", got)
				}
			})
		}
	}
}

// TestLiveConnections counts an account's live connections by client
// address, for the admin service's reports.
func TestLiveConnections(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32", ipOther+"/32")
	up := newUpstream(t, echo)
	px := startProxy(t, Options{Listeners: []Listener{tcpListener("l", up.addr())}, Engine: p.engine})
	for _, from := range []string{ipAllowed, ipAllowed, ipOther} {
		if err := roundTrip(t, dial(t, from, px.addr("l")), "x"); err != nil {
			t.Fatal(err)
		}
	}
	a, o, d := netip.MustParseAddr(ipAllowed), netip.MustParseAddr(ipOther), netip.MustParseAddr(ipDenied)
	cases := []struct {
		account string
		addrs   []netip.Addr
		want    int
	}{
		{"acct", []netip.Addr{a}, 2},
		{"acct", []netip.Addr{a, o}, 3},
		{"acct", []netip.Addr{d}, 0},
		{"other", []netip.Addr{a}, 0},
		{"acct", nil, 0},
	}
	for _, c := range cases {
		if got := px.srv.LiveConnections(c.account, func(a netip.Addr) bool { return slices.Contains(c.addrs, a) }); got != c.want {
			t.Errorf("LiveConnections(%s, %v) = %d, want %d", c.account, c.addrs, got, c.want)
		}
	}
}
