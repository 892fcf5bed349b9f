package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/internal/rawsock"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// alpnChallenge is the ALPN protocol of an ACME TLS-ALPN-01 validation.
const alpnChallenge = "acme-tls/1"

// refusal is an error the proxy ends a connection with on purpose. It is
// counted and logged where it is decided, so a handshake that fails with
// one is not counted again as a failed handshake.
type refusal string

func (r refusal) Error() string { return string(r) }

var (
	errDenied  error = refusal("denied by policy")
	errNoRoute error = refusal("no route for this server name")
	errLimit   error = refusal("connection limit reached")
	errKilled        = errors.New("connection closed")
)

func isRefusal(err error) bool {
	var r refusal
	return errors.As(err, &r)
}

// spliceChunk bounds one splice call, so that the bytes moved are counted
// in the metrics at least this often.
const spliceChunk = 4 << 20

// phase is where a connection is in its life, which says what it holds
// and who may end it. Only the goroutine serving the connection moves it
// on; others (the idle sweep, a listener stopping) only read it. finish
// moves it to phaseDone once and gives back what the phase it left held.
type phase uint32

const (
	phasePending   phase = iota // not yet checked: holds a slot among the pending
	phaseChallenge              // an ACME TLS-ALPN-01 validation: still holds its pending slot
	phaseChecked                // checked and refused, or about to be admitted: holds nothing
	phaseAdmitted               // holds a limit slot and a registry entry
	phaseActive                 // also counted in connections_active
	phaseIdle                   // active; the HTTP/1.1 fast path waits for a request
	phasePiping                 // active and moving bytes: the idle sweep watches it
	phaseHTTP                   // active and served by the listener's HTTP server, which ends it
	phaseDone                   // finished: everything given back
)

// conn is one client connection. It is the net.Conn that tls.Server reads
// the client through: bytes already read while looking at the PROXY
// header come first, then the socket.
//
// Each mode has one handler that owns the connection's end and finishes
// it: serveTCP and serveTLS until they start a pipe, whose direction that
// ends last finishes it (pipe.go), serveHTTP1 (the fast path), or the
// listener's HTTP server (phaseHTTP). serveConn owns it until it starts
// one of them.
type conn struct {
	tcp    *net.TCPConn
	sock   *rawsock.IO // tcp's reads and writes on the copy path (rawsock)
	ln     *listener
	lc     *listenerConfig // the listener's configuration when accepted
	peer   netip.AddrPort  // the socket peer
	client netip.AddrPort  // the verified client: the peer or the PROXY header's source
	dst    netip.AddrPort  // the address the client connected to, from a PROXY header
	start  time.Time
	cancel context.CancelFunc // ends the upstream dial

	prefix     []byte // read from the socket, not yet consumed
	untrusted  bool   // a peer of a PROXY listener that is no trusted balancer
	sni        string
	pendingKey netip.Addr         // its slot among the connections not yet checked
	route      *route             // set once admitted
	gate       *h1Gate            // its reader, in HTTP/1 on the HTTP server
	ask        policy.DeviceCheck // what the account asked of its device when admitted

	wmu  sync.Mutex // serializes writes to the client
	cork *[]byte    // while set, Write collects instead of writing

	phase      atomic.Uint32 // a phase
	killed     atomic.Bool   // its sockets are closed
	revoked    atomic.Bool   // a policy change closed it (counted once)
	up         atomic.Pointer[net.TCPConn]
	pipes      atomic.Pointer[piping] // set once piping
	lastActive atomic.Int64           // Unix nanoseconds
	// shown is the device a tls client presented (see checkDevice); nil
	// until its handshake is done.
	shown atomic.Pointer[shownDevice]
	// web is the person whose requests it last carried, on a login route.
	web atomic.Pointer[webSeen]
}

func (c *conn) at() phase     { return phase(c.phase.Load()) }
func (c *conn) enter(p phase) { c.phase.Store(uint32(p)) }

var _ net.Conn = (*conn)(nil)

func (c *conn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.sock.Read(b)
}

