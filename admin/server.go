package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatekeeper-dev/gatekeeper/device"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// ServerOptions configure a Server. Service is required; TLSConfig is
// required by Serve (Handler works without it).
type ServerOptions struct {
	Service *Service
	// TLSConfig supplies the admin listener's certificate. It is cloned.
	TLSConfig *tls.Config
	// TrustedProxies are the peers whose X-Forwarded-For is believed. If
	// empty, the socket peer is the client.
	TrustedProxies policy.Prefixes
	// OperatorToken authenticates the operator. If empty, the operator
	// calls answer 401 to everyone.
	OperatorToken string
	// Hosts, if not empty, are the only Host names (without port) the API
	// answers to; anything else is refused 403 bad_origin, which defeats
	// DNS rebinding. If empty, any Host is accepted. Either way, a request
	// with an Origin header is refused unless the origin is https and its
	// host is the request's Host or one of Hosts.
	Hosts []string
	// Logger; if nil, nothing is logged.
	Logger *zap.Logger
	// Registerer receives gatekeeper_admin_requests_total. If nil, the
	// counter is kept but not exported.
	Registerer prometheus.Registerer
	// RequestTimeout bounds the work of one call. If zero, 15s.
	RequestTimeout time.Duration
	// MaxBodyBytes bounds a request body; larger ones answer 413. If zero,
	// 64 KiB.
	MaxBodyBytes int64
	// Pages, if set, serves every path outside /api/: the web pages
	// (package admin/web), which bring their own security headers, Host
	// and Origin checks and errors. If nil, those paths answer the API's
	// 404.
	Pages http.Handler
}

// Server is the HTTPS admin API over a Service.
type Server struct {
	svc      *Service
	opts     ServerOptions
	log      *zap.Logger
	opHash   [sha256.Size]byte
	hasOp    bool
	mux      *http.ServeMux
	requests *prometheus.CounterVec
}

// NewServer returns a Server.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Service == nil {
		return nil, errors.New("admin server: no service")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 15 * time.Second
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 10
	}
	if opts.TLSConfig != nil {
		opts.TLSConfig = opts.TLSConfig.Clone()
	}
	opts.TrustedProxies = append(policy.Prefixes(nil), opts.TrustedProxies...)
	opts.Hosts = append([]string(nil), opts.Hosts...)
	s := &Server{
		svc:  opts.Service,
		opts: opts,
		log:  opts.Logger,
		mux:  http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_admin_requests_total",
			Help: "Admin API requests, by route pattern and HTTP status.",
		}, []string{"route", "code"}),
	}
	if opts.OperatorToken != "" {
		s.opHash, s.hasOp = sha256.Sum256([]byte(opts.OperatorToken)), true
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(s.requests); err != nil {
			return nil, fmt.Errorf("admin server: register metrics: %w", err)
		}
	}
	for _, rt := range s.routes() {
		s.mux.Handle(rt.pattern, s.wrap(rt))
	}
	return s, nil
}

// Handler returns the API's handler, for tests and for mounting beside the
// web pages.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Serve answers HTTPS on ln until ctx ends, then shuts down, giving calls in
// flight a few seconds.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("admin server: no TLS configuration")
	}
	tc := s.opts.TLSConfig.Clone()
	if tc.MinVersion < tls.VersionTLS12 {
		tc.MinVersion = tls.VersionTLS12
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         tc,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      s.opts.RequestTimeout + 15*time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    32 << 10,
	}
	// Handshake failures from scanners are noise, not errors.
	if l, err := zap.NewStdLogAt(s.log, zapcore.DebugLevel); err == nil {
		srv.ErrorLog = l
	}
	s.log.Info("admin API listening", zap.String("addr", ln.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin listener: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("admin listener shutdown: %w", err)
	}
	return nil
}

// call is one request's context: who, from where.
type call struct {
	actor Actor
	ip    netip.Addr
}

// handler serves one route. It returns an error instead of writing one;
// the wrapper writes every error the same way.
type handler func(w http.ResponseWriter, r *http.Request, c *call) error

