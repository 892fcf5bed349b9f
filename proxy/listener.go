package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// route joins the clients of one account to an upstream.
type route struct {
	sni      string // lowercased; "" for the default route
	account  string
	upstream string                 // host:port, tcp and tls modes
	proxy    *httputil.ReverseProxy // http mode
	fastAddr string                 // http mode: the upstream's address, if the HTTP/1.1 fast path serves it
	fastHost string                 // and its Host header
	// checkAddr: the account's address rules admit (access address);
	// web: a sign-in is needed too (access login), on the net/http path.
	checkAddr bool
	web       *webGate
	m         routeMetrics
}

// listenerConfig is everything a listener needs to handle a connection,
// built once per configuration and swapped whole on reload. A connection
// keeps the one it was accepted under.
type listenerConfig struct {
	name, addr, mode string
	routes           int
	fixed            *route // the only route, when there is no sni route: checked at accept
	def              *route // the route without sni, if any
	bySNI            map[string]*route
	wild             map[string]*route // "*.example.com" filed under "example.com"
	proxyProto       bool              // proxy_protocol configured
	trusted          policy.Prefixes
	upstreamProxy    bool
	t                Timeouts
	perIP, perAcct   int // -1 unlimited
	pending          int // connections not yet checked; -1 unlimited
	pendingPerIP     int // and per socket peer, trusted balancers aside
	tick             time.Duration

	helloTLS     *tls.Config // given to tls.Server: routes and checks in GetConfigForClient
	serveTLS     *tls.Config // the handshake of an admitted client
	deviceTLS    *tls.Config // tls mode: the same, asking for a device's certificate
	challengeTLS *tls.Config // the handshake of an ACME TLS-ALPN-01 validation
	transport    *http.Transport
}

func (s *Server) buildConfig(l Listener) (*listenerConfig, error) {
	t, lim := l.Timeouts.withDefaults(), l.Limits.withDefaults()
	lc := &listenerConfig{
		name: l.Name, addr: l.Addr, mode: l.Mode, routes: len(l.Routes),
		bySNI: make(map[string]*route), wild: make(map[string]*route),
		t: t, perIP: lim.PerIP, perAcct: lim.PerAccount,
		pending: lim.Pending, pendingPerIP: lim.PendingPerIP,
	}
	if l.Name == "" {
		return nil, errors.New("no name")
	}
	lc.tick = min(max(lc.t.Idle/10, 10*time.Millisecond), 30*time.Second)
	if pp := l.ProxyProtocol; pp != nil {
		lc.proxyProto = true
		lc.upstreamProxy = pp.Upstream
		trusted, err := policy.ParsePrefixes(pp.Trusted)
		if err != nil {
			return nil, fmt.Errorf("proxy_protocol.trusted%w", err)
		}
		lc.trusted = trusted
	}
	switch l.Mode {
	case ModeTCP:
	case ModeTLS, ModeHTTP:
		if s.opts.TLS == nil {
			return nil, fmt.Errorf("mode %s needs certificates (Options.TLS)", l.Mode)
		}
		lc.helloTLS = &tls.Config{GetConfigForClient: configForClient}
		lc.serveTLS = s.opts.TLS.Clone()
		lc.serveTLS.NextProtos = nil
		if l.Mode == ModeHTTP {
			lc.serveTLS.NextProtos = []string{"h2", "http/1.1"}
			lc.transport = s.newTransport(lc)
		}
		if l.Mode == ModeTLS {
			lc.deviceTLS = lc.serveTLS.Clone()
			lc.deviceTLS.ClientAuth = tls.RequestClientCert
			// A resumed session carries the certificate its full handshake
			// showed, or none: a ticket from before the account required a
			// device would pass with none. Each device proves its key anew.
			lc.deviceTLS.SessionTicketsDisabled = true
		}
		lc.challengeTLS = s.opts.TLS.Clone()
		lc.challengeTLS.NextProtos = []string{alpnChallenge}
	default:
		return nil, fmt.Errorf("unknown mode %q", l.Mode)
	}
	if len(l.Routes) == 0 {
		return nil, errors.New("no routes")
	}
	for i, rc := range l.Routes {
		if !policy.ValidAccountID(rc.Account) {
			return nil, fmt.Errorf("routes[%d]: %q is not an account", i, rc.Account)
		}
		r := &route{sni: normalizeName(rc.SNI), account: rc.Account, upstream: rc.Upstream, m: s.m.forRoute(l.Name, rc.Account)}
		checkAddr, login, err := ParseAccess(rc.Access)
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		r.checkAddr = checkAddr
		if login {
			switch {
			case l.Mode != ModeHTTP:
				return nil, fmt.Errorf("routes[%d]: access %s needs mode http", i, rc.Access)
			case r.sni == "":
				return nil, fmt.Errorf("routes[%d]: access %s needs an sni: the sign-in is bound to the application's host", i, rc.Access)
			}
			if err := s.opts.Web.check(); err != nil {
				return nil, fmt.Errorf("routes[%d]: %w", i, err)
			}
		}
		if l.Mode == ModeHTTP {
			target, err := upstreamURL(rc.Upstream)
			if err != nil {
				return nil, fmt.Errorf("routes[%d]: %w", i, err)
			}
			r.proxy = s.newReverseProxy(lc, r, target)
			if login {
				// Every request of a login route is checked on the
				// net/http path; the fast path never serves one.
				r.web = s.newWebGate(lc, r)
			} else {
				r.fastAddr, r.fastHost, _ = fastUpstream(target)
			}
		} else if _, _, err := net.SplitHostPort(rc.Upstream); err != nil {
			return nil, fmt.Errorf("routes[%d]: upstream %q: %w", i, rc.Upstream, err)
		}
		switch {
		case r.sni == "":
			if lc.def != nil {
				return nil, fmt.Errorf("routes[%d]: a second route without sni", i)
			}
			lc.def = r
		case strings.HasPrefix(r.sni, "*."):
			lc.wild[r.sni[2:]] = r
		default:
			lc.bySNI[r.sni] = r
		}
	}
	if len(lc.bySNI) == 0 && len(lc.wild) == 0 {
		lc.fixed = lc.def
	}
	return lc, nil
}

func upstreamURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream %q is not an http(s) URL or host:port", s)
	}
	return u, nil
}

// route picks the route for a server name: exact, then wildcard, then the
// default route. nil if none fits.
func (lc *listenerConfig) route(name string) *route {
	if name != "" {
		if r := lc.bySNI[name]; r != nil {
			return r
		}
		if _, parent, ok := strings.Cut(name, "."); ok {
			if r := lc.wild[parent]; r != nil {
				return r
			}
		}
	}
	return lc.def
}

// trusts reports whether peer is one of the listener's trusted load
// balancers.
func (lc *listenerConfig) trusts(peer netip.Addr) bool {
	return lc.trusted.Contains(peer)
}

func (lc *listenerConfig) closeIdle() {
	if lc.transport != nil {
		lc.transport.CloseIdleConnections()
	}
}

// listener is one bound address.
type listener struct {
	srv  *Server
	name string
	addr string // as configured
	mode string
	ln   *net.TCPListener
	raw  *rawSocket // the same socket for the raw accept loop, if there is one
	cfg  atomic.Pointer[listenerConfig]
	lm   *listenerMetrics

	limMu   sync.Mutex
	perIP   map[netip.Addr]int
	perAcct map[string]int

	pendMu    sync.Mutex
	pendingN  int                // connections not yet checked
	pendingBy map[netip.Addr]int // by socket peer

	httpq   *connQueue   // http mode: admitted connections for httpSrv
	httpSrv *http.Server // http mode

	started  bool
	done     chan struct{} // closed when the accept loop returns
	stopping atomic.Bool   // set by stop: HTTP/1.1 connections close when idle
}

