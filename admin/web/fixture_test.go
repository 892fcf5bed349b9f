package web

import (
	"context"
	"crypto/tls"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/notify"
	"github.com/gatekeeper-dev/gatekeeper/notify/mailtest"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// cheap makes argon2id fast enough for tests.
var cheap = password.Params{Memory: 64, Time: 1, Threads: 1, KeyLen: 32}

// The fixture's accounts: a parent (an enterprise), its child A, and an
// unrelated account B; the same as the admin package's tests.
const (
	acctParent = "10000"
	acctA      = "10042"
	acctB      = "10043"
)

const (
	pwParent = "parent-master-pw-1"
	pwA      = "a-master-password-1"
	pwB      = "b-master-password-1"
	pwAlice  = "alice-password-123"
	pwBob    = "bob-password-1234"
	pwCarol  = "carol-password-123"
)

// fixture is the admin API with the pages mounted, over HTTPS on a
// temporary bolt store, as cmd/gatekeeper wires them.
type fixture struct {
	t     testing.TB
	bolt  *boltstore.Store
	svc   *admin.Service
	pages *Pages
	ts    *httptest.Server
	// localURL is ts as https://localhost:PORT, the passkeys' origin.
	localURL string
	reg      *prometheus.Registry
	mail     *mailtest.Server // with fixtureOptions.mail
}

type fixtureOptions struct {
	// trusted are the proxies whose X-Forwarded-For is believed.
	trusted []netip.Prefix
	// hosts are admin.ServerOptions.Hosts.
	hosts []string
	// limits are the login limits; if zero, generous ones that tests not
	// about limits never reach.
	limits admin.LoginLimits
	// now is the service's clock; if nil, time.Now.
	now func() time.Time
	// mail sends the service's mail to a real SMTP server on loopback
	// (fixture.mail).
	mail bool
}

func newFixture(t testing.TB, fo fixtureOptions) *fixture {
	t.Helper()
	bs, err := boltstore.Open(filepath.Join(t.TempDir(), "gk.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	f := &fixture{t: t, bolt: bs, reg: prometheus.NewRegistry()}
	if fo.limits == (admin.LoginLimits{}) {
		fo.limits = admin.LoginLimits{PerIP: admin.Limit{Burst: 1000}, PerLogin: admin.Limit{Burst: 1000}}
	}
	var mailer admin.Mailer
	if fo.mail {
		f.mail = mailtest.Start(t, true)
		mailer = notify.NewMail(notify.MailOptions{Addr: f.mail.Addr, From: "gatekeeper@example.com",
			TLS: &tls.Config{RootCAs: f.mail.Roots, ServerName: "127.0.0.1"}, PageURL: "https://gate.example.com:8443"})
	}
	// The listener comes first: its port is part of the passkeys' origin,
	// https://localhost:PORT (WebAuthn takes a host name, not an address).
	f.ts = httptest.NewUnstartedServer(nil)
	_, port, _ := net.SplitHostPort(f.ts.Listener.Addr().String())
	f.localURL = "https://localhost:" + port
	f.svc, err = admin.New(admin.Options{Store: bs, Registerer: f.reg, PasswordParams: cheap, LoginLimits: fo.limits,
		SecretsKey: []byte("0123456789abcdef0123456789abcdef"), Now: fo.now, Mailer: mailer, PublicURL: f.localURL,
		WebApps: func(host string) (string, bool) { return acctA, host == "app.test" }})
	if err != nil {
		t.Fatal(err)
	}
	f.pages, err = New(Options{Service: f.svc, Registerer: f.reg, TrustedProxies: fo.trusted, Hosts: fo.hosts})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := admin.NewServer(admin.ServerOptions{Service: f.svc, Registerer: f.reg, Pages: f.pages,
		TrustedProxies: fo.trusted, Hosts: fo.hosts})
	if err != nil {
		t.Fatal(err)
	}
	f.ts.Config.Handler = srv.Handler()
	f.ts.StartTLS()
	t.Cleanup(f.ts.Close)
	t.Cleanup(f.svc.WaitMail)

	ctx := context.Background()
	for _, a := range []admin.NewAccount{
		{ID: acctParent, Name: "Smith Group", Password: pwParent},
		{ID: acctA, Name: "Smith Studio", Parent: acctParent, Password: pwA},
		{ID: acctB, Name: "Jones Shop", Password: pwB},
	} {
		a.Actor, a.Role = "test", policy.RoleOperator
		if _, err := admin.CreateAccount(ctx, bs, a, cheap, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	users := []struct {
		name, display, pw string
		desk, reset       bool
	}{
		{"alice", "Alice Martin", pwAlice, true, false},
		{"bob", "Bob Stone", pwBob, false, false},
		{"carol", "", pwCarol, true, true},
	}
	err = bs.Update(ctx, acctA, func(tx policy.Tx) error {
		for _, u := range users {
			h, err := password.Hash(u.pw, cheap)
			if err != nil {
				return err
			}
			err = tx.PutUser(policy.User{Username: u.name, DisplayName: u.display, Active: true,
				DesktopAccess: u.desk, MustResetPassword: u.reset, PasswordHash: h, CreatedAt: time.Now()})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// rules returns an account's rules.
func (f *fixture) rules(account string) []policy.Rule {
	var rules []policy.Rule
	f.bolt.View(context.Background(), account, func(tx policy.Tx) error {
		rules, _ = tx.Rules()
		return nil
	})
	return rules
}

// user returns one user of an account.
func (f *fixture) user(account, name string) policy.User {
	var u policy.User
	f.bolt.View(context.Background(), account, func(tx policy.Tx) error {
		u, _ = tx.User(name)
		return nil
	})
	return u
}

// putRule adds a rule directly to the store.
func (f *fixture) putRule(account string, r policy.Rule) policy.Rule {
	f.t.Helper()
	err := f.bolt.Update(context.Background(), account, func(tx policy.Tx) error {
		var err error
		r, err = tx.PutRule(r)
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// mode returns an account's firewall mode.
func (f *fixture) mode(account string) policy.Mode {
	a, err := f.bolt.Account(context.Background(), account)
	if err != nil {
		f.t.Fatal(err)
	}
	return a.Mode
}

// lastAudit returns an account's newest audit entry.
func (f *fixture) lastAudit(account string) policy.AuditEntry {
	f.t.Helper()
	es, err := f.bolt.Audit(context.Background(), account, policy.AuditQuery{Limit: 1})
	if err != nil || len(es) == 0 {
		f.t.Fatalf("audit of %s: %v", account, err)
	}
	return es[0]
}

// client is a browser without a browser: a cookie jar that does not follow
// redirects, so that tests see each answer.
type client struct {
	f    *fixture
	http *http.Client
	// csrf is the token of the last page that had a form.
	csrf string
}

func (f *fixture) client() *client {
	jar, _ := cookiejar.New(nil)
	hc := *f.ts.Client() // a copy: each client has its own jar
	hc.Jar = jar
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &client{f: f, http: &hc}
}

// answer is what the server answered.
type answer struct {
	status int
	header http.Header
	body   string
}

// location is a redirect's target path.
func (p answer) location() string {
	u, err := url.Parse(p.header.Get("Location"))
	if err != nil {
		return "?"
	}
	if u.RawQuery != "" {
		return u.Path + "?" + u.RawQuery
	}
	return u.Path
}

// summary is the status, and for a redirect its target: "200",
// "303 /login".
func (p answer) summary() string {
	if p.status >= 300 && p.status < 400 {
		return strconv.Itoa(p.status) + " " + p.location()
	}
	return strconv.Itoa(p.status)
}

var csrfPattern = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (c *client) do(req *http.Request) answer {
	c.f.t.Helper()
	res, err := c.http.Do(req)
	if err != nil {
		c.f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.f.t.Fatal(err)
	}
	p := answer{status: res.StatusCode, header: res.Header, body: string(b)}
	if m := csrfPattern.FindStringSubmatch(p.body); m != nil {
		c.csrf = m[1]
	}
	return p
}

// get fetches a page; headers are "Key: value".
func (c *client) get(path string, headers ...string) answer {
	c.f.t.Helper()
	req, err := http.NewRequest("GET", c.f.ts.URL+path, nil)
	if err != nil {
		c.f.t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	return c.do(req)
}

// post sends a form as a browser would, without adding a CSRF token.
func (c *client) post(path string, form url.Values, headers ...string) answer {
	c.f.t.Helper()
	req, err := http.NewRequest("POST", c.f.ts.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.f.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", c.f.ts.URL)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	return c.do(req)
}

// submit posts a form with the CSRF token of the last page seen.
func (c *client) submit(path string, form url.Values) answer {
	c.f.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", c.csrf)
	return c.post(path, form)
}

// login logs in through the login page.
func (c *client) login(account, username, pw string) answer {
	c.f.t.Helper()
	path := "/login"
	if username == "" {
		path += "?as=master"
	}
	if p := c.get(path); p.status != 200 {
		c.f.t.Fatalf("login page: %d", p.status)
	}
	form := url.Values{"account": {account}, "username": {username}, "password": {pw}}
	if username == "" {
		form.Set("as", "master")
	}
	return c.submit("/login", form)
}

// mustLogin logs in and fails the test unless it worked; then it loads a
// page, for its CSRF token.
func (c *client) mustLogin(account, username, pw string) *client {
	c.f.t.Helper()
	p := c.login(account, username, pw)
	if p.status != http.StatusSeeOther || (p.location() != "/" && p.location() != "/password") {
		c.f.t.Fatalf("login %s/%s: %s\n%s", account, username, p.summary(), p.body)
	}
	c.get("/password")
	return c
}

// has fails the test unless every one of want is in the page.
func (p answer) has(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(p.body, w) {
			t.Errorf("page lacks %q:\n%s", w, p.body)
			return
		}
	}
}

// lacks fails the test if any of bad is in the page.
func (p answer) lacks(t *testing.T, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(p.body, b) {
			t.Errorf("page has %q:\n%s", b, p.body)
			return
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// regexp1 returns the first group of pattern's first match in s.
func regexp1(pattern, s string) string {
	m := regexp.MustCompile(pattern).FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return m[1]
}

func htmlUnescape(s string) string { return html.UnescapeString(s) }