// Write writes to the client, or, while the connection is corked,
// collects what TLS writes so that several records leave in one system
// call. Writes are serialized, so that nothing overtakes corked records.
func (c *conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.cork != nil {
		*c.cork = append(*c.cork, b...)
		return len(b), nil
	}
	return c.sock.Write(b)
}

// corkBufs lend the buffers of corked writes: a copy buffer's worth of
// plaintext and the records' overhead.
var corkBufs = sync.Pool{New: func() any { b := make([]byte, 0, copyBufSize+1024); return &b }}

// corked writes p through tc (the TLS connection over c) with the records
// it makes sent in one write.
func (c *conn) corked(tc *tls.Conn, p []byte) (int, error) {
	c.wmu.Lock()
	c.cork = corkBufs.Get().(*[]byte)
	c.wmu.Unlock()
	n, err := tc.Write(p)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	buf := c.cork
	c.cork = nil
	if len(*buf) > 0 {
		if _, werr := c.sock.Write(*buf); err == nil {
			err = werr
		}
	}
	if cap(*buf) <= copyBufSize+1024 {
		*buf = (*buf)[:0]
		corkBufs.Put(buf)
	}
	return n, err
}

// Close closes the client and upstream sockets. The goroutine serving the
// connection notices and finishes it, except on the listener's HTTP
// server, where Close is the end.
func (c *conn) Close() error {
	c.kill()
	if c.at() == phaseHTTP {
		c.finish()
	}
	return nil
}

func (c *conn) LocalAddr() net.Addr { return c.tcp.LocalAddr() }

// RemoteAddr is the verified client address, which is what the HTTP
// server reports as the request's RemoteAddr.
func (c *conn) RemoteAddr() net.Addr               { return net.TCPAddrFromAddrPort(c.client) }
func (c *conn) SetDeadline(t time.Time) error      { return c.tcp.SetDeadline(t) }
func (c *conn) SetReadDeadline(t time.Time) error  { return c.tcp.SetReadDeadline(t) }
func (c *conn) SetWriteDeadline(t time.Time) error { return c.tcp.SetWriteDeadline(t) }

// serveConn handles one connection from accept until it starts the
// handler of its listener's mode, which owns its end from then on. It
// holds a slot among the connections not yet checked (filed under
// pendingKey) until the check, or its end.
func (l *listener) serveConn(ctx context.Context, tc *net.TCPConn, lc *listenerConfig, peer netip.AddrPort, pendingKey netip.Addr) {
	ctx, cancel := context.WithCancel(ctx)
	c := &conn{tcp: tc, ln: l, lc: lc, peer: peer, client: peer, start: time.Now(), cancel: cancel, pendingKey: pendingKey}
	c.sock = rawsock.New(tc)
	l.srv.reg.track(c)
	tc.SetDeadline(c.start.Add(lc.t.Handshake))
	if !c.readFront() {
		c.finish()
		return
	}
	if lc.mode == ModeTCP {
		c.serveTCP(ctx)
		return
	}
	tlc := c.handshake(ctx)
	if tlc == nil {
		c.finish()
		return
	}
	if lc.mode == ModeHTTP && (c.route.fastAddr == "" || c.route.web != nil || tlc.ConnectionState().NegotiatedProtocol == "h2") {
		var nc net.Conn = tlc // HTTP/2 frames its own messages
		if tlc.ConnectionState().NegotiatedProtocol != "h2" {
			c.gate = newH1Gate(tlc, nil, c.ln.lm.errors[reasonBadRequest])
			nc = c.gate
		}
		if !c.toHTTPServer(nc) {
			c.finish()
		}
		return
	}
	// The handshake grew this goroutine's stack to tens of KiB, which the
	// runtime gives back only slowly; an idle connection would hold it for
	// hours. The rest of the connection's life runs in a fresh goroutine,
	// on a small stack, and this one's goes back to the pool for the next
	// handshake.
	if lc.mode == ModeHTTP {
		go c.serveHTTP1(ctx, tlc)
	} else {
		go c.serveTLS(ctx, tlc)
	}
}

