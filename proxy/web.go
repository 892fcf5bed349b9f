package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
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

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Web application access: the access setting of an http listener's
// routes and the sign-in at the gate.
//
// A route whose access needs a login is served by the net/http path
// only (never by the HTTP/1.1 fast path), where every request is checked
// here before it goes upstream: a request without a good web session
// cookie is sent to the admin listener's sign-in; the admin listener
// sends the browser back to /.gatekeeper/callback with a single-use
// hand-off token, which becomes the session cookie. A session cookie
// names its person and the web epoch it was opened at and is MACed with
// the fleet's web key; it is good while the gate's table lists the person
// with that epoch (policy.Table.WebEpoch), so no request reads the store
// and a revocation on the change feed ends it on every instance.

// Access settings of a route.
const (
	// AccessAddress admits by the account's address rules. The default.
	AccessAddress = "address"
	// AccessLogin admits from anywhere a person signed in at gatekeeper
	// who may use web applications.
	AccessLogin = "login"
	// AccessAddressLogin needs both.
	AccessAddressLogin = "address+login"
)

// ParseAccess reads a route's access setting; "" is AccessAddress.
func ParseAccess(s string) (checkAddress, login bool, err error) {
	switch s {
	case "", AccessAddress:
		return true, false, nil
	case AccessLogin:
		return false, true, nil
	case AccessAddressLogin:
		return true, true, nil
	}
	return false, false, fmt.Errorf("access %q: want address, login or address+login", s)
}

// Identity headers: what gatekeeper tells the upstream of a login route
// about the person. An incoming one is dropped on every route, on both
// http paths: any header whose name starts with X-Gatekeeper-, and
// Gatekeeper-Assertion.
const (
	HeaderUser      = "X-Gatekeeper-User"
	HeaderAccount   = "X-Gatekeeper-Account"
	HeaderRole      = "X-Gatekeeper-Role"
	HeaderAssertion = "Gatekeeper-Assertion"
)

// isIdentityHeader reports whether a client's header is one gatekeeper
// owns towards the upstream.
func isIdentityHeader(name []byte) bool {
	const prefix = "x-gatekeeper-"
	if len(name) >= len(prefix) && equalFold(name[:len(prefix)], prefix) {
		return true
	}
	return equalFold(name, HeaderAssertion)
}

// The gate's own paths on a login route.
const (
	pathCallback = "/.gatekeeper/callback"
	pathLogout   = "/.gatekeeper/logout"
	pathJWKS     = "/.well-known/gatekeeper/jwks.json"
)

// WebCookie is the web session cookie on an application's host.
const WebCookie = "__Host-gatekeeper_session"

// DefaultWebSessionTTL is how long a web session lasts at most.
const DefaultWebSessionTTL = 12 * time.Hour

// WebSignIn is what the gate needs of the admin side.
type WebSignIn interface {
	// TakeHandoff consumes a hand-off token issued for account's host:
	// once across the fleet, within its life. It returns whom it signs in
	// and the path they asked for.
	TakeHandoff(ctx context.Context, account, host, token string, client netip.Addr) (policy.WebIdentity, error)
	// EndWebSessions ends every web session of a person of account
	// (username "" for the master), and their admin sessions: a logout at
	// the application.
	EndWebSessions(ctx context.Context, account, username string, client netip.Addr) error
	// Refused notes a refused web request in account's audit trail; the
	// gate rate-limits the calls.
	Refused(ctx context.Context, account, route, reason string, client netip.Addr)
}

// Asserter signs the assertion an upstream of a login route gets in
// Gatekeeper-Assertion: who the person is, for audience (the route's
// address, "https://" and its host name). *assertion.Signer is one.
type Asserter interface {
	Assert(ctx context.Context, account, user, audience string) (string, error)
}

// WebOptions configure the sign-in at login routes; required when any
// route needs a login.
type WebOptions struct {
	SignIn WebSignIn
	// Key MACs web session cookies: 32 bytes, the same on every instance.
	Key []byte
	// SignInURL is the absolute URL of the admin listener's application
	// sign-in page; the gate adds host and to parameters.
	SignInURL string
	// Asserter, if set, signs Gatekeeper-Assertion. Nil sends none (for
	// tests only).
	Asserter Asserter
	// JWKS, if set, serves /.well-known/gatekeeper/jwks.json on login
	// routes.
	JWKS http.Handler
	// SessionTTL bounds a web session. If zero, DefaultWebSessionTTL.
	SessionTTL time.Duration
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
}

