package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Engine is the policy the proxy enforces. *policy.Engine implements it.
type Engine interface {
	// Table returns the current policy; the proxy never keeps a copy.
	Table() *policy.Table
	// OnChange registers fn to hear about every new table.
	OnChange(fn policy.ChangeFunc)
	// RecordUse notes that a rule let a connection in.
	RecordUse(account string, rule policy.RuleID)
}

var _ Engine = (*policy.Engine)(nil)

// Options configure a Server. Listeners and Engine are required.
type Options struct {
	// Listeners to serve. Zero timeouts and limits take their defaults.
	Listeners []Listener
	// Engine decides who gets through.
	Engine Engine
	// TLS is the base server configuration of tls and http listeners,
	// typically certs.Manager.TLSConfig(); each listener clones it. It must
	// be set when any listener terminates TLS.
	TLS *tls.Config
	// ChallengePending reports whether an ACME TLS-ALPN-01 validation may
	// arrive (certs.Manager.ChallengePending). While it does, a client
	// denied at accept on a fixed-account tls or http listener gets its
	// ClientHello read, in case it is the CA; anyone else is still closed
	// before any certificate. If nil, never.
	ChallengePending func() bool
	// Logger; if nil, nothing is logged.
	Logger *zap.Logger
	// Registerer receives the proxy's metrics. If nil, none are registered.
	Registerer prometheus.Registerer
	// Web configures the sign-in of routes whose access needs a login;
	// required when there is one.
	Web *WebOptions
	// DenyLogBurst is how many denied connections are logged per
	// DenyLogInterval before the rest are only counted and summed up in one
	// line. If zero, 20; if DenyLogInterval is zero, 10s.
	DenyLogBurst    int
	DenyLogInterval time.Duration

	// portableAccept makes listeners use net.TCPListener.Accept even where a
	// cheaper raw accept loop exists; for comparing the two in benchmarks.
	portableAccept bool
	// noWatcher leaves idle directions of pipes in goroutines of their
	// own (half.resume) even where the watcher exists; for testing that
	// fallback.
	noWatcher bool
}

// Server is the proxy: every configured listener, the registry of live
// connections and the goroutine that closes those a policy change no
// longer allows.
type Server struct {
	opts   Options
	log    *zap.Logger
	engine Engine
	m      *metrics

	denyLog *rateLog // denials and other refusals
	upLog   *rateLog // unreachable upstreams
	webLog  *rateLog // refused web sign-ins

	mu        sync.Mutex
	listeners map[string]*listener
	running   bool
	reloads   chan reloadRequest
	stopped   chan struct{} // closed when Run returns

	reg   registry
	conns sync.WaitGroup // one per accepted connection not dropped at accept
	// watcher holds the idle directions of pipes without goroutines; nil
	// where there is none (they wait in goroutines of their own then).
	watcher *watcher

	recheck    chan struct{} // capacity 1: a policy change to look at
	recheckMu  sync.Mutex
	recheckAll bool
	recheckFor map[string]struct{}
}