// readFront reads what comes before the client's own bytes on a listener
// that expects a PROXY header from its trusted balancers, and checks a
// fixed route's account against the client it names. It reports whether
// the connection may go on.
func (c *conn) readFront() bool {
	lc := c.lc
	if !lc.proxyProto {
		return true
	}
	if !lc.trusts(c.peer.Addr()) {
		c.untrusted = true
		return true
	}
	h, rest, err := readProxyHeader(c.tcp)
	if err != nil {
		c.refuse(reasonProxyHeader, "", err)
		return false
	}
	c.prefix = rest
	if h.src.IsValid() {
		c.client, c.dst = h.src, h.dst
	}
	if c.ln.deniedEarly(lc, c.client.Addr()) {
		c.reset()
		return false
	}
	return true
}

// toHTTPServer gives the connection to the listener's HTTP server, which
// ends it from then on; false if the server is closed, and then the
// caller still owns the end.
func (c *conn) toHTTPServer(nc net.Conn) bool {
	c.enter(phaseHTTP)
	select {
	case c.ln.httpq.ch <- nc:
		return true
	case <-c.ln.httpq.closed:
		c.enter(phaseActive)
		return false
	}
}

// serveTCP is the handler of tcp listeners. It routes by the
// ClientHello's server name when the listener has sni routes, checks, and
// joins the client to the upstream, replaying what was read untouched.
func (c *conn) serveTCP(ctx context.Context) {
	up := c.joinTCP(ctx)
	if up == nil {
		c.finish()
		return
	}
	// The PROXY header sniff for an untrusted peer of a fixed route
	// happens in the copy: the upstream may speak first.
	c.pipe(c.tcp, up, c.untrusted && c.lc.fixed != nil)
}

// joinTCP routes, checks and dials the upstream of a tcp connection; nil
// if the connection is done.
func (c *conn) joinTCP(ctx context.Context) *net.TCPConn {
	r := c.lc.fixed
	if r == nil {
		if c.untrusted && !c.sniffHeader() {
			return nil
		}
		raw, name, err := readClientHello(c, nil)
		c.prefix = raw
		switch {
		case err == nil:
			c.sni = name
			r = c.lc.route(name)
		case errors.Is(err, errNotTLS) || errors.Is(err, errBadHello):
			// Not TLS, or TLS we cannot read: only the default route fits.
			r = c.lc.def
		default:
			c.refuse(reasonClientHello, "", err)
			return nil
		}
		if r == nil {
			c.refuse(reasonNoRoute, "", errNoRoute)
			return nil
		}
	}
	if err := c.admit(r); err != nil {
		c.reset()
		return nil
	}
	c.tcp.SetDeadline(time.Time{})
	up, err := c.dial(ctx)
	if err != nil {
		return nil
	}
	return up
}

// handshake completes the TLS handshake of a tls or http listener, which
// routes and checks in configForClient. It returns nil if the connection
// is done: refused, or an ACME validation answered.
func (c *conn) handshake(ctx context.Context) *tls.Conn {
	if c.untrusted && !c.sniffHeader() {
		return nil
	}
	tc := tls.Server(c, c.lc.helloTLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		if isRefusal(err) {
			c.reset() // counted where it was refused
		} else {
			c.refuse(reasonHandshake, c.sni, err)
		}
		return nil
	}
	if c.at() == phaseChallenge {
		c.ln.srv.log.Info("answered an ACME TLS-ALPN-01 validation", zap.String("listener", c.ln.name),
			zap.String("sni", c.sni), zap.String("client", c.client.Addr().String()))
		return nil
	}
	c.ln.lm.handshake.Observe(time.Since(c.start).Seconds())
	c.tcp.SetDeadline(time.Time{})
	if c.lc.mode == ModeTLS && !c.checkDevice(tc) {
		return nil
	}
	return tc
}

// serveTLS is the handler of tls listeners after the handshake: a pipe
// to the upstream.
func (c *conn) serveTLS(ctx context.Context, tc *tls.Conn) {
	up, err := c.dial(ctx)
	if err != nil {
		c.finish()
		return
	}
	c.pipe(tc, up, false)
}

