package web

// The browser tests drive a real Chromium (Debian's chromium package)
// through chromedp against the pages over HTTPS, as an employee and an
// account holder would use them. One browser is started for the package,
// on first use, and each test gets its own browser context (its own
// cookies) in it. Without a browser the tests skip, except in CI (CI set),
// where a missing browser fails them.
//
// With GK_SCREENSHOTS=1 they also write the screenshots of the main pages,
// at desktop (1280px) and phone (390px) widths, to docs/screenshots/.

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/gatekeeper-dev/gatekeeper/browsertest"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

var browser browsertest.Browser

func TestMain(m *testing.M) {
	code := m.Run()
	browser.Close()
	os.Exit(code)
}

// tab is one test's view of the browser: a tab in a browser context of its
// own, and the server it talks to.
type tab struct {
	t   *testing.T
	f   *fixture
	ctx context.Context
	// base is the address pages are opened at; f.ts.URL if empty.
	base string
}

// newTab opens a tab for the test, or skips it when there is no browser
// (fails it in CI). Requests from the tab carry X-Forwarded-For: clientIP
// when it is set, which the fixture believes from 127.0.0.1 when started
// with that trusted proxy, so that the pages see a realistic address.
func newTab(t *testing.T, f *fixture, clientIP string) *tab {
	t.Helper()
	tctx := browser.Tab(t)
	tb := &tab{t: t, f: f, ctx: tctx}
	if clientIP != "" {
		_, err := chromedp.Call(tctx, network.SetExtraHTTPHeaders,
			network.SetExtraHTTPHeadersParams{Headers: network.Headers{"X-Forwarded-For": clientIP}})
		if err != nil {
			t.Fatal(err)
		}
	}
	tb.do(chromedp.EmulateViewport(1280, 800))
	return tb
}

func (b *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatal(err)
	}
}

// open loads a page and returns its status.
func (b *tab) open(path string) int64 {
	b.t.Helper()
	base := b.base
	if base == "" {
		base = b.f.ts.URL
	}
	res, err := chromedp.RunResponse(b.ctx, chromedp.Navigate(base+path))
	if err != nil {
		b.t.Fatalf("open %s: %v", path, err)
	}
	return res.Status
}

// press clicks what sel selects, waits for the page it leads to, and
// returns its status.
func (b *tab) press(sel string) int64 {
	b.t.Helper()
	res, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("press %s: %v", sel, err)
	}
	return res.Status
}

// typeInto types text into the field with id, as a person would.
func (b *tab) typeInto(id, text string) {
	b.t.Helper()
	b.do(chromedp.SendKeys(chromedp.ID(id), text))
}

// path is the path (and query) of the page shown.
func (b *tab) path() string {
	b.t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	u, err := url.Parse(loc)
	if err != nil {
		b.t.Fatal(err)
	}
	return u.RequestURI()
}

// text returns the text of what sel selects.
func (b *tab) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// sees fails the test unless the page's main text has every one of want.
func (b *tab) sees(want ...string) {
	b.t.Helper()
	body := b.text("body")
	for _, w := range want {
		if !strings.Contains(body, w) {
			b.t.Fatalf("the page at %s does not say %q:\n%s", b.path(), w, body)
		}
	}
}

// at fails the test unless the tab shows path.
func (b *tab) at(path string) {
	b.t.Helper()
	if got := b.path(); got != path {
		b.t.Fatalf("at %s, want %s:\n%s", got, path, b.text("body"))
	}
}