// New prepares the listeners and binds their addresses, so that a port
// taken by something else is reported here and not later, and creates the
// epoll set where idle connections wait (Linux); Run serves them.
func New(ctx context.Context, opts Options) (*Server, error) {
	if opts.Engine == nil {
		return nil, errors.New("proxy: no policy engine")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.DenyLogBurst <= 0 {
		opts.DenyLogBurst = 20
	}
	if opts.DenyLogInterval <= 0 {
		opts.DenyLogInterval = 10 * time.Second
	}
	s := &Server{
		opts:       opts,
		log:        opts.Logger,
		engine:     opts.Engine,
		m:          newMetrics(),
		listeners:  make(map[string]*listener),
		reloads:    make(chan reloadRequest),
		stopped:    make(chan struct{}),
		recheck:    make(chan struct{}, 1),
		recheckFor: make(map[string]struct{}),
	}
	s.reg.init()
	s.denyLog = newRateLog(s.log, "refused connections", opts.DenyLogBurst, opts.DenyLogInterval)
	s.webLog = newRateLog(s.log, "refused web sign-ins", opts.DenyLogBurst, opts.DenyLogInterval)
	s.upLog = newRateLog(s.log, "unreachable upstreams", opts.DenyLogBurst, opts.DenyLogInterval)
	if opts.Registerer != nil {
		if err := s.m.register(opts.Registerer); err != nil {
			return nil, err
		}
	}
	lcs, err := s.buildAll(opts.Listeners)
	if err != nil {
		return nil, err
	}
	for _, lc := range lcs {
		l, err := s.newListener(ctx, lc)
		if err != nil {
			for _, l := range s.listeners {
				l.close()
			}
			return nil, err
		}
		s.listeners[lc.name] = l
	}
	if !opts.noWatcher {
		w, err := newWatcher(s.log)
		if err != nil && !errors.Is(err, errors.ErrUnsupported) {
			s.log.Warn("idle connections keep a goroutine each", zap.Error(err))
		}
		s.watcher = w
	}
	opts.Engine.OnChange(s.policyChanged)
	return s, nil
}

func (s *Server) buildAll(ls []Listener) ([]*listenerConfig, error) {
	var errs []error
	var out []*listenerConfig
	seen := map[string]bool{}
	for i, l := range ls {
		if seen[l.Name] {
			errs = append(errs, fmt.Errorf("listeners[%d]: name %q used twice", i, l.Name))
			continue
		}
		seen[l.Name] = true
		lc, err := s.buildConfig(l)
		if err != nil {
			errs = append(errs, fmt.Errorf("listeners[%d] (%s): %w", i, l.Name, err))
			continue
		}
		out = append(out, lc)
	}
	return out, errors.Join(errs...)
}

// Addr returns the address the named listener is bound to, nil if there
// is no such listener.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.listeners[name]; l != nil {
		return l.ln.Addr()
	}
	return nil
}

// LiveConnections returns how many of this instance's live connections of
// account come from an address closes reports. The admin service calls it
// to report how many connections a revocation is about to close (the
// proxies close them when the change reaches them): closes says whether a
// revoked network holds the address and no remaining rule does, which a
// list of single addresses could not say of an IPv6 /64. closes runs under
// the registry's lock: it must be quick and call nothing back.
func (s *Server) LiveConnections(account string, closes func(netip.Addr) bool) int {
	return s.reg.countFrom(account, closes)
}

// Run serves until ctx ends, then stops accepting, lets live connections
// finish for up to the listeners' longest drain timeout, closes the rest
// and returns once every connection is gone. It returns an error only if
// it was already running.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("proxy: already running")
	}
	s.running = true
	s.mu.Unlock()
	defer close(s.stopped)
	s.watcher.start()

	// Connections outlive ctx while they drain; connCtx ends when they
	// are closed for good.
	connCtx, closeConns := context.WithCancel(context.WithoutCancel(ctx))
	defer closeConns()
	bgCtx, stopBg := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); s.runRevoker(bgCtx) }()
	go func() { defer bg.Done(); s.runHousekeeping(bgCtx) }()

	s.mu.Lock()
	for _, l := range s.listeners {
		l.start(connCtx)
	}
	s.mu.Unlock()

	for {
		select {
		case req := <-s.reloads:
			req.done <- s.apply(connCtx, req.configs)
			continue
		case <-ctx.Done():
		}
		break
	}

	s.mu.Lock()
	ls := make([]*listener, 0, len(s.listeners))
	drain := time.Duration(0)
	for _, l := range s.listeners {
		ls = append(ls, l)
		drain = max(drain, l.cfg.Load().t.Drain)
	}
	s.mu.Unlock()
	s.log.Info("proxy stopping: no new connections, draining live ones", zap.Duration("drain", drain),
		zap.Int("live", s.reg.count()))
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	var stops sync.WaitGroup
	for _, l := range ls {
		stops.Add(1)
		go func() { defer stops.Done(); l.stop(dctx) }()
	}
	stops.Wait()
	idle := make(chan struct{})
	go func() { s.conns.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-dctx.Done():
		n := s.reg.killAll()
		s.log.Warn("drain timeout: closing the remaining connections", zap.Int("closed", n))
		closeConns()
		<-idle
	}
	s.watcher.close() // every connection is gone: nothing is dormant
	stopBg()
	bg.Wait()
	s.log.Info("proxy stopped")
	return nil
}

// runHousekeeping closes idle connections and writes the summaries of
// suppressed log lines.
func (s *Server) runHousekeeping(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.denyLog.tick()
			s.upLog.tick()
			s.webLog.tick()
			return
		case now := <-t.C:
			s.reg.sweepIdle(now)
			s.denyLog.tick()
			s.upLog.tick()
			s.webLog.tick()
		}
	}
}