func (o *WebOptions) check() error {
	switch {
	case o == nil:
		return errors.New("routes with access login need the admin listener's sign-in (admin.public_url and the secrets key)")
	case o.SignIn == nil:
		return errors.New("web sign-in: no SignIn")
	case len(o.Key) < 32:
		return errors.New("web sign-in: the web key must hold 32 bytes")
	}
	u, err := url.Parse(o.SignInURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("web sign-in: sign-in URL %q is not an https URL", o.SignInURL)
	}
	return nil
}

// webSeen is the person whose requests a connection last carried.
type webSeen struct {
	username string
	epoch    uint64
}

// webRevoked reports whether c carried a person's requests whom t no
// longer lets in at the epoch they signed in at.
func (c *conn) webRevoked(t *policy.Table) bool {
	w := c.web.Load()
	if w == nil {
		return false
	}
	e, ok := t.WebEpoch(c.route.account, w.username)
	return !ok || e != w.epoch
}

// webMetrics count a login route's requests by verdict.
type webMetrics struct {
	allowed, signIn, signedIn, refused, signedOut prometheus.Counter
}

func (m *metrics) forWeb(listener, account string) webMetrics {
	return webMetrics{
		allowed:   m.requests.WithLabelValues(listener, account, "allowed"),
		signIn:    m.requests.WithLabelValues(listener, account, "sign_in"),
		signedIn:  m.requests.WithLabelValues(listener, account, "signed_in"),
		refused:   m.requests.WithLabelValues(listener, account, "refused"),
		signedOut: m.requests.WithLabelValues(listener, account, "signed_out"),
	}
}

// webSession is a parsed web session cookie.
type webSession struct {
	account, username string
	epoch             uint64
	expires           int64 // Unix seconds
	mac               []byte
}

// maxWebCookie bounds a cookie value: longer than any made here.
const maxWebCookie = 512

var b64 = base64.RawURLEncoding

// webMAC is the MAC of a session for host.
func webMAC(key []byte, s *webSession, host string) []byte {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "gatekeeper web session v1\x00%s\x00%s\x00%s\x00%d\x00%d", s.account, s.username, host, s.epoch, s.expires)
	return m.Sum(nil)
}

// encodeWebSession makes a cookie value for host.
func encodeWebSession(key []byte, s webSession, host string) string {
	mac := webMAC(key, &s, host)
	return "v1." + b64.EncodeToString([]byte(s.account)) + "." + b64.EncodeToString([]byte(s.username)) + "." +
		strconv.FormatUint(s.epoch, 10) + "." + strconv.FormatInt(s.expires, 10) + "." + b64.EncodeToString(mac)
}

// parseWebSession reads a cookie value; it checks the form only.
func parseWebSession(v string) (webSession, bool) {
	var s webSession
	if len(v) > maxWebCookie {
		return s, false
	}
	parts := strings.Split(v, ".")
	if len(parts) != 6 || parts[0] != "v1" {
		return s, false
	}
	acct, err1 := b64.DecodeString(parts[1])
	user, err2 := b64.DecodeString(parts[2])
	mac, err3 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || err3 != nil || len(mac) != sha256.Size || !policy.ValidAccountID(string(acct)) {
		return s, false
	}
	if !decimal(parts[3]) || !decimal(parts[4]) {
		return s, false
	}
	epoch, err4 := strconv.ParseUint(parts[3], 10, 64)
	exp, err5 := strconv.ParseInt(parts[4], 10, 64)
	if err4 != nil || err5 != nil {
		return s, false
	}
	s = webSession{account: string(acct), username: string(user), epoch: epoch, expires: exp, mac: mac}
	return s, true
}

