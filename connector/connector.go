// Package connector is the desktop side of gatekeeper, for applications
// that speak only plain TCP. It listens on a local address and carries each
// connection it accepts over TLS to a gatekeeper tls listener, in the
// manner of stunnel's client mode or the Cloud SQL Auth Proxy:
//
//	c, err := connector.New(connector.Options{
//		Server:     "gate.example.com:5433",
//		ServerName: "10042.db.example.com",
//	})
//	ln, err := net.Listen("tcp", "127.0.0.1:5432")
//	err = c.Serve(ctx, ln) // until ctx ends
//
// It verifies the server's certificate against the system roots or given
// ones, optionally requires pinned public keys, and turns a refused
// connection into an error that names the likely cause (see DialError):
// gatekeeper closes the connection of an address its account does not
// allow before sending any certificate, which the connector reports as
// "this IP is probably not allowed; unblock it at the admin page".
//
// It does not authenticate anyone and is no gate itself: whoever reaches
// its listener goes through with this computer's address. That is why the
// command listens on 127.0.0.1 unless told otherwise.
package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// DefaultTimeout bounds connecting to gatekeeper and the TLS handshake.
const DefaultTimeout = 10 * time.Second

// Options configure a Connector. Server is required; every other field's
// zero value works.
type Options struct {
	// Server is the address of a gatekeeper tls listener, host:port.
	Server string
	// ServerName is sent as the TLS server name (SNI), which gatekeeper
	// routes by, and must be a name of the server's certificate. If empty,
	// the host of Server.
	ServerName string
	// RootCAs verify the server's certificate. If nil, the system roots.
	RootCAs *x509.CertPool
	// Pins, if not empty, also require a certificate of the verified chain
	// (the server's own, an intermediate or the root) to have one of these
	// public keys. With InsecureSkipVerify only the server's own
	// certificate counts: the others prove nothing unverified.
	Pins []Pin
	// InsecureSkipVerify skips certificate verification. It is for trying
	// gatekeeper out with a throwaway self-signed certificate: anyone on the
	// path can then read and change the traffic, unless Pins are set.
	InsecureSkipVerify bool
	// AdminURL is the admin page where users unblock their address; refusal
	// errors name it. If empty, they say "the gatekeeper admin page".
	AdminURL string
	// Timeout bounds the TCP connect and, separately, the TLS handshake.
	// If zero, DefaultTimeout.
	Timeout time.Duration
	// Drain is how long Serve lets live connections run once its context
	// ends. If zero, they are closed at once.
	Drain time.Duration
	// Logger receives connection events. If nil, nothing is logged. A
	// failure is logged at Error with the message of its *DialError and
	// its cause (one of the Err* values) as the error field "cause", so a
	// log sink can tell a refusal from an outage.
	Logger *zap.Logger
	// Dialed, if not nil, is called after each attempt Serve makes to reach
	// gatekeeper for a local connection: with nil when the gate let this
	// computer through, else with the *DialError. It runs on the
	// connection's goroutine, so it must be quick; "gatekeeper connect"
	// keeps its status file with it.
	Dialed func(err error)
	// Lease, if not nil, asks gatekeeper's admin listener for a lease of
	// this computer's address, as an enrolled device, over network
	// ("tcp4" or "tcp6": the family the gate was reached over, so the
	// lease is for the address the gate sees), and returns when the lease
	// ends. Serve calls it when the gate refuses this computer, then tries
	// once more; and, while connections are open, again at half the
	// lease's remaining life, so an application that stays connected
	// keeps its lease. An unused lease simply ends.
	Lease func(ctx context.Context, network string) (expires time.Time, err error)
	// Certificate, if not nil, is presented when the gate asks for one:
	// the device's self-signed certificate (device.Identity.Certificate),
	// for an account that requires a known device. Its key proves the
	// device; the gate asks only once this computer's address passed.
	Certificate *tls.Certificate
}

