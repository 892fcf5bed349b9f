package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// signInDouble stands in for the admin listener's side of the sign-in
// (admin.WebGate, tested there and end to end): it knows the tokens a
// test issued, and takes each once.
type signInDouble struct {
	mu      sync.Mutex
	tokens  map[string]policy.WebIdentity
	ended   []string
	refused []string
	p       *testPolicy
}

func (d *signInDouble) issue(token string, id policy.WebIdentity) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tokens[token] = id
}

func (d *signInDouble) TakeHandoff(_ context.Context, account, host, token string, _ netip.Addr) (policy.WebIdentity, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, ok := d.tokens[token]
	if !ok {
		return policy.WebIdentity{}, errors.New("unknown token")
	}
	delete(d.tokens, token)
	return id, nil
}

func (d *signInDouble) EndWebSessions(_ context.Context, account, username string, _ netip.Addr) error {
	d.mu.Lock()
	d.ended = append(d.ended, username)
	d.mu.Unlock()
	return d.p.st.Update(context.Background(), account, func(tx policy.Tx) error {
		u, err := tx.User(username)
		if err != nil {
			return err
		}
		u.Web.Epoch++
		return tx.PutUser(u)
	})
}

func (d *signInDouble) Refused(_ context.Context, account, route, reason string, _ netip.Addr) {
	d.mu.Lock()
	d.refused = append(d.refused, reason)
	d.mu.Unlock()
}

// idSeen is what the identity upstream reports of a request.
type idSeen struct {
	Headers map[string][]string
	Path    string
}

func newIdentityUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := map[string][]string{}
		for k, v := range r.Header {
			if isIdentityHeader([]byte(k)) || k == "Cookie" {
				h[k] = v
			}
		}
		json.NewEncoder(w).Encode(idSeen{Headers: h, Path: r.URL.RequestURI()})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

const appHost = "app.test"

type webTest struct {
	p     *testPolicy
	px    *proxyTest
	d     *signInDouble
	addr  string
	port  string
	key   []byte
	local string
}