// configForClient is every tls and http listener's GetConfigForClient: it
// routes by server name and checks the client before any key exchange or
// certificate. A denied client is reset: it gets no byte, not even an
// alert.
func configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	c, ok := hello.Conn.(*conn)
	if !ok {
		return nil, errors.New("proxy: unexpected connection type")
	}
	c.sni = normalizeName(hello.ServerName)
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == alpnChallenge {
		// An ACME validation: it gets the challenge certificate if one is
		// pending for this name, else no certificate at all.
		c.enter(phaseChallenge)
		return c.lc.challengeTLS, nil
	}
	r := c.lc.route(c.sni)
	if r == nil {
		c.refuse(reasonNoRoute, c.sni, errNoRoute)
		return nil, errNoRoute
	}
	if err := c.admit(r); err != nil {
		return nil, err
	}
	if c.ask != policy.DeviceAny && c.lc.deviceTLS != nil {
		return c.lc.deviceTLS, nil
	}
	return c.lc.serveTLS, nil
}

// sniffHeader makes sure a peer that is not a trusted load balancer does
// not send a PROXY header, before anything else reads from it. It reports
// whether the connection may go on.
func (c *conn) sniffHeader() bool {
	b, err := sniffProxyHeader(c, nil)
	c.prefix = b
	switch {
	case err == nil:
		return true
	case errors.Is(err, errUntrustedProxyHeader):
		c.refuse(reasonProxyHeader, "", err)
	case c.lc.mode == ModeTCP:
		c.refuse(reasonClientHello, "", err)
	default:
		c.refuse(reasonHandshake, "", err)
	}
	return false
}

// admit checks the client against the route's account, takes a slot
// within the limits and files the connection in the registry, where policy
// changes reach it. It counts the verdict.
func (c *conn) admit(r *route) error {
	c.checked()
	s := c.ln.srv
	client := c.client.Addr()
	if r.checkAddr && s.engine.Table().Check(r.account, client).Verdict == policy.Denied {
		return c.deny(r)
	}
	if ok, which := c.ln.acquire(c.lc, client, r.account); !ok {
		c.ln.lm.errors[reasonLimit].Inc()
		s.logRefused("connection limit reached", c.ln.name, r.account, client, c.sni, errors.New(which))
		c.reset()
		return errLimit
	}
	c.route = r
	c.enter(phaseAdmitted)
	c.touch()
	s.reg.admit(c)
	// A change published between the check above and the registration
	// would have missed this connection: check again now that it cannot.
	d := policy.Decision{Verdict: policy.Allowed} // a login route: the sign-in decides, per request
	if r.checkAddr {
		d = s.engine.Table().Check(r.account, client)
	}
	if d.Verdict == policy.Denied {
		return c.deny(r)
	}
	r.m.active.Inc()
	c.enter(phaseActive)
	c.ask = d.Device
	if d.Verdict == policy.Monitored {
		r.m.monitored.Inc()
		s.logRefused("connection let through in monitor mode; mode on would deny it", c.ln.name, r.account, client, c.sni, nil)
	} else {
		r.m.allowed.Inc()
	}
	if d.Rule != 0 {
		s.engine.RecordUse(r.account, d.Rule)
	}
	return nil
}

// checked ends the connection's wait for its check: it gives back its
// slot among the pending ones.
func (c *conn) checked() {
	if c.phase.CompareAndSwap(uint32(phasePending), uint32(phaseChecked)) {
		c.ln.leavePending(c.pendingKey)
	}
}

func (c *conn) deny(r *route) error {
	r.m.denied.Inc()
	c.ln.srv.logRefused("connection denied", c.ln.name, r.account, c.client.Addr(), c.sni, nil)
	// Reset now: inside GetConfigForClient, crypto/tls would otherwise
	// answer the error with an alert, and a denied client gets nothing.
	c.reset()
	return errDenied
}

// refuse counts and logs a connection ending early, and resets it.
func (c *conn) refuse(reason, sni string, err error) {
	c.ln.lm.errors[reason].Inc()
	account := ""
	if c.route != nil {
		account = c.route.account
	}
	if reason == reasonHandshake && (errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF)) {
		err = errors.New("client did not complete the TLS handshake in time")
	}
	c.ln.srv.logRefused("connection refused: "+reason, c.ln.name, account, c.client.Addr(), sni, err)
	c.reset()
}

// reset closes the client socket with a TCP reset rather than a FIN: it is
// cheaper for us and tells the client at once.
func (c *conn) reset() {
	c.tcp.SetLinger(0)
	c.kill()
}