// Connector carries local plain-TCP connections to gatekeeper over TLS.
type Connector struct {
	opts Options
	tls  *tls.Config
	log  *zap.Logger

	mu     sync.Mutex
	failed failure // the last dial failure, to log repeats quietly
	// renewFloor is the shortest wait between lease renewals; tests lower
	// it.
	renewFloor time.Duration
	// leased wakes keepLease when askLease got a lease.
	leased chan struct{}
	// lease is the last lease Options.Lease got: its network and end.
	lease struct {
		network string
		expires time.Time
	}
}

// failure remembers the last dial failure so that an application retrying
// in a loop does not flood the log with the same explanation.
type failure struct {
	cause      error
	at         time.Time
	suppressed int
}

// repeatWindow is how long the same failure is logged only once.
const repeatWindow = 30 * time.Second

// New checks opts and returns a Connector. It copies opts, so later changes
// to them have no effect.
func New(opts Options) (*Connector, error) {
	host, port, err := net.SplitHostPort(opts.Server)
	if err != nil {
		return nil, fmt.Errorf("server %q: not host:port: %w", opts.Server, err)
	}
	if host == "" || port == "" {
		return nil, fmt.Errorf("server %q: needs a host and a port", opts.Server)
	}
	if opts.ServerName == "" {
		opts.ServerName = host
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	opts.Pins = append([]Pin(nil), opts.Pins...)
	c := &Connector{opts: opts, log: opts.Logger, renewFloor: 10 * time.Second, leased: make(chan struct{}, 1)}
	c.tls = &tls.Config{
		ServerName:         opts.ServerName,
		RootCAs:            opts.RootCAs,
		InsecureSkipVerify: opts.InsecureSkipVerify,
		MinVersion:         tls.VersionTLS12,
		// Resumption saves a full handshake for each of the many short
		// connections a desktop application tends to open.
		ClientSessionCache: tls.NewLRUClientSessionCache(32),
	}
	if len(opts.Pins) > 0 {
		c.tls.VerifyConnection = VerifyPins(opts.Pins, opts.InsecureSkipVerify)
	}
	if opts.Certificate != nil {
		c.tls.Certificates = []tls.Certificate{*opts.Certificate}
	}
	return c, nil
}

// Dial connects to gatekeeper and completes the TLS handshake. Its error is
// a *DialError that names the likely cause.
func (c *Connector) Dial(ctx context.Context) (*tls.Conn, error) {
	network := ""
	fail := func(cause error, handshake bool, err error) error {
		return &DialError{Cause: cause, Server: c.opts.Server, ServerName: c.opts.ServerName,
			AdminURL: c.opts.AdminURL, Timeout: c.opts.Timeout, Handshake: handshake, Network: network, Err: err}
	}
	d := net.Dialer{Timeout: c.opts.Timeout}
	raw, err := d.DialContext(ctx, "tcp", c.opts.Server)
	if err != nil {
		return nil, fail(classifyDial(err), false, err)
	}
	network = addrNetwork(raw.RemoteAddr())
	wc := &watchConn{Conn: raw}
	conn := tls.Client(wc, c.tls)
	hctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, fail(classifyHandshake(err, wc.answered), true, err)
	}
	return conn, nil
}

// watchConn records whether the server sent anything, which tells a gate
// that closed the connection from a handshake that went wrong later.
type watchConn struct {
	net.Conn
	answered bool // read by the handshake's goroutine only
}

func (w *watchConn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if n > 0 {
		w.answered = true
	}
	return n, err
}

// Serve accepts connections on ln and carries each to gatekeeper until ctx
// ends. Then it closes ln, lets live connections run for Options.Drain,
// closes the rest, and returns nil once every connection has ended. It
// returns an error only if ln fails for another reason.
func (c *Connector) Serve(ctx context.Context, ln net.Listener) error {
	var (
		wg   sync.WaitGroup
		live = &liveSet{conns: map[net.Conn]struct{}{}}
	)
	// A cancelled ctx closes the listener; Serve returns only once that
	// close is done (Close waits for the socket's close(2)), so that no
	// connection is accepted by the kernel after Serve returned.
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { defer close(closed); ln.Close() })
	defer func() {
		if !stop() {
			<-closed
		}
	}()
	if c.opts.Lease != nil {
		kctx, cancel := context.WithCancel(ctx)
		var kwg sync.WaitGroup
		kwg.Add(1)
		go func() { defer kwg.Done(); c.keepLease(kctx, live) }()
		defer kwg.Wait()
		defer cancel()
	}
	var serveErr error
	delay := time.Duration(0)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, net.ErrClosed) {
				serveErr = fmt.Errorf("accept on %s: %w", ln.Addr(), err)
				break
			}
			// Out of file descriptors and the like: wait and retry, as
			// net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			c.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("in", delay))
			sleep(ctx, delay)
			continue
		}
		delay = 0
		if !live.add(conn) {
			continue
		}
		wg.Add(1)
		go c.serveConn(ctx, conn, live, &wg)
	}
	c.drain(&wg, live)
	return serveErr
}