// decimal reports whether s is 1 to 20 ASCII digits (a uint64 has up to
// 20; strconv refuses what overflows).
func decimal(s string) bool {
	if len(s) == 0 || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// webGate is a login route's sign-in check.
type webGate struct {
	s      *Server
	o      *WebOptions
	r      *route
	m      webMetrics
	ttl    time.Duration
	now    func() time.Time
	refuse *rateLog // refusals audited, within the rate limit
	lname  string
}

func (s *Server) newWebGate(lc *listenerConfig, r *route) *webGate {
	o := s.opts.Web
	g := &webGate{s: s, o: o, r: r, m: s.m.forWeb(lc.name, r.account), ttl: o.SessionTTL, now: o.Now, lname: lc.name,
		refuse: s.webLog}
	if g.ttl <= 0 {
		g.ttl = DefaultWebSessionTTL
	}
	if g.now == nil {
		g.now = time.Now
	}
	return g
}

type identityKey struct{}

// identity is what the upstream is told about a signed-in request.
type identity struct {
	account, username, assertion string
}

// requestHost returns the host name a request asked for, lowercased,
// without a port.
func requestHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return normalizeName(h)
}

// serve checks a request to a login route. It returns the request to
// forward (carrying the identity for the upstream), or nil when it
// answered the request itself.
func (g *webGate) serve(w http.ResponseWriter, req *http.Request, c *conn) *http.Request {
	// The Host must name the server name the connection was routed by:
	// a cookie and a hand-off are bound to the host, and a route to it.
	if requestHost(req.Host) != c.sni || c.sni == "" {
		g.m.refused.Inc()
		http.Error(w, "misdirected request", http.StatusMisdirectedRequest)
		return nil
	}
	switch req.URL.Path {
	case pathCallback:
		g.callback(w, req, c)
		return nil
	case pathLogout:
		g.logout(w, req, c)
		return nil
	case pathJWKS:
		if g.o.JWKS == nil {
			http.NotFound(w, req)
			return nil
		}
		g.o.JWKS.ServeHTTP(w, req)
		return nil
	}
	ses, ok := g.session(req)
	if !ok {
		g.m.signIn.Inc()
		g.toSignIn(w, req)
		return nil
	}
	// Filed on the connection first, then checked again: a revocation
	// published in between is seen by one or the other.
	c.web.Store(&webSeen{username: ses.username, epoch: ses.epoch})
	if !g.current(ses) {
		g.m.signIn.Inc()
		g.toSignIn(w, req)
		return nil
	}
	id := identity{account: ses.account, username: ses.username}
	if g.o.Asserter != nil {
		a, err := g.o.Asserter.Assert(req.Context(), ses.account, ses.username, "https://"+c.sni)
		if err != nil {
			g.m.refused.Inc()
			g.s.log.Error("web sign-in: no assertion for the upstream: refusing the request", zap.String("listener", g.lname),
				zap.String("account", ses.account), zap.Error(err))
			http.Error(w, "service unavailable", http.StatusServiceUnavailable)
			return nil
		}
		id.assertion = a
	}
	g.m.allowed.Inc()
	return req.WithContext(context.WithValue(req.Context(), identityKey{}, &id))
}

// session returns the request's web session if its cookie is good for
// this route's account and host and the person may still sign in at its
// epoch.
func (g *webGate) session(req *http.Request) (webSession, bool) {
	for _, ck := range req.Cookies() {
		if ck.Name != WebCookie {
			continue
		}
		s, ok := parseWebSession(ck.Value)
		if !ok || s.account != g.r.account || s.expires <= g.now().Unix() {
			continue
		}
		if !hmac.Equal(s.mac, webMAC(g.o.Key, &s, requestHost(req.Host))) {
			continue
		}
		if g.current(s) {
			return s, true
		}
	}
	return webSession{}, false
}

// current reports whether the table lets s's person in at s's epoch.
func (g *webGate) current(s webSession) bool {
	e, ok := g.s.engine.Table().WebEpoch(g.r.account, s.username)
	return ok && e == s.epoch
}

// toSignIn sends the browser to the admin listener's sign-in, to come
// back to the path it asked for.
func (g *webGate) toSignIn(w http.ResponseWriter, req *http.Request) {
	ret := req.URL.RequestURI()
	if policy.ValidReturnPath(ret) != nil || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
		ret = "/"
	}
	q := url.Values{"host": {req.Host}, "to": {ret}}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, req, g.o.SignInURL+"?"+q.Encode(), http.StatusFound)
}