// newWebTest runs an http listener with a route of the given access for
// account acme, whose only rule allows ipAllowed, and alice, a user with
// web access.
func newWebTest(t *testing.T, access string, opts ...func(*WebOptions)) *webTest {
	p := newPolicy(t)
	p.account("acme", policy.ModeOn, ipAllowed+"/32")
	err := p.st.Update(context.Background(), "acme", func(tx policy.Tx) error {
		return tx.PutUser(policy.User{Username: "alice", Active: true, WebAccess: true, CreatedAt: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice in the table", func() bool { _, ok := p.engine.Table().WebEpoch("acme", "alice"); return ok })
	d := &signInDouble{tokens: map[string]policy.WebIdentity{}, p: p}
	key := []byte("0123456789abcdef0123456789abcdef")
	up := newIdentityUpstream(t)
	wo := &WebOptions{SignIn: d, Key: key, SignInURL: "https://gate.test:8443/app/signin"}
	for _, o := range opts {
		o(wo)
	}
	px := startProxy(t, Options{Engine: p.engine, TLS: tlsConfig(t), Web: wo,
		Listeners: []Listener{{Name: "web", Addr: "127.0.0.1:0", Mode: ModeHTTP,
			Routes: []Route{{SNI: appHost, Account: "acme", Upstream: up, Access: access}}}}})
	addr := px.addr("web")
	_, port, _ := net.SplitHostPort(addr)
	return &webTest{p: p, px: px, d: d, addr: addr, port: port, key: key}
}

// client returns an HTTP client from ip that reaches the listener for
// app.test and follows no redirect.
func (w *webTest) client(ip string, h2 bool) *http.Client {
	c := httpClient(ip, "", h2)
	tr := c.Transport.(*http.Transport)
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, ServerName: appHost}
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) { return dial(ctx, network, w.addr) }
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

func (w *webTest) url(path string) string { return "https://" + appHost + ":" + w.port + path }

func get(t *testing.T, c *http.Client, u string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

// signIn takes a hand-off for alice and returns the session cookie.
func (w *webTest) signIn(t *testing.T, c *http.Client, ret string) *http.Cookie {
	t.Helper()
	e, _ := w.p.engine.Table().WebEpoch("acme", "alice")
	w.d.issue("tok-"+ret, policy.WebIdentity{Username: "alice", Epoch: e, Return: ret})
	res := get(t, c, w.url("/.gatekeeper/callback?token="+url.QueryEscape("tok-"+ret)))
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != ret {
		t.Fatalf("callback: %s to %q, want 303 to %q", res.Status, res.Header.Get("Location"), ret)
	}
	for _, ck := range res.Cookies() {
		if ck.Name == WebCookie {
			if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Domain != "" {
				t.Fatalf("session cookie %+v: want Secure, HttpOnly, SameSite=Lax, Path=/, no Domain", ck)
			}
			return ck
		}
	}
	t.Fatal("callback set no session cookie")
	return nil
}

func TestWebLoginFlow(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			w := newWebTest(t, AccessLogin)
			// From an address no rule allows: login routes admit anyone
			// to the sign-in.
			c := w.client(ipDenied, h2)
			res := get(t, c, w.url("/reports?q=1"))
			if res.StatusCode != http.StatusFound {
				t.Fatalf("without a session: %s, want 302", res.Status)
			}
			loc, _ := url.Parse(res.Header.Get("Location"))
			if loc.Host != "gate.test:8443" || loc.Path != "/app/signin" || loc.Query().Get("to") != "/reports?q=1" ||
				loc.Query().Get("host") != appHost+":"+w.port {
				t.Fatalf("sent to %s", loc)
			}
			ck := w.signIn(t, c, "/reports?q=1")
			res = get(t, c, w.url("/reports?q=1"), "Cookie", ck.Name+"="+ck.Value+"; theirs=1",
				"X-Gatekeeper-User", "mallory", "x-gatekeeper-account", "evil", "Gatekeeper-Assertion", "forged")
			if res.StatusCode != http.StatusOK {
				t.Fatalf("signed in: %s", res.Status)
			}
			var s idSeen
			json.NewDecoder(res.Body).Decode(&s)
			want := map[string][]string{HeaderUser: {"alice"}, HeaderAccount: {"acme"}, HeaderRole: {"user"}, "Cookie": {"theirs=1"}}
			if fmt.Sprint(s.Headers) != fmt.Sprint(want) {
				t.Fatalf("upstream saw %v, want %v", s.Headers, want)
			}
			// The token is good once.
			res = get(t, c, w.url("/.gatekeeper/callback?token=tok-%2Freports%3Fq%3D1"))
			if res.StatusCode != http.StatusBadRequest {
				t.Fatalf("replayed token: %s, want 400", res.Status)
			}
			// A cookie for another host, or altered, is no session.
			other := encodeWebSession(w.key, webSession{account: "acme", username: "alice", expires: time.Now().Add(time.Hour).Unix()}, "other.test")
			if res := get(t, c, w.url("/"), "Cookie", WebCookie+"="+other); res.StatusCode != http.StatusFound {
				t.Fatalf("another host's cookie: %s, want 302", res.Status)
			}
			master := encodeWebSession([]byte("another key, 32 bytes long......"), webSession{account: "acme", expires: time.Now().Add(time.Hour).Unix()}, appHost)
			if res := get(t, c, w.url("/"), "Cookie", WebCookie+"="+master); res.StatusCode != http.StatusFound {
				t.Fatalf("a cookie with another key: %s, want 302", res.Status)
			}
		})
	}
}

// TestWebRevocation: taking web access away sends the next request to
// sign in and closes a kept-alive connection that carried the person's
// requests.
func TestWebRevocation(t *testing.T) {
	w := newWebTest(t, AccessLogin)
	ck := w.signIn(t, w.client(ipDenied, false), "/")
	tc, _, err := dialTLS(t, ipDenied, w.addr, appHost)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(tc)
	req := "GET /a HTTP/1.1\r\nHost: " + appHost + ":" + w.port + "\r\nCookie: " + ck.Name + "=" + ck.Value + "\r\n\r\n"
	if _, err := tc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("signed-in request: %v %v", res, err)
	}
	res.Body.Close()
	err = w.p.st.Update(context.Background(), "acme", func(tx policy.Tx) error {
		u, err := tx.User("alice")
		u.WebAccess = false
		return errors.Join(err, tx.PutUser(u))
	})
	if err != nil {
		t.Fatal(err)
	}
	expectClosed(t, tc, 10*time.Second)
	if res := get(t, w.client(ipDenied, false), w.url("/a"), "Cookie", ck.Name+"="+ck.Value); res.StatusCode != http.StatusFound {
		t.Fatalf("after web access was taken away: %s, want 302", res.Status)
	}
}

func TestWebLogout(t *testing.T) {
	w := newWebTest(t, AccessLogin)
	c := w.client(ipDenied, false)
	ck := w.signIn(t, c, "/")
	res := get(t, c, w.url("/.gatekeeper/logout"), "Cookie", ck.Name+"="+ck.Value)
	if res.StatusCode != http.StatusOK || len(w.d.ended) != 1 {
		t.Fatalf("logout: %s, sessions ended for %v", res.Status, w.d.ended)
	}
	waitFor(t, "the old session refused", func() bool {
		res, err := c.Get(w.url("/"))
		if err != nil {
			return false
		}
		res.Body.Close()
		r2 := get(t, c, w.url("/"), "Cookie", ck.Name+"="+ck.Value)
		return r2.StatusCode == http.StatusFound
	})
}