// screenshot writes the page at desktop and phone widths to
// docs/screenshots/NAME-desktop.png and NAME-phone.png when GK_SCREENSHOTS
// is set, and leaves the tab at desktop width.
func (b *tab) screenshot(name string) {
	b.t.Helper()
	if os.Getenv("GK_SCREENSHOTS") == "" {
		return
	}
	dir := filepath.Join("..", "..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	for _, v := range []struct {
		suffix string
		view   chromedp.Action[chromedp.Void]
	}{
		{"desktop", chromedp.EmulateViewport(1280, 800)},
		{"phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)},
	} {
		b.do(v.view)
		png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			b.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+"-"+v.suffix+".png"), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	b.do(chromedp.EmulateViewport(1280, 800))
}

// startEngine runs the policy engine on the fixture's store, as the proxy
// does, to see what the gate would let through.
func startEngine(t *testing.T, f *fixture) *policy.Engine {
	t.Helper()
	e, err := policy.NewEngine(policy.Options{Source: f.bolt})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// waitVerdict waits until the engine decides want for addr in account.
func waitVerdict(t *testing.T, e *policy.Engine, account, addr string, want policy.Verdict) {
	t.Helper()
	a := netip.MustParseAddr(addr)
	deadline := time.Now().Add(5 * time.Second)
	for e.Check(account, a).Verdict != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s in %s: %v, want %v", addr, account, e.Check(account, a).Verdict, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var proxyTrust = fixtureOptions{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}

// TestBrowserEmployee: an employee who must reset her password logs in,
// sets a new one, unblocks her address, and the policy the proxies enforce
// lets that address in, and no other. A colleague without desktop access
// is told why he cannot.
func TestBrowserEmployee(t *testing.T) {
	f := newFixture(t, proxyTrust)
	engine := startEngine(t, f)
	const home, elsewhere = "203.0.113.7", "198.51.100.99"
	waitVerdict(t, engine, acctA, home, policy.Denied)

	b := newTab(t, f, home)
	if st := b.open("/me"); st != 200 {
		t.Fatalf("login page: %d", st)
	}
	b.at("/login")
	b.sees("Log in", "For employees")
	b.screenshot("login")
	b.typeInto("account", acctA)
	b.typeInto("username", "carol")
	b.typeInto("password", pwCarol)
	if st := b.press(`button[type="submit"].primary`); st != 200 {
		t.Fatalf("log in: %d", st)
	}
	b.at("/password")
	b.sees("Choose a new password", "Before you go on")
	b.screenshot("password-reset")

	b.typeInto("current", pwCarol)
	b.typeInto("new", "carol-chose-this-1")
	b.typeInto("repeat", "carol-chose-this-1")
	b.press(`main button[type="submit"]`)
	b.at("/me")
	b.sees("Your new password is set.", "Your IP address is "+home, "Unblock "+home)
	if f.user(acctA, "carol").MustResetPassword {
		t.Fatal("carol must still reset her password")
	}

	b.press(`form[action="/me/unblock"] button`)
	b.at("/me")
	b.sees(home+" is unblocked until", "It is unblocked until", "this address", "Remove")
	rules := f.rules(acctA)
	if len(rules) != 1 || rules[0].Prefix != netip.MustParsePrefix(home+"/32") || rules[0].Owner != "carol" ||
		rules[0].Source != policy.SourceUnblock || rules[0].ExpiresAt.IsZero() {
		t.Fatalf("rules after unblocking: %+v", rules)
	}
	// The gate: the policy the proxies enforce now lets her address in, and
	// only hers.
	waitVerdict(t, engine, acctA, home, policy.Allowed)
	waitVerdict(t, engine, acctA, elsewhere, policy.Denied)
	b.screenshot("me")

	// A colleague without desktop access sees why there is no button.
	bob := newTab(t, f, elsewhere)
	bob.open("/login")
	bob.typeInto("account", acctA)
	bob.typeInto("username", "bob")
	bob.typeInto("password", pwBob)
	bob.press(`button[type="submit"].primary`)
	bob.at("/me")
	bob.sees("Your IP address is "+elsewhere, "Your login does not have desktop access")
	bob.screenshot("me-no-desktop-access")

	// Removing her grant closes the gate again.
	b.press(`form[action^="/me/grants/"] button`)
	b.sees(home + " is no longer unblocked.")
	waitVerdict(t, engine, acctA, home, policy.Denied)
}

// TestBrowserMaster: the account holder adds an address and deletes one,
// turns the firewall off through its warning, and offboards an employee.
func TestBrowserMaster(t *testing.T) {
	f := newFixture(t, proxyTrust)
	engine := startEngine(t, f)
	now := time.Now()
	studio := f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("192.0.2.0/28"), Source: policy.SourceManual,
		Note: "Studio network", CreatedBy: "master", CreatedAt: now.Add(-40 * 24 * time.Hour)})
	if err := f.bolt.RecordUsage(context.Background(), []policy.Usage{{Account: acctA, Rule: studio.ID,
		LastUsed: now.Add(-3 * time.Minute), Hits: 1841}}); err != nil {
		t.Fatal(err)
	}
	f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("198.51.100.44/32"), Source: policy.SourceManual,
		Note: "Bookkeeper, until the audit is done", CreatedBy: "master", CreatedAt: now.Add(-2 * 24 * time.Hour),
		ExpiresAt: now.Add(5 * 24 * time.Hour)})
	alice := newTab(t, f, "203.0.113.7")
	alice.open("/login")
	alice.typeInto("account", acctA)
	alice.typeInto("username", "alice")
	alice.typeInto("password", pwAlice)
	alice.press(`button[type="submit"].primary`)
	alice.press(`form[action="/me/unblock"] button`)
	waitVerdict(t, engine, acctA, "203.0.113.7", policy.Allowed)

	const office = "198.51.100.20"
	b := newTab(t, f, office)
	b.open("/login?as=master")
	b.sees("Log in as the account holder", "Master password")
	b.typeInto("account", acctA)
	b.typeInto("password", pwA)
	b.press(`button[type="submit"].primary`)
	b.at("/accounts/10042/firewall")
	b.sees("Smith Studio", "Studio network", "Bookkeeper, until the audit is done", "1841 connections", "alice",
		"Your address right now is "+office)

	// Add the office's address.
	waitVerdict(t, engine, acctA, office, policy.Denied)
	b.typeInto("cidr", office)
	b.typeInto("note", "Front desk PC")
	b.press(`form[action$="/firewall/rules"] button[type="submit"]`)
	b.at("/accounts/10042/firewall")
	b.sees("Added " + office + "/32 (Front desk PC).")
	var added policy.RuleID
	for _, r := range f.rules(acctA) {
		if r.Prefix == netip.MustParsePrefix(office+"/32") && r.Note == "Front desk PC" && r.CreatedBy == "master" {
			added = r.ID
		}
	}
	if added == 0 {
		t.Fatalf("rule not added: %+v", f.rules(acctA))
	}
	waitVerdict(t, engine, acctA, office, policy.Allowed)
	b.screenshot("firewall")

	// Delete the bookkeeper's address, through the confirmation page.
	b.press(`a[aria-label="Delete the rule for 198.51.100.44/32"]`)
	b.sees("Delete this rule?", "Bookkeeper, until the audit is done", "closed within a second")
	b.screenshot("delete-rule")
	b.press(`main button.danger`)
	b.at("/accounts/10042/firewall")
	b.sees("Deleted the rule for 198.51.100.44/32.")
	for _, r := range f.rules(acctA) {
		if r.Prefix == netip.MustParsePrefix("198.51.100.44/32") {
			t.Fatalf("rule not deleted: %+v", r)
		}
	}

	// Turn the firewall off: the warning first, then the banner.
	b.do(chromedp.Click(chromedp.ID("mode-off")))
	b.press(`form[action$="/firewall/mode"] button[type="submit"]`)
	b.sees("Turn the firewall off?", "anyone on the internet")
	if f.mode(acctA) != policy.ModeOn {
		t.Fatal("the firewall went off before the confirmation")
	}
	b.screenshot("firewall-off-warning")
	b.press(`main button.danger`)
	b.at("/accounts/10042/firewall")
	b.sees("The firewall is OFF.", "The firewall is off: every address can connect.")
	if f.mode(acctA) != policy.ModeOff {
		t.Fatalf("mode %s", f.mode(acctA))
	}
	waitVerdict(t, engine, acctA, "198.51.100.99", policy.Allowed)
	b.do(chromedp.ScrollIntoView(chromedp.CSS("body"))) // top of the page
	b.screenshot("firewall-off")

	// Offboard alice: the page says what will happen, then it happens.
	b.open("/accounts/10042/users")
	b.sees("Alice Martin", "Bob Stone", "203.0.113.7", "The firewall is OFF.")
	b.screenshot("staff")
	b.press(`a[href="/accounts/10042/users/alice/offboard"]`)
	b.sees("Offboard Alice Martin (alice)?", "Their 1 unblocked address is removed: 203.0.113.7")
	b.screenshot("offboard")
	b.press(`main button.danger`)
	b.at("/accounts/10042/users")
	b.sees("alice is offboarded: login deactivated, desktop access off, 1 session ended, 1 unblocked address removed.")
	if u := f.user(acctA, "alice"); u.Active || u.DesktopAccess {
		t.Fatalf("alice after offboarding: %+v", u)
	}
	for _, r := range f.rules(acctA) {
		if r.Owner == "alice" {
			t.Fatalf("alice's grant survived: %+v", r)
		}
	}
	// Her open session is gone: her next page is the login page.
	alice.open("/me")
	alice.at("/login")

	// The receipt, as printed for the owner's files.
	b.open("/accounts/10042/users/alice/offboarding")
	b.sees("Offboarding receipt: Alice Martin (alice)", "Unblocked addresses removed (1)", "203.0.113.7/32")
	b.screenshot("offboarding-receipt")
	// Printed, it is the receipt alone: no menu, banner or buttons.
	if _, err := chromedp.Call(b.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"}); err != nil {
		t.Fatal(err)
	}
	shown, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll(
		'header.top, .banner, .noprint, .foot, article.receipt')).filter(e => getComputedStyle(e).display != 'none').map(e => e.className)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(shown) != 1 || shown[0] != "receipt" {
		t.Fatalf("printed, these show: %q; want only the receipt", shown)
	}
	if _, err := chromedp.Call(b.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}); err != nil {
		t.Fatal(err)
	}

	b.open("/accounts/10042/audit")
	b.sees("offboarded a user", "changed the firewall mode", "deleted a rule", "added a rule", "unblocked an address")
	b.screenshot("audit")
}