type route struct {
	pattern string
	// public routes need no token (login).
	public bool
	// device routes are the only ones a device's signed request may
	// reach; they need no token, the handler checks the signature.
	device bool
	// held routes stay open to a person the account requires to enrol a
	// second factor who has none yet (Actor.MustEnrollMFA): enrolment and
	// what it needs. Every other route answers 403
	// mfa_enrollment_required, here, in one place for the whole API.
	held bool
	h    handler
}

// errDeviceKey answers a device's signed request anywhere but a device
// route: a device key can do nothing else on the admin listener.
var errDeviceKey = &Error{Status: http.StatusForbidden, Code: CodeForbidden,
	Msg: "a device key may only ask for a lease"}

// serveHTTP routes a request. Unknown paths and methods get the same JSON
// errors as everything else.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	// A device key reaches only device routes (serveRoute checks the
	// matched ones); never a page, and never an unmatched path.
	deviceKey := device.IsDeviceAuth(r.Header.Get("Authorization"))
	isAPI := r.URL.Path == "/api" || strings.HasPrefix(r.URL.Path, "/api/")
	if s.opts.Pages != nil && !isAPI && !deviceKey {
		s.opts.Pages.ServeHTTP(w, r)
		return
	}
	if _, pattern := s.mux.Handler(r); pattern != "" && isAPI {
		s.mux.ServeHTTP(w, r)
		return
	}
	err := error(errNotFound)
	if deviceKey {
		err = errDeviceKey
	} else if allow, ok := MethodNotAllowed(s.mux, r); ok {
		w.Header().Set("Allow", allow)
		err = errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s is not allowed here", r.Method)
	}
	setSecurityHeaders(w)
	code := s.writeError(w, r, "unmatched", err)
	s.requests.WithLabelValues("unmatched", strconv.Itoa(code)).Inc()
}

// wrap turns a route into an http.Handler: security headers, Host and
// Origin checks, client address, body limit, deadline, authentication,
// one error writer, metrics and a log line.
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &StatusWriter{ResponseWriter: w}
		c := &call{}
		err := s.serveRoute(sw, r, rt, c)
		if err != nil {
			sw.Code = s.writeError(sw, r, rt.pattern, err)
		}
		if sw.Code == 0 {
			sw.Code = http.StatusOK
		}
		s.requests.WithLabelValues(rt.pattern, strconv.Itoa(sw.Code)).Inc()
		if ce := s.log.Check(zapcore.DebugLevel, "admin request"); ce != nil {
			ce.Write(zap.String("route", rt.pattern), zap.Int("status", sw.Code),
				zap.Duration("took", time.Since(start)), zap.String("client_ip", c.ip.String()),
				zap.String("role", c.actor.Role), zap.String("account", c.actor.Account),
				zap.String("username", c.actor.Username))
		}
	})
}

func (s *Server) serveRoute(w http.ResponseWriter, r *http.Request, rt route, c *call) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			err = fmt.Errorf("panic in %s: %v", rt.pattern, p)
		}
	}()
	setSecurityHeaders(w)
	if err := CheckOrigin(r, s.opts.Hosts); err != nil {
		return err
	}
	ip, err := ClientIP(r, s.opts.TrustedProxies)
	if err != nil {
		return badRequest(CodeUnknownClientIP, "your address could not be determined")
	}
	c.ip = ip
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout)
	defer cancel()
	r = r.WithContext(ctx)
	if device.IsDeviceAuth(r.Header.Get("Authorization")) && !rt.device {
		return errDeviceKey // serveHTTP stops these first; this keeps Handler() alike
	}
	if !rt.public && !rt.device {
		if c.actor, err = s.authenticate(ctx, r, ip); err != nil {
			return err
		}
		if c.actor.MustEnrollMFA && !rt.held {
			return errEnrollRequired
		}
	}
	return rt.h(w, r, c)
}

