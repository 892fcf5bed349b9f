package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/gatekeeper-dev/gatekeeper/certs"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// Client addresses. Linux routes all of 127.0.0.0/8 to lo, so each test
// client can have its own.
const (
	ipAllowed = "127.0.0.2"
	ipDenied  = "127.0.0.3"
	ipOther   = "127.0.0.4"
)

// testPolicy is a bolt store with an engine following it.
type testPolicy struct {
	t      testing.TB
	st     *boltstore.Store
	engine *policy.Engine
}

func newPolicy(t testing.TB) *testPolicy {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "gk.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.NewEngine(policy.Options{Source: st, Usage: st, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		st.Close()
	})
	return &testPolicy{t: t, st: st, engine: e}
}

// account creates an account with the given mode and allowed networks.
func (p *testPolicy) account(id string, mode policy.Mode, cidrs ...string) map[string]policy.RuleID {
	p.t.Helper()
	err := p.st.CreateAccount(context.Background(), policy.Account{ID: id, Name: id, Mode: mode, CreatedAt: time.Now()},
		policy.AuditEntry{Actor: "test", Role: policy.RoleOperator, Action: "account.create"})
	if err != nil {
		p.t.Fatal(err)
	}
	ids := map[string]policy.RuleID{}
	for _, c := range cidrs {
		ids[c] = p.allow(id, c)
	}
	p.waitMode(id, mode)
	return ids
}

// allow adds a rule and waits until the engine enforces it.
func (p *testPolicy) allow(account, cidr string) policy.RuleID {
	p.t.Helper()
	pfx := netip.MustParsePrefix(cidr)
	var id policy.RuleID
	err := p.st.Update(context.Background(), account, func(tx policy.Tx) error {
		r, err := tx.PutRule(policy.Rule{Account: account, Prefix: pfx, Source: policy.SourceManual, CreatedBy: "test", CreatedAt: time.Now()})
		id = r.ID
		return err
	})
	if err != nil {
		p.t.Fatal(err)
	}
	p.waitCheck(account, pfx.Addr(), policy.Allowed)
	return id
}

// remove deletes a rule, and returns when the store committed it (not
// when the engine applied it: that is for the proxy to notice).
func (p *testPolicy) remove(account string, id policy.RuleID) {
	p.t.Helper()
	err := p.st.Update(context.Background(), account, func(tx policy.Tx) error { return tx.DeleteRule(id) })
	if err != nil {
		p.t.Fatal(err)
	}
}

func (p *testPolicy) setMode(account string, mode policy.Mode) {
	p.t.Helper()
	err := p.st.Update(context.Background(), account, func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.Mode = mode
		return tx.PutAccount(a)
	})
	if err != nil {
		p.t.Fatal(err)
	}
}

func (p *testPolicy) waitCheck(account string, a netip.Addr, want policy.Verdict) {
	p.t.Helper()
	waitFor(p.t, fmt.Sprintf("policy %s for %s in %s", want, a, account), func() bool {
		return p.engine.Check(account, a).Verdict == want
	})
}

func (p *testPolicy) waitMode(account string, mode policy.Mode) {
	p.t.Helper()
	waitFor(p.t, "account "+account+" in the engine", func() bool {
		m, ok := p.engine.Table().Mode(account)
		return ok && m == mode
	})
}

// waitFor polls cond every 2ms for up to 5s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 2500; i++ {
		if cond() {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// upstream is a loopback TCP server that runs handle for each connection
// and counts them.
type upstream struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
}

func newUpstream(t testing.TB, handle func(net.Conn)) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{ln: ln}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.accepted.Add(1)
			u.wg.Add(1)
			go func() { defer u.wg.Done(); defer c.Close(); handle(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); u.wg.Wait() })
	return u
}

func (u *upstream) addr() string { return u.ln.Addr().String() }

// echo copies everything back and half-closes after the client did.
func echo(c net.Conn) {
	io.Copy(c, c)
	c.(*net.TCPConn).CloseWrite()
}