// TestBrowserAccountSwitcher: a parent account's master switches to a
// child account without JavaScript.
func TestBrowserAccountSwitcher(t *testing.T) {
	f := newFixture(t, proxyTrust)
	b := newTab(t, f, "198.51.100.20")
	b.open("/login?as=master")
	b.typeInto("account", acctParent)
	b.typeInto("password", pwParent)
	b.press(`button[type="submit"].primary`)
	b.open("/accounts/10000/users")
	b.do(chromedp.SetValue(chromedp.ID("switch-account"), acctA))
	b.press(`form.switcher button`)
	b.at("/accounts/10042/users")
	b.sees("Smith Studio", "Alice Martin")
	b.screenshot("switcher")
}

// TestBrowserCSRF: the browser keeps the session cookie Secure, HttpOnly
// and SameSite=Strict; a form whose CSRF token is taken out is refused
// with a 403 page, by the browser and by a plain HTTP client that holds
// the same session cookie.
func TestBrowserCSRF(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	b := newTab(t, f, "")
	b.open("/login?as=master")
	b.typeInto("account", acctA)
	b.typeInto("password", pwA)
	b.press(`button[type="submit"].primary`)
	b.at("/accounts/10042/firewall")

	res, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{f.ts.URL + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	var session *network.Cookie
	for _, c := range res.Cookies {
		if c.Name == sessionCookie {
			session = c
		}
	}
	if session == nil || !session.Secure || !session.HTTPOnly || session.SameSite != network.CookieSameSiteStrict ||
		session.Path != "/" || !session.Session {
		t.Fatalf("the browser's session cookie: %+v", session)
	}

	// The page's scripts may not run (CSP), but DevTools may: take the
	// token out of the add-a-rule form, fill it in and send it.
	b.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('form[action$="/firewall/rules"] input[name="csrf"]').remove()`))
	b.typeInto("cidr", "198.51.100.7")
	if st := b.press(`form[action$="/firewall/rules"] button[type="submit"]`); st != http.StatusForbidden {
		t.Fatalf("a form without its token: %d", st)
	}
	b.sees("Form refused", "This form was not accepted")
	if len(f.rules(acctA)) != 0 {
		t.Fatalf("a refused form added a rule: %+v", f.rules(acctA))
	}

	// A plain client with the browser's session cookie and no token.
	c := f.client()
	u, _ := url.Parse(f.ts.URL)
	c.http.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: session.Value}})
	if p := c.get("/accounts/10042/firewall"); p.status != 200 {
		t.Fatalf("the session works from a plain client: %s", p.summary())
	}
	p := c.post("/accounts/10042/firewall/rules", url.Values{"cidr": {"198.51.100.7"}})
	if p.status != http.StatusForbidden {
		t.Fatalf("a plain post without the token: %s", p.summary())
	}
	p.has(t, "This form was not accepted")
	if p := c.submit("/accounts/10042/firewall/rules", url.Values{"cidr": {"198.51.100.7"}}); p.summary() != "303 /accounts/10042/firewall" {
		t.Fatalf("with the token: %s", p.summary())
	}
}

// TestBrowserSecondFactor: in Chromium, an employee sets up an
// authenticator app from the QR code on the security page, sees the
// recovery codes once, logs out, and logs in again in two steps, the
// second asking only for the code. The pages run no script.
func TestBrowserSecondFactor(t *testing.T) {
	clock := newStepClock()
	fo := proxyTrust
	fo.now = clock.now
	f := newFixture(t, fo)
	b := newTab(t, f, "203.0.113.7")
	b.open("/login")
	b.typeInto("account", acctA)
	b.typeInto("username", "alice")
	b.typeInto("password", pwAlice)
	b.press(`button[type="submit"].primary`)
	b.at("/me")
	b.press(`a[href="/security"]`)
	b.at("/security")
	b.sees("Sign-in and security", "Only your password protects your login", "Where you are logged in", "(this browser)")
	b.press(`form[action="/security/totp"] button`)
	b.sees("Set up an authenticator app", "Enter this key instead")
	loaded, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.querySelector('img[src="/security/totp/qr.png"]').naturalWidth === 240`))
	if err != nil || !loaded {
		t.Fatalf("QR code image not shown: %v", err)
	}
	b.screenshot("security-enrol")
	secret := b.text("main .hint code")
	b.typeInto("code", clock.code(t, secret))
	b.press(`form[action="/security/totp/confirm"] button`)
	b.sees("Your recovery codes", "shown only now")
	if n := strings.Count(b.text("ol.codes"), "-"); n != 10 {
		t.Fatalf("%d recovery codes shown", n)
	}
	b.press(`nav form[action="/logout"] button`)
	b.at("/login")

	clock.step()
	b.typeInto("account", acctA)
	b.typeInto("username", "alice")
	b.typeInto("password", pwAlice)
	b.press(`button[type="submit"].primary`)
	b.sees("Enter your code", "Your password is right")
	b.screenshot("login-code")
	b.typeInto("otp", clock.code(t, secret))
	b.press(`form[action="/login/otp"] button`)
	b.at("/me")
	scripts, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.scripts.length`))
	if err != nil || scripts != 0 {
		t.Fatalf("%d scripts on the page: %v", scripts, err)
	}
}
