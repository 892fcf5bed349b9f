package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/assertion"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/proxy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// Web application access (issue 18) through the real binary. Chromium
// resolves every *.localhost name to loopback, so the application is at
// app.localhost and the admin listener at localhost; the Go clients dial
// 127.0.0.x themselves.

const (
	webAlicePW  = "alice-password-123"
	webMasterPW = "studio-master-password"
)

// webApp is the application behind the gate: it says whom gatekeeper
// said it serves, and remembers every X-Gatekeeper-User it was sent.
type webApp struct {
	addr string
	mu   sync.Mutex
	seen []string
	// jwks is where the gate publishes the assertion keys, once known.
	jwks string
}

// verify checks an assertion against the gate's JWKS, as an application
// would, and returns its subject.
func (a *webApp) verify(token string) string {
	a.mu.Lock()
	jwks := a.jwks
	a.mu.Unlock()
	if token == "" || jwks == "" {
		return "none"
	}
	res, err := webClient(ipOther, false).Get(jwks)
	if err != nil {
		return "no jwks: " + err.Error()
	}
	defer res.Body.Close()
	var keys assertion.JWKS
	if err := json.NewDecoder(res.Body).Decode(&keys); err != nil {
		return "bad jwks: " + err.Error()
	}
	c, err := assertion.Verify(token, keys, "https://app.localhost", time.Now())
	if err != nil {
		return "refused: " + err.Error()
	}
	return c.Subject + "@" + c.Account
}

func newWebApp(t *testing.T) *webApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &webApp{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		users := r.Header.Values(proxy.HeaderUser)
		a.mu.Lock()
		a.seen = append(a.seen, users...)
		a.mu.Unlock()
		fmt.Fprintf(w, "<!doctype html><title>app</title><p>hello %s of %s at %s</p><p>assertion: %s</p>", strings.Join(users, ","),
			r.Header.Get(proxy.HeaderAccount), r.URL.RequestURI(), a.verify(r.Header.Get(proxy.HeaderAssertion)))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return a
}

func (a *webApp) users() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

