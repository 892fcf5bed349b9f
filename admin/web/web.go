package web

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Options configure the pages. Only Service is required.
type Options struct {
	// Service is what every page calls; the same one the API uses.
	Service *admin.Service
	// TrustedProxies are the peers whose X-Forwarded-For is believed, as
	// for the API (admin.ServerOptions.TrustedProxies). If empty, the
	// socket peer is the client.
	TrustedProxies policy.Prefixes
	// Hosts, if not empty, are the only Host names the pages answer to,
	// as for the API (admin.ServerOptions.Hosts).
	Hosts []string
	// Logger; if nil, nothing is logged.
	Logger *zap.Logger
	// Registerer receives gatekeeper_web_requests_total. If nil, the
	// counter is kept but not exported.
	Registerer prometheus.Registerer
	// RequestTimeout bounds the work of one page. If zero, 15s.
	RequestTimeout time.Duration
	// MaxBodyBytes bounds a form; larger ones answer 413. If zero, 64 KiB.
	MaxBodyBytes int64
	// Now returns the current time, for "in 3 hours". If nil, time.Now.
	Now func() time.Time
}

// Pages is the web interface: an http.Handler for every path outside
// /api/ on the admin listener.
type Pages struct {
	svc  *admin.Service
	opts Options
	log  *zap.Logger
	mux  *http.ServeMux
	// tmpl are the parsed templates, never executed themselves: each time
	// zone's pages run clones of them (see zoned).
	tmpl     map[string]*template.Template
	zoneMu   sync.Mutex
	zones    map[string]*zoned
	static   map[string]staticFile
	requests *prometheus.CounterVec
}

var _ http.Handler = (*Pages)(nil)

// New returns the pages. Templates are parsed here, so a broken one fails
// at start, not on a request.
func New(opts Options) (*Pages, error) {
	if opts.Service == nil {
		return nil, errors.New("web: no service")
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
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.TrustedProxies = append(policy.Prefixes(nil), opts.TrustedProxies...)
	opts.Hosts = append([]string(nil), opts.Hosts...)
	p := &Pages{
		svc:   opts.Service,
		opts:  opts,
		log:   opts.Logger,
		mux:   http.NewServeMux(),
		zones: map[string]*zoned{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_web_requests_total",
			Help: "Web page requests, by route pattern and HTTP status.",
		}, []string{"route", "code"}),
	}
	var err error
	if p.static, err = loadStatic(); err != nil {
		return nil, err
	}
	if p.tmpl, err = p.parseTemplates(); err != nil {
		return nil, err
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(p.requests); err != nil {
			return nil, fmt.Errorf("web: register metrics: %w", err)
		}
	}
	for _, rt := range p.routes() {
		p.mux.Handle(rt.pattern, p.wrap(rt))
	}
	return p, nil
}

// access is what a route needs of the caller.
type access int

const (
	// public routes need no session: the login page, the stylesheet.
	public access = iota
	// session routes need a session, even one whose password must be
	// reset first: the password page, logout.
	session
	// enrol routes need a session with no reset pending, and stay open to
	// a person the account requires to enrol a second factor who has none
	// yet: the "Sign-in and security" page.
	enrol
	// full routes need a session with no reset pending and no factor
	// enrolment pending; the others are sent to the password page, or to
	// the security page.
	full
)

// handler serves one page. It returns an error instead of writing one.
type handler func(w http.ResponseWriter, r *http.Request, c *call) error

type route struct {
	pattern string
	access  access
	h       handler
}

// call is one request's context.
type call struct {
	ip netip.Addr
	// token is the session token from the cookie; empty without one.
	token string
	// actor is who the session stands for; zero on public routes.
	actor admin.Actor
	// csrf is the token this page's forms carry.
	csrf string
}