func (s *Server) newListener(ctx context.Context, lc *listenerConfig) (*listener, error) {
	// No keep-alive on accepted sockets: a connection dropped at accept
	// should cost as few system calls as possible. Admitted ones get it.
	lcfg := net.ListenConfig{KeepAlive: -1}
	ln, err := lcfg.Listen(ctx, "tcp", lc.addr)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", lc.name, err)
	}
	l := &listener{
		srv: s, name: lc.name, addr: lc.addr, mode: lc.mode,
		ln:      ln.(*net.TCPListener),
		lm:      s.m.forListener(lc.name),
		perIP:   make(map[netip.Addr]int),
		perAcct: make(map[string]int),
		done:    make(chan struct{}),

		pendingBy: make(map[netip.Addr]int),
	}
	if !s.opts.portableAccept {
		l.raw = rawListener(l.ln)
	}
	l.cfg.Store(lc)
	if lc.mode == ModeHTTP {
		l.httpq = &connQueue{ch: make(chan net.Conn), closed: make(chan struct{}), addr: l.ln.Addr()}
		l.httpSrv = s.newHTTPServer(l, lc)
	}
	return l, nil
}

// start runs the accept loop (and the HTTP server) until stop.
func (l *listener) start(ctx context.Context) {
	l.started = true
	lc := l.cfg.Load()
	l.srv.log.Info("listening", zap.String("listener", l.name), zap.String("addr", l.ln.Addr().String()),
		zap.String("mode", l.mode), zap.Int("routes", lc.routes), zap.Bool("proxy_protocol", lc.proxyProto))
	if l.httpSrv != nil {
		go serveHTTP(l.httpSrv, l.httpq)
	}
	go l.accept(ctx)
}

func serveHTTP(srv *http.Server, q *connQueue) { srv.Serve(q) }

// stop closes the listener, waits for its accept loop and, in http mode,
// shuts the HTTP server down gracefully until ctx ends.
func (l *listener) stop(ctx context.Context) {
	l.close()
	if l.started {
		<-l.done
	}
	// Like the HTTP server's Shutdown, for the fast path's connections:
	// those waiting for a request close now, the others after their
	// response.
	l.stopping.Store(true)
	l.srv.reg.closeIdleHTTP(l)
	if l.httpSrv != nil {
		if err := l.httpSrv.Shutdown(ctx); err != nil {
			l.httpSrv.Close()
		}
	}
}

// sameAddr reports whether addr names what l is bound to: the configured
// string, or the address it got (for a port 0).
func (l *listener) sameAddr(addr string) bool {
	return addr == l.addr || addr == l.ln.Addr().String()
}

// close stops accepting. It runs in the goroutine that started the
// listener, or after it.
func (l *listener) close() {
	if l.raw != nil {
		l.raw.close()
	}
	l.ln.Close()
}

// acceptPortable is the accept loop for any platform.
func (l *listener) acceptPortable(ctx context.Context) {
	defer close(l.done)
	l.acceptPortableLoop(ctx)
}

func (l *listener) acceptPortableLoop(ctx context.Context) {
	var backoff time.Duration
	for {
		tc, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = l.acceptFailed(err, backoff)
			continue
		}
		backoff = 0
		peer := tc.RemoteAddr().(*net.TCPAddr).AddrPort()
		peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
		lc := l.cfg.Load()
		if l.dropAtAccept(lc, peer.Addr()) {
			tc.SetLinger(0)
			tc.Close()
			continue
		}
		key, ok := l.enterPending(lc, peer.Addr())
		if !ok {
			tc.SetLinger(0)
			tc.Close()
			continue
		}
		tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true})
		l.srv.conns.Add(1)
		go l.serveConn(ctx, tc, lc, peer, key)
	}
}

// acceptFailed logs an accept error (running out of file descriptors, say)
// and waits a little before the next attempt, longer each time.
func (l *listener) acceptFailed(err error, backoff time.Duration) time.Duration {
	backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
	if l.srv.denyLog.allow() {
		l.srv.log.Error("accept failed", zap.String("listener", l.name), zap.Error(err), zap.Duration("retry_in", backoff))
	}
	time.Sleep(backoff)
	return backoff
}

// dropAtAccept decides, before anything is read, whether a connection
// from client is denied: on a listener with a fixed account and no PROXY
// header to wait for. It counts and logs a denial.
func (l *listener) dropAtAccept(lc *listenerConfig, client netip.Addr) bool {
	if lc.fixed == nil || (lc.proxyProto && lc.trusts(client)) {
		return false
	}
	return l.deniedEarly(lc, client)
}