// seedWeb puts alice (desktop and web access, no reset pending) into
// account 10042 of st, creating the account if create.
func seedWeb(t *testing.T, st policy.Store, create bool) {
	t.Helper()
	ctx := context.Background()
	if create {
		if _, err := admin.CreateAccount(ctx, st, admin.NewAccount{ID: "10042", Name: "Smith Studio",
			Password: webMasterPW, Actor: "e2e", Role: "operator"}, password.Default, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	hash, _ := password.Hash(webAlicePW, password.Default)
	err := st.Update(ctx, "10042", func(tx policy.Tx) error {
		return tx.PutUser(policy.User{Username: "alice", Active: true, DesktopAccess: true, WebAccess: true,
			PasswordHash: hash, CreatedAt: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// webConfig is an instance with an http listener at gate for
// app.localhost (login) and both.localhost (address+login) of 10042.
func webConfig(storeURL, gate, adminAddr, upstream string) string {
	_, adminPort, _ := net.SplitHostPort(adminAddr)
	return fmt.Sprintf(`store: {url: "%s", snapshot: ./data/policy.snapshot}
tls: {self_signed: true}
admin: {addr: "%s", operator_token_file: ./data/operator.token, public_url: "https://localhost:%s"}
ops: {addr: "{{ops}}"}
log: {level: info, format: json}
listeners:
  - name: web
    addr: "%s"
    mode: http
    routes:
      - {sni: app.localhost, account: "10042", upstream: "%s", access: login}
      - {sni: both.localhost, account: "10042", upstream: "%s", access: address+login}
`, storeURL, adminAddr, adminPort, gate, upstream, upstream)
}

// webClient is a browser-like Go client from a loopback address: it keeps
// cookies and dials every name's port on 127.0.0.1.
func webClient(from string, follow bool) *http.Client {
	jar, _ := cookiejar.New(nil)
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			return d.DialContext(ctx, network, "127.0.0.1:"+port)
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // self-signed
	}}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

var webCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signInGo opens appURL with c, is sent to the login page, logs alice in
// and returns the page it lands on.
func signInGo(t *testing.T, c *http.Client, adminAddr, appURL string) string {
	t.Helper()
	res, err := c.Get(appURL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	_, port, _ := net.SplitHostPort(adminAddr)
	base := "https://localhost:" + port
	if res.Request.URL.Host != "localhost:"+port || res.Request.URL.Path != "/login" {
		t.Fatalf("%s led to %s, want the login page", appURL, res.Request.URL)
	}
	m := webCSRF.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no CSRF token on the login page:\n%s", b)
	}
	form := url.Values{"account": {"10042"}, "username": {"alice"}, "password": {webAlicePW}, "csrf": {string(m[1])}}
	req, _ := http.NewRequest("POST", base+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	// The sign-in page moves on to the application by itself, as a
	// browser follows its Refresh.
	to, ok := strings.CutPrefix(res.Header.Get("Refresh"), "0; url=")
	if res.StatusCode != http.StatusOK || !ok {
		t.Fatalf("after the login: %s at %s, want the page that moves on", res.Status, res.Request.URL)
	}
	if res, err = c.Get(to); err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Request.URL.String() != appURL {
		t.Fatalf("after the login: %s at %s, want 200 at %s:\n%s", res.Status, res.Request.URL, appURL, b)
	}
	return string(b)
}

// sessionCookie returns c's web session cookie for appURL.
func sessionCookie(t *testing.T, c *http.Client, appURL string) string {
	t.Helper()
	u, _ := url.Parse(appURL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == proxy.WebCookie {
			return ck.Value
		}
	}
	t.Fatalf("no %s for %s", proxy.WebCookie, appURL)
	return ""
}

// keptAlive is an HTTP/1.1 connection to the gate that carried one of
// alice's requests and stays open.
func keptAlive(t *testing.T, gate, host, cookie string) *tls.Conn {
	t.Helper()
	raw, err := dialFrom(ipOther, gate)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, ServerName: host, NextProtos: []string{"http/1.1"}})
	t.Cleanup(func() { tc.Close() })
	_, port, _ := net.SplitHostPort(gate)
	fmt.Fprintf(tc, "GET /kept HTTP/1.1\r\nHost: %s:%s\r\nCookie: %s=%s\r\n\r\n", host, port, proxy.WebCookie, cookie)
	res, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("a signed-in request on a kept-alive connection: %v %v", res, err)
	}
	io.Copy(io.Discard, res.Body)
	return tc
}

// closedWithin waits for the gate to close c and says how long it took.
func closedWithin(t *testing.T, c net.Conn, bound time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(bound))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("kept-alive connection still open after %v", bound)
	}
	return time.Since(start)
}

// TestWebAppSignInInBrowser is issue 18's story in Chromium: the
// application's URL sends the browser to sign in, alice signs in as an
// employee and lands on the page she asked for; the application hears
// who she is and never a forged name; the same person is refused on an
// address+login route from an address without a rule and let through
// from one with; redirect tricks and a replayed hand-off are refused;
// offboarding her closes her kept-alive connection and sends her back to
// sign in.
func TestWebAppSignInInBrowser(t *testing.T) {
	dir := prepareDir(t)
	st, err := boltstore.Open(filepath.Join(dir, "data", "gatekeeper.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	seedWeb(t, st, true)
	st.Close()
	app := newWebApp(t)
	gate, adminAddr := freeAddr(t), freeAddr(t)
	g := startGatekeeper(t, dir, webConfig("file:./data/gatekeeper.db", gate, adminAddr, app.addr))
	_, gatePort, _ := net.SplitHostPort(gate)
	_, adminPort, _ := net.SplitHostPort(adminAddr)
	appURL := "https://app.localhost:" + gatePort + "/reports?month=11"
	app.mu.Lock()
	app.jwks = "https://app.localhost:" + gatePort + "/.well-known/gatekeeper/jwks.json"
	app.mu.Unlock()

	tab := browser.Tab(t)
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tab, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(tab, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}
	run("open the application", chromedp.Navigate(appURL))
	if loc := location(); !strings.HasPrefix(loc, "https://localhost:"+adminPort+"/login") {
		t.Fatalf("the application's URL led to %s, want the login page", loc)
	}
	run("sign in", chromedp.SendKeys(chromedp.ID("account"), "10042"),
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), webAlicePW))
	// The login's answer is a chain of redirects that ends on another
	// host: wait for where it ends.
	run("log in", chromedp.Click(chromedp.CSS(`form[action="/login"] button[type="submit"].primary`)))
	// The login's answer leads on to the application: wait for its page.
	// The application checked the assertion against the gate's JWKS.
	want := "hello alice of 10042 at /reports?month=11 assertion: alice@10042"
	var at, body string
	for start := time.Now(); at != appURL || !strings.Contains(strings.Join(strings.Fields(body), " "), want); {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("after the login the browser is at %s, want %s with %q:\n%s", at, appURL, want, body)
		}
		time.Sleep(20 * time.Millisecond)
		at = location()
		body, _ = chromedp.Run(tab, chromedp.Text(chromedp.CSS("body")))
	}
	cookies, err := chromedp.Call(tab, network.GetCookies, network.GetCookiesParams{URLs: []string{appURL}})
	if err != nil {
		t.Fatal(err)
	}
	var cookie string
	for _, c := range cookies.Cookies {
		if c.Name == proxy.WebCookie {
			if !c.Secure || !c.HTTPOnly || c.SameSite != network.CookieSameSiteLax || c.Path != "/" {
				t.Fatalf("the browser's web session cookie: %+v", c)
			}
			cookie = c.Value
		}
	}
	if cookie == "" {
		t.Fatal("the browser has no web session cookie")
	}

	// A forged name, with the session and without, never reaches the
	// application.
	c := webClient(ipOther, false)
	for _, ck := range []string{cookie, ""} {
		req, _ := http.NewRequest("GET", "https://app.localhost:"+gatePort+"/forged", nil)
		req.Header.Set("X-Gatekeeper-User", "mallory")
		req.Header.Set("Connection", "X-Gatekeeper-User")
		if ck != "" {
			req.Header.Set("Cookie", proxy.WebCookie+"="+ck)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	for _, u := range app.users() {
		if u != "alice" {
			t.Fatalf("the application was sent X-Gatekeeper-User %q", u)
		}
	}

	// address+login: refused from an address without a rule, signed in
	// or not; with a rule, the sign-in decides.
	bothURL := "https://both.localhost:" + gatePort + "/"
	if _, err := webClient(ipDenied, true).Get(bothURL); err == nil {
		t.Fatal("address+login answered an address without a rule")
	}
	master := login(t, adminAddr, "10042", webMasterPW)
	if code, _, _ := master.addRule("10042", ipAllowed); code != http.StatusCreated {
		t.Fatalf("add rule: %d", code)
	}
	waitFor(t, 10*time.Second, "the rule at the gate", func() bool {
		res, err := webClient(ipAllowed, false).Get(bothURL)
		if err == nil {
			res.Body.Close()
		}
		return err == nil && res.StatusCode == http.StatusFound
	})
	alice := webClient(ipAllowed, true)
	if page := signInGo(t, alice, adminAddr, bothURL); !strings.Contains(page, "hello alice") {
		t.Fatalf("address+login from an allowed address, signed in: %s", page)
	}
	// login: the same person from any address.
	if page := signInGo(t, webClient(ipDenied, true), adminAddr, appURL); !strings.Contains(page, "hello alice") {
		t.Fatalf("login from an address without a rule: %s", page)
	}

	// Redirect tricks, each tried by a signed-in person: refused at the
	// admin listener, no hand-off issued.
	appHost := url.QueryEscape("app.localhost:" + gatePort)
	for _, q := range []string{
		"host=" + appHost + "&to=" + url.QueryEscape("//evil.example/"),
		"host=" + appHost + "&to=" + url.QueryEscape("/\\evil.example"),
		"host=" + appHost + "&to=%252F%252Fevil.example",
		"host=" + appHost + "&to=" + url.QueryEscape("/%2F%2Fevil.example"),
		"host=" + appHost + "&to=" + url.QueryEscape("/%5Cevil.example"),
		"host=" + appHost + "&to=" + url.QueryEscape("https://evil.example/"),
		"host=" + appHost + "&to=" + url.QueryEscape("javascript:alert(1)"),
		"host=" + appHost + "&to=" + url.QueryEscape("/x\r\nLocation: https://evil.example"),
		"host=evil.example&to=%2F",
		"host=" + url.QueryEscape("app.localhost@evil.example") + "&to=%2F",
	} {
		noFollow := *alice
		noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		res, err := noFollow.Get("https://localhost:" + adminPort + "/app/signin?" + q)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("/app/signin?%s: %s to %q, want 400", q, res.Status, res.Header.Get("Refresh"))
		}
	}
	// A hand-off is good once.
	noFollow := *alice
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := noFollow.Get("https://localhost:" + adminPort + "/app/signin?host=" + appHost + "&to=%2Fonce")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	callback := strings.TrimPrefix(res.Header.Get("Refresh"), "0; url=")
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(callback, "https://app.localhost:"+gatePort+"/.gatekeeper/callback?token=") {
		t.Fatalf("hand-off: %s to %q", res.Status, callback)
	}
	for i, want := range []int{http.StatusSeeOther, http.StatusBadRequest} {
		res, err := webClient(ipOther, false).Get(callback)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("hand-off taken the %d. time: %s, want %d", i+1, res.Status, want)
		}
	}

	// Offboarding closes her kept-alive connection and sends her back to
	// sign in.
	kept := keptAlive(t, gate, "app.localhost", cookie)
	if code, b, _ := master.call("POST", "/api/v1/accounts/10042/users/alice/offboard", nil); code != http.StatusOK {
		t.Fatalf("offboard: %d %s", code, b)
	}
	took := closedWithin(t, kept, 10*time.Second)
	t.Logf("kept-alive connection closed %v after the offboarding answered", took)
	res, err = webClient(ipOther, false).Do(func() *http.Request {
		req, _ := http.NewRequest("GET", appURL, nil)
		req.Header.Set("Cookie", proxy.WebCookie+"="+cookie)
		return req
	}())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound {
		t.Fatalf("after the offboarding: %s, want 302 to sign in", res.Status)
	}
	if n := g.metric("gatekeeper_http_requests_total", "verdict", "signed_in"); n < 3 {
		t.Errorf("signed_in requests counted: %v", n)
	}
}

// TestWebAccessOffOnRedisFleet: two instances on one Redis; alice holds
// a kept-alive connection on each; turning her web access off closes
// both and sends her next request on either to sign in.
func TestWebAccessOffOnRedisFleet(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	st, err := redisstore.Open(ctx, rs.URL(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	seedWeb(t, st, true)
	app := newWebApp(t)
	// Every instance of a fleet reads the same secrets key.
	key := base64.RawURLEncoding.EncodeToString([]byte("e2e web key, thirty-two bytes..."))
	type inst struct {
		g           *gatekeeper
		gate, admin string
	}
	var fleet []inst
	for range 2 {
		dir := prepareDir(t)
		if err := os.WriteFile(filepath.Join(dir, "data", "secrets.key"), []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		in := inst{gate: freeAddr(t), admin: freeAddr(t)}
		in.g = startGatekeeper(t, dir, webConfig(rs.URL(), in.gate, in.admin, app.addr))
		fleet = append(fleet, in)
	}
	// Signed in through the first instance, her session is good on both.
	var conns []*tls.Conn
	var cookies []string
	for _, in := range fleet {
		_, port, _ := net.SplitHostPort(in.gate)
		appURL := "https://app.localhost:" + port + "/"
		c := webClient(ipOther, true)
		signInGo(t, c, in.admin, appURL)
		cookies = append(cookies, sessionCookie(t, c, appURL))
		conns = append(conns, keptAlive(t, in.gate, "app.localhost", cookies[len(cookies)-1]))
	}
	// One hand-off, taken on both instances at once, as behind a load
	// balancer (one Host for both): exactly one gets it.
	signedIn := webClient(ipOther, true)
	_, port0, _ := net.SplitHostPort(fleet[0].gate)
	signInGo(t, signedIn, fleet[0].admin, "https://app.localhost:"+port0+"/")
	noFollow := *signedIn
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := noFollow.Get("https://localhost:" + adminPort(fleet[0].admin) + "/app/signin?host=" +
		url.QueryEscape("app.localhost:"+port0) + "&to=%2F")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	callback := strings.TrimPrefix(res.Header.Get("Refresh"), "0; url=")
	token := callback[strings.Index(callback, "?"):]
	var mu sync.Mutex
	var taken []int
	var wg sync.WaitGroup
	for range 3 {
		for _, in := range fleet {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, port, _ := net.SplitHostPort(in.gate)
				req, _ := http.NewRequest("GET", "https://app.localhost:"+port+"/.gatekeeper/callback"+token, nil)
				req.Host = "app.localhost:" + port0
				res, err := webClient(ipOther, false).Do(req)
				if err != nil {
					return
				}
				res.Body.Close()
				mu.Lock()
				taken = append(taken, res.StatusCode)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	ok := 0
	for _, code := range taken {
		if code == http.StatusSeeOther {
			ok++
		}
	}
	if ok != 1 || len(taken) != 2*3 {
		t.Fatalf("one hand-off taken %d times on the fleet (answers %v)", ok, taken)
	}
	t.Logf("one hand-off tried 6 times on 2 instances at once: %v", taken)

	master := login(t, fleet[0].admin, "10042", webMasterPW)
	if code, b, _ := master.call("PATCH", "/api/v1/accounts/10042/users/alice", map[string]any{"web_access": false}); code != http.StatusOK {
		t.Fatalf("web access off: %d %s", code, b)
	}
	for i, c := range conns {
		t.Logf("instance %d closed the kept-alive connection %v after the change answered", i, closedWithin(t, c, 10*time.Second))
	}
	for i, in := range fleet {
		_, port, _ := net.SplitHostPort(in.gate)
		req, _ := http.NewRequest("GET", "https://app.localhost:"+port+"/", nil)
		req.Header.Set("Cookie", proxy.WebCookie+"="+cookies[i])
		res, err := webClient(ipOther, false).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusFound {
			t.Fatalf("instance %d after web access was taken away: %s", i, res.Status)
		}
	}
	for _, u := range app.users() {
		if u != "alice" {
			t.Fatalf("the application was sent X-Gatekeeper-User %q", u)
		}
	}
}

func adminPort(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