// callback takes a hand-off token and opens the web session.
func (g *webGate) callback(w http.ResponseWriter, req *http.Request, c *conn) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	client := c.client.Addr()
	token := req.URL.Query().Get("token")
	if req.Method != http.MethodGet || token == "" || len(token) > 256 {
		g.refused(req, client, "bad_callback")
		http.Error(w, "bad sign-in request", http.StatusBadRequest)
		return
	}
	id, err := g.o.SignIn.TakeHandoff(req.Context(), g.r.account, req.Host, token, client)
	if err != nil {
		g.refused(req, client, "bad_handoff")
		g.s.log.Debug("web sign-in refused", zap.String("listener", g.lname), zap.String("account", g.r.account),
			zap.String("client", client.String()), zap.Error(err))
		http.Error(w, "This sign-in link was already used, has expired, or is not for this site. Open the page again to sign in.", http.StatusBadRequest)
		return
	}
	ret := id.Return
	if policy.ValidReturnPath(ret) != nil {
		ret = "/"
	}
	// The table may not have heard yet of the change that let the person
	// in; wait for it a little rather than send them round again.
	ses := webSession{account: g.r.account, username: id.Username, epoch: id.Epoch}
	deadline := time.Now().Add(2 * time.Second)
	for !g.current(ses) {
		if time.Now().After(deadline) {
			g.refused(req, client, "no_web_access")
			http.Error(w, "You may not use this application.", http.StatusForbidden)
			return
		}
		select {
		case <-req.Context().Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	ses.expires = g.now().Add(g.ttl).Unix()
	http.SetCookie(w, &http.Cookie{Name: WebCookie, Value: encodeWebSession(g.o.Key, ses, requestHost(req.Host)),
		Path: "/", MaxAge: int(g.ttl / time.Second), Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	g.m.signedIn.Inc()
	http.Redirect(w, req, ret, http.StatusSeeOther)
}

// logout ends the person's web sessions everywhere, and their admin
// sessions.
func (g *webGate) logout(w http.ResponseWriter, req *http.Request, c *conn) {
	w.Header().Set("Cache-Control", "no-store")
	if ses, ok := g.session(req); ok {
		if err := g.o.SignIn.EndWebSessions(req.Context(), g.r.account, ses.username, c.client.Addr()); err != nil {
			g.s.log.Warn("web logout failed", zap.String("listener", g.lname), zap.String("account", g.r.account), zap.Error(err))
			http.Error(w, "The logout did not go through; please try again.", http.StatusServiceUnavailable)
			return
		}
		g.m.signedOut.Inc()
	}
	http.SetCookie(w, &http.Cookie{Name: WebCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode})
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "You are signed out.")
}

// refused counts a refusal, and logs and audits it within the rate
// limit.
func (g *webGate) refused(req *http.Request, client netip.Addr, reason string) {
	g.m.refused.Inc()
	if g.refuse.allow() {
		g.s.log.Info("web sign-in refused", zap.String("listener", g.lname), zap.String("account", g.r.account),
			zap.String("client", client.String()), zap.String("reason", reason))
		g.o.SignIn.Refused(req.Context(), g.r.account, g.lname+"/"+g.r.sni, reason, client)
	}
}

// setIdentity writes the identity headers of a request the gate let
// through; every incoming one is gone by then.
func setIdentity(h http.Header, id *identity) {
	if id == nil {
		return
	}
	h.Set(HeaderAccount, id.account)
	if id.username == "" {
		h.Set(HeaderRole, policy.RoleMaster)
	} else {
		h.Set(HeaderUser, id.username)
		h.Set(HeaderRole, policy.RoleUser)
	}
	if id.assertion != "" {
		h.Set(HeaderAssertion, id.assertion)
	}
}

// stripIdentity drops the identity headers a client sent, and the web
// session cookie, which is the gate's and not the upstream's.
func stripIdentity(h http.Header) {
	for k := range h {
		if isIdentityHeader([]byte(k)) {
			delete(h, k)
		}
	}
	cookies := h.Values("Cookie")
	if len(cookies) == 0 {
		return
	}
	var kept []string
	for _, line := range cookies {
		for part := range strings.SplitSeq(line, ";") {
			p := strings.TrimSpace(part)
			if p == "" || strings.HasPrefix(p, WebCookie+"=") {
				continue
			}
			kept = append(kept, p)
		}
	}
	h.Del("Cookie")
	if len(kept) > 0 {
		h.Set("Cookie", strings.Join(kept, "; "))
	}
}