// routes lists the pages. Every change is a POST with a CSRF token.
func (p *Pages) routes() []route {
	return []route{
		{"GET /static/{file}", public, p.staticFile},
		{"GET /login", public, p.loginPage},
		{"POST /login", public, p.login},
		{"POST /logout", session, p.logout},
		{"GET /password/forgot", public, p.forgotPage},
		{"POST /password/forgot", public, p.forgot},
		{"GET /password/reset", public, p.resetPage},
		{"POST /password/reset", public, p.reset},
		{"GET /email/confirm", public, p.confirmPage},
		{"POST /email/confirm", public, p.confirm},
		{"GET /me/email", full, p.myEmailPage},
		{"POST /me/email", full, p.setMyEmail},
		{"GET /accounts/{acct}/users/{username}/email", full, p.userEmailPage},
		{"POST /accounts/{acct}/users/{username}/email", full, p.setUserEmail},
		{"GET /password", session, p.passwordPage},
		{"POST /password", session, p.changePassword},
		{"POST /login/otp", public, p.loginOTP},
		{"POST /login/passkey/begin", public, p.beginPasskeyLogin},
		{"POST /login/passkey", public, p.passkeyLogin},
		{"GET /security", enrol, p.securityPage},
		{"POST /security/totp", enrol, p.beginTOTP},
		{"GET /security/totp/qr.png", enrol, p.totpQR},
		{"POST /security/totp/confirm", enrol, p.confirmTOTP},
		{"POST /security/totp/delete", enrol, p.removeTOTP},
		{"POST /security/sessions/{id}/end", enrol, p.endSession},
		{"POST /security/passkeys/begin", enrol, p.beginPasskey},
		{"POST /security/passkeys", enrol, p.addPasskey},
		{"POST /security/passkeys/{id}/delete", enrol, p.removePasskey},
		{"POST /security/passkeys/{id}/rename", enrol, p.renamePasskey},
		{"POST /accounts/{acct}/sessions/{id}/end", full, p.endStaffSession},
		{"GET /{$}", full, p.home},
		{"GET /me", full, p.mePage},
		{"POST /me/unblock", full, p.unblock},
		{"POST /me/grants/{id}/delete", full, p.deleteGrant},
		{"GET /switch", full, p.switchAccount},
		{"GET /accounts/{acct}", full, p.accountHome},
		{"GET /accounts/{acct}/firewall", full, p.firewallPage},
		{"POST /accounts/{acct}/firewall/mode", full, p.setMode},
		{"POST /accounts/{acct}/firewall/rules", full, p.addRule},
		{"GET /accounts/{acct}/firewall/rules/{id}/delete", full, p.deleteRulePage},
		{"POST /accounts/{acct}/firewall/rules/{id}/delete", full, p.deleteRule},
		{"GET /accounts/{acct}/users", full, p.usersPage},
		{"GET /accounts/{acct}/users/export.csv", full, p.staffCSV},
		{"POST /accounts/{acct}/users", full, p.createUser},
		{"POST /accounts/{acct}/users/{username}/update", full, p.updateUser},
		{"POST /accounts/{acct}/users/{username}/access-until", full, p.setAccessUntil},
		{"GET /accounts/{acct}/users/{username}/offboard", full, p.offboardPage},
		{"POST /accounts/{acct}/users/{username}/offboard", full, p.offboard},
		{"GET /accounts/{acct}/users/{username}/password", full, p.tempPasswordPage},
		{"POST /accounts/{acct}/users/{username}/password", full, p.tempPassword},
		{"GET /accounts/{acct}/users/{username}/offboarding", full, p.offboardingPage},
		{"GET /accounts/{acct}/users/{username}/mfa", full, p.clearFactorPage},
		{"POST /accounts/{acct}/users/{username}/mfa", full, p.clearFactor},
		{"GET /accounts/{acct}/users/reset-passwords", full, p.resetPasswordsPage},
		{"POST /accounts/{acct}/users/reset-passwords", full, p.resetPasswords},
		{"GET /accounts/{acct}/review", full, p.reviewPage},
		{"POST /accounts/{acct}/review", full, p.finishReview},
		{"GET /accounts/{acct}/audit", full, p.auditPage},
		{"GET /me/devices", full, p.myDevicesPage},
		{"POST /me/devices", full, p.addDevice},
		{"POST /me/devices/{id}/inactive", full, p.deactivateMyDevice},
		{"GET /accounts/{acct}/devices", full, p.devicesPage},
		{"POST /accounts/{acct}/devices/{id}/update", full, p.updateDevice},
		{"GET /accounts/{acct}/settings", full, p.settingsPage},
		{"POST /accounts/{acct}/settings", full, p.updateSettings},
		{"GET /accounts/{acct}/notifications", full, p.notificationsPage},
		{"POST /accounts/{acct}/notifications/webhooks", full, p.addWebhook},
		{"POST /accounts/{acct}/notifications/webhooks/{id}/delete", full, p.deleteWebhook},
		{"POST /accounts/{acct}/notifications/emails", full, p.addEmail},
		{"POST /accounts/{acct}/notifications/emails/delete", full, p.deleteEmail},
		{"POST /accounts/{acct}/notifications/test", full, p.testNotifications},
		{"POST /accounts/{acct}/notifications/webhooks/{id}/events", full, p.setEvents},
		{"POST /accounts/{acct}/notifications/emails/events", full, p.setEvents},
		{"GET /accounts/{acct}/access-requests", full, p.requestsPage},
		{"POST /accounts/{acct}/access-requests/{id}/approve", full, p.decideRequest(true)},
		{"POST /accounts/{acct}/access-requests/{id}/deny", full, p.decideRequest(false)},
		{"GET /me/access", full, p.myAccessPage},
		{"GET " + appSignInPath, full, p.appSignIn},
		{"POST /me/access", full, p.requestAccess},
	}
}