// TestWebAddressAndLogin: with address+login a signed-in person from an
// address no rule allows gets nothing; from an allowed one, through.
func TestWebAddressAndLogin(t *testing.T) {
	w := newWebTest(t, AccessAddressLogin)
	ck := w.signIn(t, w.client(ipAllowed, false), "/")
	if _, err := w.client(ipDenied, false).Get(w.url("/")); err == nil {
		t.Fatal("address+login from a denied address got an answer")
	}
	if res := get(t, w.client(ipAllowed, false), w.url("/"), "Cookie", ck.Name+"="+ck.Value); res.StatusCode != http.StatusOK {
		t.Fatalf("from an allowed address, signed in: %s", res.Status)
	}
	if res := get(t, w.client(ipAllowed, false), w.url("/")); res.StatusCode != http.StatusFound {
		t.Fatalf("from an allowed address, not signed in: %s, want 302", res.Status)
	}
}

// TestWebMisdirected: a request whose Host is not the name the
// connection was routed by is refused.
func TestWebMisdirected(t *testing.T) {
	w := newWebTest(t, AccessLogin)
	c := w.client(ipDenied, false)
	req, _ := http.NewRequest(http.MethodGet, w.url("/"), nil)
	req.Host = "other.test"
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("Host other than the sni: %s, want 421", res.Status)
	}
}

// TestIdentityHeadersStripped: on an address route, fast path and
// net/http path alike, the upstream never sees identity headers a client
// sent, nor ones named in Connection.
func TestIdentityHeadersStripped(t *testing.T) {
	p := newPolicy(t)
	p.account("acme", policy.ModeOn, ipAllowed+"/32")
	up := newIdentityUpstream(t)
	px := startProxy(t, Options{Engine: p.engine, TLS: tlsConfig(t),
		Listeners: []Listener{{Name: "web", Addr: "127.0.0.1:0", Mode: ModeHTTP,
			Routes: []Route{{Account: "acme", Upstream: up}}}}})
	for _, h2 := range []bool{false, true} {
		c := httpClient(ipAllowed, "", h2)
		req, _ := http.NewRequest(http.MethodGet, "https://"+px.addr("web")+"/x", nil)
		req.Header.Set("X-Gatekeeper-User", "mallory")
		req.Header.Set("X-GATEKEEPER-ROLE", "master")
		req.Header.Set("Gatekeeper-Assertion", "forged")
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var s idSeen
		json.NewDecoder(res.Body).Decode(&s)
		res.Body.Close()
		for k := range s.Headers {
			if k != "Cookie" {
				t.Errorf("h2=%v: upstream saw %s: %v", h2, k, s.Headers[k])
			}
		}
	}
	// The fast path, by hand: a header named in Connection is dropped too.
	tc, _, err := dialTLS(t, ipAllowed, px.addr("web"), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	tc.Write([]byte("GET /y HTTP/1.1\r\nHost: x\r\nConnection: X-Other\r\nX-Other: 1\r\nx-gatekeeper-user: mallory\r\ngatekeeper-assertion: f\r\n\r\n"))
	res, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	var s idSeen
	json.NewDecoder(res.Body).Decode(&s)
	if len(s.Headers) != 0 {
		t.Fatalf("fast path: upstream saw %v", s.Headers)
	}
}

func TestWebRouteNeedsSignIn(t *testing.T) {
	p := newPolicy(t)
	_, err := New(context.Background(), Options{Engine: p.engine, TLS: tlsConfig(t),
		Listeners: []Listener{{Name: "web", Addr: "127.0.0.1:0", Mode: ModeHTTP,
			Routes: []Route{{SNI: appHost, Account: "acme", Upstream: "127.0.0.1:1", Access: AccessLogin}}}}})
	if err == nil || !strings.Contains(err.Error(), "sign-in") {
		t.Fatalf("a login route without WebOptions: %v", err)
	}
}

// asserterDouble signs "assert:ACCOUNT:USER:AUDIENCE", or fails.
type asserterDouble struct{ fail bool }

func (a asserterDouble) Assert(_ context.Context, account, user, audience string) (string, error) {
	if a.fail {
		return "", errors.New("no key")
	}
	return "assert:" + account + ":" + user + ":" + audience, nil
}

// TestWebAssertion: a signed-in request carries the asserter's
// assertion for the route's address; one the asserter cannot sign for is
// refused, not sent without; the JWKS is served on the route.
func TestWebAssertion(t *testing.T) {
	for _, fail := range []bool{false, true} {
		w := newWebTest(t, AccessLogin, func(o *WebOptions) {
			o.Asserter = asserterDouble{fail: fail}
			o.JWKS = http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { rw.Write([]byte(`{"keys":[]}`)) })
		})
		c := w.client(ipDenied, false)
		ck := w.signIn(t, c, "/")
		res := get(t, c, w.url("/"), "Cookie", ck.Name+"="+ck.Value)
		if fail {
			if res.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("without an assertion: %s, want 503", res.Status)
			}
			continue
		}
		var s idSeen
		json.NewDecoder(res.Body).Decode(&s)
		if got := s.Headers[HeaderAssertion]; len(got) != 1 || got[0] != "assert:acme:alice:https://"+appHost {
			t.Fatalf("upstream saw assertion %v", got)
		}
		if res := get(t, c, w.url(pathJWKS)); res.StatusCode != http.StatusOK {
			t.Fatalf("JWKS: %s", res.Status)
		}
	}
}