// dial connects to the route's upstream within the dial timeout and sends
// the PROXY header if the listener is configured to.
func (c *conn) dial(ctx context.Context) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: c.lc.t.Dial}
	start := time.Now()
	nc, err := d.DialContext(ctx, "tcp", c.route.upstream)
	c.ln.lm.dial.Observe(time.Since(start).Seconds())
	if err != nil {
		c.ln.lm.errors[reasonUpstream].Inc()
		if !c.killed.Load() && c.ln.srv.upLog.allow() {
			c.ln.srv.log.Warn("upstream unreachable: closing the client connection",
				zap.String("listener", c.ln.name), zap.String("account", c.route.account),
				zap.String("upstream", c.route.upstream), zap.Duration("dial_timeout", c.lc.t.Dial), zap.Error(err))
		}
		return nil, err
	}
	up := nc.(*net.TCPConn)
	c.up.Store(up)
	if c.killed.Load() { // revoked while dialing
		up.Close()
		return nil, errKilled
	}
	// In tcp mode what was read (the ClientHello, bytes after a PROXY
	// header) goes first, untouched; in tls mode it belongs to the TLS
	// stream and stays where it is.
	var replay []byte
	if c.lc.mode == ModeTCP {
		replay, c.prefix = c.prefix, nil
	}
	if c.lc.upstreamProxy {
		dst := c.dst
		if !dst.IsValid() {
			dst = c.tcp.LocalAddr().(*net.TCPAddr).AddrPort()
		}
		err = writeProxyHeader(up, c.client, dst, replay)
	} else if len(replay) > 0 {
		_, err = up.Write(replay)
	}
	if err != nil {
		c.kill()
		return nil, err
	}
	return up, nil
}

func (c *conn) touch() { c.lastActive.Store(time.Now().UnixNano()) }

func (c *conn) idleSince(now time.Time) time.Duration {
	return time.Duration(now.UnixNano() - c.lastActive.Load())
}

// idleOut closes a connection that moved nothing for the idle timeout.
func (c *conn) idleOut() {
	if c.killed.Load() {
		return
	}
	c.ln.lm.errors[reasonIdle].Inc()
	c.ln.srv.log.Debug("closing idle connection", zap.String("listener", c.ln.name),
		zap.String("account", c.route.account), zap.String("client", c.client.Addr().String()),
		zap.Duration("idle_timeout", c.lc.t.Idle))
	c.kill()
}

// revoke closes a connection that the policy no longer allows.
func (c *conn) revoke() {
	if !c.revoked.CompareAndSwap(false, true) {
		return
	}
	c.route.m.revoked.Inc()
	c.ln.srv.log.Info("connection revoked: the policy no longer allows it",
		zap.String("listener", c.ln.name), zap.String("account", c.route.account),
		zap.String("client", c.client.Addr().String()), zap.Duration("age", time.Since(c.start)))
	c.kill()
}

// kill closes both sockets at once. The goroutines reading them notice;
// the directions of a pipe dormant in the watcher are ended here. The
// sockets are closed first: a direction that goes dormant after the
// look at the watcher finds its socket closed and cannot.
func (c *conn) kill() {
	if !c.killed.CompareAndSwap(false, true) {
		return
	}
	c.cancel()
	c.tcp.Close()
	if up := c.up.Load(); up != nil {
		up.Close()
	}
	if p := c.pipes.Load(); p != nil {
		p.endDormant(c.ln.srv.watcher)
	}
}

// finish releases everything the connection held. It runs once, from
// the handler that owns the connection's end.
func (c *conn) finish() {
	was := phase(c.phase.Swap(uint32(phaseDone)))
	if was == phaseDone {
		return
	}
	c.kill()
	if was == phasePending || was == phaseChallenge {
		c.ln.leavePending(c.pendingKey)
	}
	s := c.ln.srv
	admitted := was >= phaseAdmitted
	s.reg.forget(c, admitted)
	if admitted {
		c.ln.release(c.client.Addr(), c.route.account)
	}
	if was >= phaseActive {
		c.route.m.active.Dec()
	}
	s.conns.Done()
}