// drain waits up to Options.Drain for live connections, then closes them
// and waits for their goroutines.
func (c *Connector) drain(wg *sync.WaitGroup, live *liveSet) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	if n := live.len(); n > 0 {
		c.log.Info("stopping; closing live connections", zap.Int("live", n), zap.Duration("drain", c.opts.Drain))
	}
	t := time.NewTimer(c.opts.Drain)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	live.closeAll()
	<-done
}

// serveConn carries one local connection. Its goroutine ends when both
// directions have ended; Serve's drain can hurry it by closing local.
func (c *Connector) serveConn(ctx context.Context, local net.Conn, live *liveSet, wg *sync.WaitGroup) {
	defer wg.Done()
	defer live.remove(local)
	defer local.Close()
	start := time.Now()
	remote, err := c.Dial(ctx)
	var de *DialError
	if err != nil && c.opts.Lease != nil && errors.As(err, &de) && de.Cause == ErrNotAllowed && de.Network != "" {
		if c.askLease(ctx, de.Network) {
			remote, err = c.dialLeased(ctx)
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			c.logFailure(err, local.RemoteAddr())
			c.dialed(err)
		}
		return
	}
	c.dialed(nil)
	c.logSuccess(remote)
	if !live.add(remote) { // Serve is closing everything
		remote.Close()
		return
	}
	defer live.remove(remote)
	defer remote.Close()
	up, down, err := join(local, remote)
	fields := []zap.Field{zap.Stringer("client", local.RemoteAddr()), zap.Int64("bytes_up", up),
		zap.Int64("bytes_down", down), zap.Duration("duration", time.Since(start))}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		c.log.Info("connection ended with an error", append(fields, zap.Error(err))...)
		return
	}
	c.log.Debug("connection closed", fields...)
}

// logFailure logs a dial failure, once per cause per repeatWindow.
func (c *Connector) logFailure(err error, client net.Addr) {
	var de *DialError
	var cause error = ErrTLS
	if errors.As(err, &de) {
		cause = de.Cause
	}
	now := time.Now()
	c.mu.Lock()
	f := &c.failed
	if f.cause == cause && now.Sub(f.at) < repeatWindow {
		f.suppressed++
		c.mu.Unlock()
		c.log.Debug("cannot connect to gatekeeper", zap.Stringer("client", client), zap.Error(err))
		return
	}
	repeats := f.suppressed
	*f = failure{cause: cause, at: now}
	c.mu.Unlock()
	fields := []zap.Field{zap.Stringer("client", client), zap.NamedError("cause", cause)}
	if repeats > 0 {
		fields = append(fields, zap.Int("same_failures_not_logged", repeats))
	}
	c.log.Error(err.Error(), fields...)
}

// leaseSettle bounds how long a connection waits, once a lease is got,
// for the gate to let it through.
const leaseSettle = 2 * time.Second