// authenticate reads the bearer token: the operator's, or a session's.
func (s *Server) authenticate(ctx context.Context, r *http.Request, ip netip.Addr) (Actor, error) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Actor{}, errUnauthorized
	}
	token = strings.TrimSpace(token)
	if !strings.Contains(token, ".") {
		// Not a session token; perhaps the operator's. Comparing digests
		// keeps the time independent of the token's length and content.
		sum := sha256.Sum256([]byte(token))
		if s.hasOp && subtle.ConstantTimeCompare(sum[:], s.opHash[:]) == 1 {
			return Operator(ip), nil
		}
		return Actor{}, errUnauthorized
	}
	return s.svc.Authenticate(ctx, token, ip)
}

// CheckOrigin refuses, with 403 bad_origin, a Host name that is not one of
// hosts (when hosts is not empty) and any cross-origin browser request: one
// whose Origin header is not https and neither the request's Host nor one
// of hosts. The API and the web pages share it.
func CheckOrigin(r *http.Request, hosts []string) error {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if len(hosts) > 0 && !allowedHost(hosts, host) {
		return errorf(http.StatusForbidden, CodeBadOrigin, "host %q is not served here", clip(host, 100))
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err == nil && u.Scheme == "https" && (strings.EqualFold(u.Host, r.Host) || allowedHost(hosts, u.Hostname())) {
		return nil
	}
	return errorf(http.StatusForbidden, CodeBadOrigin, "cross-origin requests are not accepted")
}

func allowedHost(hosts []string, h string) bool {
	for _, a := range hosts {
		if strings.EqualFold(a, h) {
			return true
		}
	}
	return false
}

// setSecurityHeaders marks every answer as private, not to be sniffed,
// framed or sent on to other sites, and HTTPS only.
func setSecurityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// writeError is the one place errors become responses:
// {"error":{"code":"…","message":"…"}} with the status of the code. The
// detail of a server-side failure goes to the log, never to the client.
// It returns the status written.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, route string, err error) int {
	e := AsError(err)
	if sw, ok := w.(*StatusWriter); ok && sw.Code != 0 {
		// The handler had started its answer; nothing sensible can follow.
		s.log.Error("admin call failed after answering", zap.String("route", route), zap.Error(err))
		return sw.Code
	}
	lvl := zapcore.DebugLevel
	if e.Status >= 500 {
		lvl = zapcore.ErrorLevel
	}
	if ce := s.log.Check(lvl, "admin call failed"); ce != nil {
		ce.Write(zap.String("route", route), zap.Int("status", e.Status), zap.String("code", e.Code),
			zap.NamedError("detail", e.Err))
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatekeeper"`)
	}
	type body struct {
		Code    string   `json:"code"`
		Message string   `json:"message"`
		Factors []string `json:"factors,omitempty"`
	}
	writeJSON(w, e.Status, struct {
		Error body `json:"error"`
	}{body{e.Code, e.Msg, e.Factors}})
	return e.Status
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal_error","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// StatusWriter remembers the status a handler wrote, for metrics and
// logs. The web pages use it too.
type StatusWriter struct {
	http.ResponseWriter
	Code int
}

// WriteHeader implements http.ResponseWriter.
func (w *StatusWriter) WriteHeader(code int) {
	if w.Code == 0 {
		w.Code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.Code == 0 {
		w.Code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// MethodNotAllowed asks mux what it would answer a request no pattern
// matched: when some pattern matches the path with another method, it
// reports the Allow header to send with a 405; otherwise the answer is 404.
func MethodNotAllowed(mux *http.ServeMux, r *http.Request) (allow string, ok bool) {
	h, _ := mux.Handler(r)
	rec := &codeRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	return rec.header.Get("Allow"), rec.code == http.StatusMethodNotAllowed
}

// codeRecorder keeps only the status and headers a handler writes.
type codeRecorder struct {
	header http.Header
	code   int
}

func (c *codeRecorder) Header() http.Header { return c.header }

func (c *codeRecorder) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}

func (c *codeRecorder) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return len(b), nil
}