// deniedEarly checks client against the fixed account. A client the
// policy denies is dropped, unless an ACME validation may be under way on
// a listener that answers it; then its ClientHello is looked at, and it
// gets the challenge or nothing.
func (l *listener) deniedEarly(lc *listenerConfig, client netip.Addr) bool {
	r := lc.fixed
	if r == nil || !r.checkAddr || l.srv.engine.Table().Check(r.account, client).Verdict != policy.Denied {
		return false
	}
	if lc.challengeTLS != nil && l.srv.opts.ChallengePending != nil && l.srv.opts.ChallengePending() {
		return false
	}
	r.m.denied.Inc()
	l.srv.logRefused("connection denied", l.name, r.account, client, "", nil)
	return true
}

// logRefused logs a refused connection within the rate limit.
func (s *Server) logRefused(msg, listener, account string, client netip.Addr, sni string, err error) {
	if !s.denyLog.allow() {
		return
	}
	fields := []zap.Field{zap.String("listener", listener), zap.String("client", client.String())}
	if account != "" {
		fields = append(fields, zap.String("account", account))
	}
	if sni != "" {
		fields = append(fields, zap.String("sni", sni))
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	s.log.Info(msg, fields...)
}

// acquire takes a connection slot for client and account within the
// limits of lc; false if one is full.
func (l *listener) acquire(lc *listenerConfig, client netip.Addr, account string) (ok bool, which string) {
	l.limMu.Lock()
	defer l.limMu.Unlock()
	if lc.perIP >= 0 && l.perIP[client] >= lc.perIP {
		return false, "per_ip"
	}
	if lc.perAcct >= 0 && l.perAcct[account] >= lc.perAcct {
		return false, "per_account"
	}
	l.perIP[client]++
	l.perAcct[account]++
	return true, ""
}

func (l *listener) release(client netip.Addr, account string) {
	l.limMu.Lock()
	defer l.limMu.Unlock()
	if l.perIP[client]--; l.perIP[client] <= 0 {
		delete(l.perIP, client)
	}
	if l.perAcct[account]--; l.perAcct[account] <= 0 {
		delete(l.perAcct, account)
	}
}

// enterPending takes a slot among the connections not yet checked for a
// socket from peer: one awaiting its PROXY header or ClientHello holds
// buffers and a goroutine, and nothing else bounds how many a slow
// client farm keeps waiting until the handshake timeout. key is what the
// slot is filed under (invalid for a trusted balancer, which carries
// many clients and is bounded overall only); ok is false if a bound is
// full, and then the caller resets the socket at once, having read
// nothing.
func (l *listener) enterPending(lc *listenerConfig, peer netip.Addr) (key netip.Addr, ok bool) {
	if !lc.proxyProto || !lc.trusts(peer) {
		key = peer
	}
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	if lc.pending >= 0 && l.pendingN >= lc.pending || key.IsValid() && lc.pendingPerIP >= 0 && l.pendingBy[key] >= lc.pendingPerIP {
		full := l.pendingN >= lc.pending
		l.lm.errors[reasonPending].Inc()
		if l.srv.denyLog.allow() {
			which := "pending_per_ip"
			if full {
				which = "pending"
			}
			l.srv.log.Info("connection refused: too many connections awaiting their check", zap.String("listener", l.name),
				zap.String("client", peer.String()), zap.String("limit", which))
		}
		return key, false
	}
	l.pendingN++
	if key.IsValid() {
		l.pendingBy[key]++
	}
	l.lm.pending.Set(float64(l.pendingN))
	return key, true
}

// leavePending gives back a slot enterPending took under key.
func (l *listener) leavePending(key netip.Addr) {
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	l.pendingN--
	if key.IsValid() {
		if l.pendingBy[key]--; l.pendingBy[key] <= 0 {
			delete(l.pendingBy, key)
		}
	}
	l.lm.pending.Set(float64(l.pendingN))
}

// connQueue is the net.Listener an http listener's HTTP server takes its
// connections from: admitted clients, their TLS handshake done.
type connQueue struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