// sweepEvery is how often idle connections are looked for; idle timeouts
// are precise to about this much plus a tenth of their length.
const sweepEvery = 100 * time.Millisecond

type reloadRequest struct {
	configs []*listenerConfig
	done    chan error
}

// Reload applies a new list of listeners without dropping live
// connections: a listener whose name, address and mode are unchanged gets
// the new routes, trusted proxies, timeouts and limits for the
// connections it accepts from now on; one whose address or mode changed is
// replaced (the new address is bound before the old one is closed when
// they differ); a listener no longer listed stops accepting. Connections
// already accepted keep their route and end as they would have. If the
// new list does not validate, nothing changes. Reload waits for Run to
// apply the change; it fails if Run is not running.
func (s *Server) Reload(ctx context.Context, ls []Listener) error {
	lcs, err := s.buildAll(ls)
	if err != nil {
		return fmt.Errorf("reload proxy: %w", err)
	}
	req := reloadRequest{configs: lcs, done: make(chan error, 1)}
	select {
	case s.reloads <- req:
	case <-s.stopped:
		return errors.New("reload proxy: not running")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) apply(connCtx context.Context, lcs []*listenerConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	want := make(map[string]*listenerConfig, len(lcs))
	for _, lc := range lcs {
		want[lc.name] = lc
	}
	// drainLater stops l accepting now, before Reload returns, and lets
	// its HTTP server, if any, finish in the background.
	drainLater := func(l *listener) {
		l.close()
		s.conns.Add(1) // keeps Run's drain waiting for this listener's stop
		go func() {
			defer s.conns.Done()
			ctx, cancel := context.WithTimeout(connCtx, l.cfg.Load().t.Drain)
			defer cancel()
			l.stop(ctx)
		}()
	}
	for name, l := range s.listeners {
		lc, keep := want[name]
		switch {
		case !keep:
			s.log.Info("listener removed: it stops accepting; its connections stay", zap.String("listener", name))
			delete(s.listeners, name)
			drainLater(l)
		case l.sameAddr(lc.addr) && lc.mode == l.mode:
			old := l.cfg.Swap(lc)
			old.closeIdle()
			s.log.Info("listener reconfigured", zap.String("listener", name), zap.Int("routes", lc.routes))
		default:
			sameAddr := l.sameAddr(lc.addr)
			if sameAddr {
				// Same address, another mode: free the address first.
				l.close()
			}
			nl, err := s.newListener(connCtx, lc)
			if err != nil {
				errs = append(errs, err)
				if sameAddr {
					delete(s.listeners, name)
					drainLater(l)
				}
				continue
			}
			drainLater(l)
			s.listeners[name] = nl
			nl.start(connCtx)
			s.log.Info("listener replaced", zap.String("listener", name), zap.String("addr", nl.ln.Addr().String()), zap.String("mode", lc.mode))
		}
	}
	for name, lc := range want {
		if _, ok := s.listeners[name]; ok {
			continue
		}
		nl, err := s.newListener(connCtx, lc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.listeners[name] = nl
		nl.start(connCtx)
	}
	return errors.Join(errs...)
}

// policyChanged is the engine's OnChange hook. It runs while the engine
// publishes, so it only notes which changed accounts hold connections
// here and wakes the revoker.
func (s *Server) policyChanged(_ *policy.Table, accounts []string) {
	if accounts != nil {
		// Most changed accounts have no connection here: the revoker
		// need not wake for them. One admitted after this look is
		// checked again against the published table (conn.admit).
		if accounts = s.reg.holding(accounts); len(accounts) == 0 {
			return
		}
	}
	s.recheckMu.Lock()
	if accounts == nil {
		s.recheckAll = true
	} else if !s.recheckAll {
		for _, a := range accounts {
			s.recheckFor[a] = struct{}{}
		}
	}
	s.recheckMu.Unlock()
	select {
	case s.recheck <- struct{}{}:
	default:
	}
}

// runRevoker re-checks the live connections of every account whose policy
// changed against the newest table and closes those it no longer allows.
func (s *Server) runRevoker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.recheck:
		}
		s.recheckMu.Lock()
		all, accts := s.recheckAll, s.recheckFor
		s.recheckAll, s.recheckFor = false, make(map[string]struct{})
		s.recheckMu.Unlock()
		for _, c := range s.reg.disallowed(s.engine.Table(), all, accts) {
			c.revoke()
		}
	}
}