// ServeHTTP answers a page request; unknown paths and methods get an error
// page.
func (p *Pages) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := p.mux.Handler(r); pattern != "" {
		p.mux.ServeHTTP(w, r)
		return
	}
	err := error(errNotFound)
	if allow, ok := admin.MethodNotAllowed(p.mux, r); ok {
		w.Header().Set("Allow", allow)
		err = &admin.Error{Status: http.StatusMethodNotAllowed, Code: admin.CodeMethodNotAllowed,
			Msg: r.Method + " is not allowed here"}
	}
	setHeaders(w)
	code := p.fail(w, r, &call{}, "unmatched", err)
	p.requests.WithLabelValues("unmatched", strconv.Itoa(code)).Inc()
}

// wrap turns a route into a handler: security headers, Host and Origin,
// client address, body limit, deadline, session, CSRF, the password-reset
// gate, one error writer, metrics and a log line.
func (p *Pages) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &admin.StatusWriter{ResponseWriter: w}
		c := &call{}
		if err := p.serveRoute(sw, r, rt, c); err != nil {
			sw.Code = p.fail(sw, r, c, rt.pattern, err)
		}
		if sw.Code == 0 {
			sw.Code = http.StatusOK
		}
		p.requests.WithLabelValues(rt.pattern, strconv.Itoa(sw.Code)).Inc()
		if ce := p.log.Check(zapcore.DebugLevel, "web request"); ce != nil {
			ce.Write(zap.String("route", rt.pattern), zap.Int("status", sw.Code),
				zap.Duration("took", time.Since(start)), zap.String("client_ip", c.ip.String()),
				zap.String("role", c.actor.Role), zap.String("account", c.actor.Account),
				zap.String("username", c.actor.Username))
		}
	})
}

func (p *Pages) serveRoute(w http.ResponseWriter, r *http.Request, rt route, c *call) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			err = fmt.Errorf("panic in %s: %v", rt.pattern, v)
		}
	}()
	setHeaders(w)
	if err := admin.CheckOrigin(r, p.opts.Hosts); err != nil {
		return err
	}
	ip, err := admin.ClientIP(r, p.opts.TrustedProxies)
	if err != nil {
		return &admin.Error{Status: http.StatusBadRequest, Code: admin.CodeUnknownClientIP,
			Msg: "your address could not be determined", Err: err}
	}
	c.ip = ip
	ctx, cancel := context.WithTimeout(r.Context(), p.opts.RequestTimeout)
	defer cancel()
	r = r.WithContext(ctx)
	if r.Method == http.MethodPost {
		if err := p.readForm(w, r); err != nil {
			return err
		}
	}
	if rt.access == public {
		return rt.h(w, r, c)
	}
	c.token = sessionToken(r)
	if c.token == "" {
		rememberNext(w, r, rt)
		return redirectTo("/login")
	}
	c.csrf = csrfToken(c.token)
	if r.Method == http.MethodPost && !validCSRF(c.token, r.PostFormValue(csrfField)) {
		return errCSRF
	}
	c.actor, err = p.svc.Authenticate(ctx, c.token, ip)
	if err != nil {
		if e := admin.AsError(err); e.Status == http.StatusUnauthorized {
			clearCookie(w, sessionCookie)
			setFlash(w, flashInfo, "Your session has ended. Please log in again.")
			rememberNext(w, r, rt)
			return redirectTo("/login")
		}
		return err
	}
	if rt.access >= enrol && c.actor.MustResetPassword {
		return redirectTo("/password")
	}
	if rt.access == full && c.actor.MustEnrollMFA {
		return redirectTo("/security")
	}
	return rt.h(w, r, c)
}