// tlsConfig is a self-signed certificate for localhost served the way
// gatekeeper serves it.
func tlsConfig(t testing.TB) *tls.Config {
	t.Helper()
	m, err := certs.New(context.Background(), certs.Options{TLS: certs.TLS{SelfSigned: true}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m.TLSConfig()
}

type proxyTest struct {
	t   testing.TB
	srv *Server
	reg *prometheus.Registry
}

// startProxy runs a Server until the test ends.
func startProxy(t testing.TB, opts Options) *proxyTest {
	t.Helper()
	reg := prometheus.NewRegistry()
	if opts.Registerer == nil {
		opts.Registerer = reg
	}
	if opts.Logger == nil {
		if tt, ok := t.(*testing.T); ok {
			opts.Logger = zaptest.NewLogger(tt, zaptest.Level(zap.WarnLevel))
		} else {
			opts.Logger = zap.NewNop()
		}
	}
	srv, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return")
		}
	})
	return &proxyTest{t: t, srv: srv, reg: reg}
}

func (p *proxyTest) addr(name string) string { return p.srv.Addr(name).String() }

// dial connects from the given loopback address.
func dial(t testing.TB, from, to string) *net.TCPConn {
	t.Helper()
	c, err := tryDial(t, from, to)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tryDial connects from the given loopback address. A client the proxy
// drops at accept may see the reset before connect returns.
func tryDial(t testing.TB, from, to string) (*net.TCPConn, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", to)
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", to, from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn), nil
}

// dialTLS connects from the given address and completes a handshake for
// serverName. It returns the connection or the handshake error and the
// certificates the server sent, if any.
func dialTLS(t testing.TB, from, to, serverName string, alpn ...string) (*tls.Conn, []*tlsCertSeen, error) {
	t.Helper()
	tc, seen, _, err := dialTLSCounting(t, from, to, serverName, alpn...)
	return tc, seen, err
}

// countingConn counts the bytes read from the server.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// dialTLSCounting is dialTLS that also says how many bytes the server sent
// during the handshake: a refused client must get none, not even an alert.
func dialTLSCounting(t testing.TB, from, to, serverName string, alpn ...string) (*tls.Conn, []*tlsCertSeen, int64, error) {
	t.Helper()
	raw, err := tryDial(t, from, to)
	if err != nil {
		return nil, nil, 0, err
	}
	var received atomic.Int64
	c := countingConn{Conn: raw, n: &received}
	var seen []*tlsCertSeen
	cfg := &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true,
		NextProtos:         alpn,
		VerifyConnection: func(cs tls.ConnectionState) error {
			for _, pc := range cs.PeerCertificates {
				seen = append(seen, &tlsCertSeen{subject: pc.Subject.String()})
			}
			return nil
		},
	}
	tc := tls.Client(c, cfg)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	err = tc.Handshake()
	tc.SetDeadline(time.Time{})
	return tc, seen, received.Load(), err
}

type tlsCertSeen struct{ subject string }

// roundTrip writes msg and reads as many bytes back.
func roundTrip(t testing.TB, c net.Conn, msg string) error {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if !bytes.Equal(buf, []byte(msg)) {
		return fmt.Errorf("echoed %q, want %q", buf, msg)
	}
	return nil
}

// expectClosed reads from c until it ends and fails unless that happens
// within d without any data.
func expectClosed(t testing.TB, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 1))
	if n > 0 {
		t.Fatalf("read %d bytes from a connection that should be closed", n)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", d)
	}
}

// counter returns the value of a counter or gauge with the given labels.
func (p *proxyTest) counter(name string, labels ...string) float64 {
	p.t.Helper()
	mfs, err := p.reg.Gather()
	if err != nil {
		p.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				if m.Counter != nil {
					return m.Counter.GetValue()
				}
				if m.Gauge != nil {
					return m.Gauge.GetValue()
				}
				if m.Histogram != nil {
					return float64(m.Histogram.GetSampleCount())
				}
			}
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == kv[i] && lp.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (p *proxyTest) waitCounter(name string, want float64, labels ...string) {
	p.t.Helper()
	waitFor(p.t, fmt.Sprintf("%s{%s} = %v", name, strings.Join(labels, ","), want), func() bool {
		return p.counter(name, labels...) == want
	})
}

func tcpListener(name, upstream string, routes ...Route) Listener {
	if len(routes) == 0 {
		routes = []Route{{Account: "acct", Upstream: upstream}}
	}
	return Listener{Name: name, Addr: "127.0.0.1:0", Mode: ModeTCP, Routes: routes}
}
