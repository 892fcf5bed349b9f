// Package load has the load generators of bench/run: byte streams, new
// TLS connections, HTTP requests, echo round trips, floods of refused
// connections and idle connections, each from loopback source addresses
// of the caller's choosing and each bounded in time and in count.
//
// The generators measure what a client sees. They know nothing of the
// proxies under test; the gkbench command starts and configures those.
package load

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// Sources hands out client source addresses round robin, so that many
// connections spread over many addresses: this keeps clear of per-IP
// connection limits and of running out of ephemeral ports.
type Sources struct {
	addrs []netip.Addr
	next  atomic.Uint64
}

// Range is every address from first to last, both included. It panics if
// last comes before first or they differ in family.
func Range(first, last netip.Addr) *Sources {
	if first.BitLen() != last.BitLen() || last.Less(first) {
		panic(fmt.Sprintf("load.Range(%v, %v): not a range", first, last))
	}
	s := &Sources{}
	for a := first; ; a = a.Next() {
		s.addrs = append(s.addrs, a)
		if a == last {
			break
		}
	}
	return s
}

// Next is the next address, round robin.
func (s *Sources) Next() netip.Addr {
	return s.addrs[(s.next.Add(1)-1)%uint64(len(s.addrs))]
}

// Len is how many addresses there are.
func (s *Sources) Len() int { return len(s.addrs) }

// dialTimeout bounds every connect.
const dialTimeout = 5 * time.Second

// Dial connects to addr from src.
func Dial(ctx context.Context, src netip.Addr, addr string) (*net.TCPConn, error) {
	d := net.Dialer{
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
		Timeout:   dialTimeout,
		KeepAlive: -1,
		Control:   bindNoPort,
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// DialTLS connects from src and completes a TLS handshake, checking what
// was negotiated against want (fields left zero are not checked).
func DialTLS(ctx context.Context, src netip.Addr, addr string, conf *tls.Config, want Negotiated) (*tls.Conn, error) {
	c, err := Dial(ctx, src, addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, conf)
	hctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, err
	}
	if err := want.check(tc.ConnectionState()); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// Negotiated is what a TLS connection must have agreed on for a like for
// like comparison.
type Negotiated struct {
	Version     uint16
	CipherSuite uint16
	Curve       tls.CurveID
}

// ErrMismatch is returned when a handshake negotiated something else than
// the benchmark compares.
var ErrMismatch = errors.New("negotiated parameters differ from the benchmark's")

func (n Negotiated) check(st tls.ConnectionState) error {
	switch {
	case st.DidResume:
		return fmt.Errorf("%w: session resumed", ErrMismatch)
	case n.Version != 0 && st.Version != n.Version:
		return fmt.Errorf("%w: version %s, want %s", ErrMismatch, tls.VersionName(st.Version), tls.VersionName(n.Version))
	case n.CipherSuite != 0 && st.CipherSuite != n.CipherSuite:
		return fmt.Errorf("%w: cipher suite %s, want %s", ErrMismatch, tls.CipherSuiteName(st.CipherSuite), tls.CipherSuiteName(n.CipherSuite))
	case n.Curve != 0 && st.CurveID != n.Curve:
		return fmt.Errorf("%w: key exchange %v, want %v", ErrMismatch, st.CurveID, n.Curve)
	}
	return nil
}

// window is the measuring window of a run: after a warm-up, for a
// duration. Work done outside it is not counted.
type window struct {
	start, end time.Time
}

func newWindow(warmup, d time.Duration) window {
	now := time.Now()
	return window{start: now.Add(warmup), end: now.Add(warmup + d)}
}

func (w window) in(t time.Time) bool { return !t.Before(w.start) && t.Before(w.end) }
func (w window) seconds() float64    { return w.end.Sub(w.start).Seconds() }

// SleepUntil waits for t or ctx's end, whichever comes first.
func SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