// readForm reads a POSTed form: application/x-www-form-urlencoded only,
// within the body limit.
func (p *Pages) readForm(w http.ResponseWriter, r *http.Request) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return &admin.Error{Status: http.StatusUnsupportedMediaType, Code: admin.CodeUnsupportedMediaType,
			Msg: "this form was not sent the way a browser sends it"}
	}
	r.Body = http.MaxBytesReader(w, r.Body, p.opts.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &admin.Error{Status: http.StatusRequestEntityTooLarge, Code: admin.CodeBodyTooLarge,
				Msg: fmt.Sprintf("the form is larger than %d bytes", mbe.Limit)}
		}
		return &admin.Error{Status: http.StatusBadRequest, Code: admin.CodeInvalidRequest,
			Msg: "the form could not be read", Err: err}
	}
	return nil
}

// The Content-Security-Policy of every page: nothing but this origin's
// stylesheet, images and script files (only the passkey ceremony has one:
// WebAuthn is a browser API), no inline script and no eval, requests and
// forms only to this origin, no framing.
const csp = "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// setHeaders marks a page as private, not to be sniffed, framed, cached
// or told to other sites. The referrer policy is same-origin, not
// no-referrer, because with no-referrer browsers send "Origin: null" on
// form posts, which the Origin check must refuse.
func setHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// redirect is an error that answers 303 See Other.
type redirect string

func (r redirect) Error() string { return "redirect to " + string(r) }

func redirectTo(path string) error { return redirect(path) }

var (
	errNotFound = &admin.Error{Status: http.StatusNotFound, Code: admin.CodeNotFound, Msg: "not found"}
	errCSRF     = &admin.Error{Status: http.StatusForbidden, Code: "csrf",
		Msg: "This form was not accepted: it did not come from a gatekeeper page you have open, or that page is too old. Go back, reload the page and try again."}
)

// fail writes an error: a redirect, or an error page with the API's
// message and status. Server-side details only reach the log. It returns
// the status written.
func (p *Pages) fail(w http.ResponseWriter, r *http.Request, c *call, route string, err error) int {
	if sw, ok := w.(*admin.StatusWriter); ok && sw.Code != 0 {
		p.log.Error("web page failed after answering", zap.String("route", route), zap.Error(err))
		return sw.Code
	}
	var to redirect
	if errors.As(err, &to) {
		http.Redirect(w, r, string(to), http.StatusSeeOther)
		return http.StatusSeeOther
	}
	e := admin.AsError(err)
	lvl := zapcore.DebugLevel
	if e.Status >= 500 {
		lvl = zapcore.ErrorLevel
	}
	if ce := p.log.Check(lvl, "web page failed"); ce != nil {
		ce.Write(zap.String("route", route), zap.Int("status", e.Status), zap.String("code", e.Code),
			zap.NamedError("detail", e.Err))
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	pg := p.newPage(c, errorTitle(e, r.Method))
	pg.Data = e
	p.render(w, r, e.Status, "error", pg)
	return e.Status
}

func errorTitle(e *admin.Error, method string) string {
	switch {
	case e.Code == admin.CodeStoreUnconfirmed:
		return "Not confirmed: check whether it was saved"
	case e.Code == admin.CodeStoreUnavailable && method == http.MethodPost:
		return "Could not save, nothing changed"
	case e.Code == admin.CodeStoreUnavailable:
		return "Could not load this page"
	}
	switch e.Status {
	case http.StatusNotFound:
		return "Not found"
	case http.StatusForbidden:
		if e.Code == "csrf" {
			return "Form refused"
		}
		return "Not allowed"
	case http.StatusTooManyRequests:
		return "Too many attempts"
	case http.StatusServiceUnavailable:
		return "Try again shortly"
	}
	if e.Status >= 500 {
		return "Something went wrong"
	}
	return "That did not work"
}

// isMaster reports whether the call is a master's.
func (c *call) isMaster() bool { return c.actor.Role == policy.RoleMaster }

// trim bounds a form value before it reaches a message or the Service.
func trim(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n]
	}
	return s
}