// dialLeased dials once a lease was got. The lease reaches the gate
// through the policy store's change feed: within milliseconds, and on
// another instance of a fleet within 100 ms, but not at once; so a refusal
// just after the lease is tried again, with a growing pause, for up to
// leaseSettle, rather than failing the application's first connection.
func (c *Connector) dialLeased(ctx context.Context) (*tls.Conn, error) {
	deadline := time.Now().Add(leaseSettle)
	pause := 10 * time.Millisecond
	for {
		remote, err := c.Dial(ctx)
		var de *DialError
		if err == nil || !errors.As(err, &de) || de.Cause != ErrNotAllowed || time.Now().Add(pause).After(deadline) {
			return remote, err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// askLease asks for a lease over network and reports whether one was got.
func (c *Connector) askLease(ctx context.Context, network string) bool {
	lctx, cancel := context.WithTimeout(ctx, 2*c.opts.Timeout)
	defer cancel()
	expires, err := c.opts.Lease(lctx, network)
	if err != nil {
		c.log.Warn("the gate refused this computer, and asking for a device lease failed", zap.Error(err))
		return false
	}
	c.mu.Lock()
	c.lease.network, c.lease.expires = network, expires
	c.mu.Unlock()
	select {
	case c.leased <- struct{}{}:
	default: // keepLease has a wake-up pending already
	}
	c.log.Info("the gate refused this computer's address; got a device lease for it",
		zap.String("network", network), zap.Time("until", expires))
	return true
}

// keepLease renews the lease at half its remaining life while connections
// are open, until ctx ends. Run by Serve on its own goroutine.
func (c *Connector) keepLease(ctx context.Context, live *liveSet) {
	for {
		c.mu.Lock()
		network, expires := c.lease.network, c.lease.expires
		c.mu.Unlock()
		wait := time.Minute // no lease yet: look again later
		if network != "" {
			wait = max(time.Until(expires)/2, c.renewFloor)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.leased: // a new lease: time the renewal from it
			t.Stop()
			continue
		case <-t.C:
		}
		if network != "" && live.len() > 0 {
			c.askLease(ctx, network)
		}
	}
}

func (c *Connector) dialed(err error) {
	if c.opts.Dialed != nil {
		c.opts.Dialed(err)
	}
}

// logSuccess logs the first success after a failure, or ever.
func (c *Connector) logSuccess(conn *tls.Conn) {
	c.mu.Lock()
	first := c.failed.cause != errConnected
	c.failed = failure{cause: errConnected}
	c.mu.Unlock()
	if !first {
		return
	}
	cs := conn.ConnectionState()
	fields := []zap.Field{zap.String("server", c.opts.Server), zap.String("tls", tls.VersionName(cs.Version))}
	if len(cs.PeerCertificates) > 0 {
		leaf := cs.PeerCertificates[0]
		fields = append(fields, zap.String("certificate", leaf.Subject.String()),
			zap.Stringer("pin", PinOf(leaf)), zap.Time("not_after", leaf.NotAfter))
	}
	c.log.Info("connected to gatekeeper", fields...)
}

// errConnected marks the last attempt as a success in Connector.failed.
var errConnected = errors.New("connected")

// join copies both ways until both directions have ended. When one side
// stops sending (EOF, or a TLS close_notify), the other side's writing half
// is closed, so a client that half-closes still gets its answer. An error
// either way closes both connections. up counts local → remote bytes.
func join(local, remote net.Conn) (up, down int64, err error) {
	done := make(chan halfResult, 2)
	go copyHalf(remote, local, true, done)
	go copyHalf(local, remote, false, done)
	for range 2 {
		r := <-done
		if r.up {
			up = r.n
		} else {
			down = r.n
		}
		if r.err != nil && err == nil {
			err = r.err
			local.Close()
			remote.Close()
		}
	}
	return up, down, err
}

// halfResult is how one direction of join ended.
type halfResult struct {
	n   int64
	err error
	up  bool
}

// copyHalf copies src to dst and, at src's end, closes dst for writing.
func copyHalf(dst, src net.Conn, up bool, done chan<- halfResult) {
	n, err := io.Copy(dst, src)
	if err == nil {
		err = closeWrite(dst)
	}
	done <- halfResult{n, err, up}
}

// closeWrite half-closes a TCP connection, or sends a TLS close_notify.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("close write: %w", err)
		}
		return nil
	}
	return c.Close()
}

// liveSet tracks open connections so that Serve can close them at the end.
type liveSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (s *liveSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *liveSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *liveSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *liveSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// addrNetwork is "tcp4" or "tcp6" for a TCP address; IPv4-mapped IPv6 is
// IPv4.
func addrNetwork(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return ""
	}
	if ta.IP.To4() != nil {
		return "tcp4"
	}
	return "tcp6"
}
