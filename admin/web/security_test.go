package web

import (
	"bytes"
	"image/png"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
)

// stepClock is a clock the test moves a TOTP step (30 s) at a time.
type stepClock struct{ ns atomic.Int64 }

func newStepClock() *stepClock {
	c := &stepClock{}
	c.ns.Store(time.Now().Truncate(30 * time.Second).UnixNano())
	return c
}

func (c *stepClock) now() time.Time { return time.Unix(0, c.ns.Load()) }
func (c *stepClock) step()          { c.ns.Add(int64(30 * time.Second)) }
func (c *stepClock) code(t *testing.T, secret string) string {
	t.Helper()
	code, err := totp.GenerateCode(secret, c.now())
	if err != nil {
		t.Fatal(err)
	}
	return code
}

var ticketPattern = `name="ticket" value="([^"]+)"`

// enrol sets up an authenticator app through the security page and
// returns the secret and the recovery codes the page showed.
func (c *client) enrol(t *testing.T, clock *stepClock) (string, []string) {
	t.Helper()
	c.get("/security")
	p := c.submit("/security/totp", nil)
	if p.status != 200 {
		t.Fatalf("begin: %s", p.summary())
	}
	p.has(t, `<img src="/security/totp/qr.png"`)
	p.lacks(t, "<script")
	secret := regexp1(`Enter this key instead: <code>([A-Z2-7]+)</code>`, p.body)
	if secret == "" {
		t.Fatalf("no secret on the page:\n%s", p.body)
	}
	img := c.get("/security/totp/qr.png")
	if img.status != 200 || img.header.Get("Content-Type") != "image/png" {
		t.Fatalf("qr: %s %s", img.summary(), img.header)
	}
	if _, err := png.Decode(bytes.NewReader([]byte(img.body))); err != nil {
		t.Fatalf("qr is no PNG: %v", err)
	}
	if p := c.submit("/security/totp/confirm", url.Values{"code": {"000000x"}}); p.status != 400 {
		t.Fatalf("wrong code: %s", p.summary())
	} else {
		p.has(t, `aria-invalid="true"`, `<img src="/security/totp/qr.png"`)
	}
	p = c.submit("/security/totp/confirm", url.Values{"code": {clock.code(t, secret)}})
	if p.status != 200 {
		t.Fatalf("confirm: %s\n%s", p.summary(), p.body)
	}
	var codes []string
	for _, m := range strings.Split(p.body, "<li><code>")[1:] {
		codes = append(codes, m[:strings.Index(m, "<")])
	}
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes on the page", len(codes))
	}
	return secret, codes
}

// TestSecondStepLogin: a person with a factor logs in on the pages in two
// steps; the second step's form holds no password, a wrong code is said
// beside the field, and a code or a recovery code completes the login.
func TestSecondStepLogin(t *testing.T) {
	clock := newStepClock()
	f := newFixture(t, fixtureOptions{now: clock.now})
	c := f.client().mustLogin(acctA, "alice", pwAlice)
	secret, codes := c.enrol(t, clock)
	c.get("/security").has(t, "10 unused recovery codes")

	b := f.client()
	p := b.login(acctA, "alice", pwAlice)
	if p.status != 200 {
		t.Fatalf("first step: %s", p.summary())
	}
	p.has(t, "Enter your code", `action="/login/otp"`, `autocomplete="one-time-code"`)
	// No inline script: the passkey form's script is a file.
	p.lacks(t, pwAlice, "<script>")
	p.has(t, `<script src="/static/passkey.js?v=`)
	ticket := htmlUnescape(regexp1(ticketPattern, p.body))
	if p := b.submit("/login/otp", url.Values{"ticket": {ticket}, "otp": {"000000"}}); p.status != 401 {
		t.Fatalf("wrong code: %s", p.summary())
	} else {
		p.has(t, "already used", `id="otp-error"`)
	}
	clock.step()
	code := clock.code(t, secret)
	if p := b.submit("/login/otp", url.Values{"ticket": {ticket}, "otp": {code}}); p.summary() != "303 /" {
		t.Fatalf("right code: %s\n%s", p.summary(), p.body)
	}
	if p := b.get("/me"); p.status != 200 {
		t.Fatalf("after login: %s", p.summary())
	}
	// The same code on another browser is refused.
	d := f.client()
	p = d.login(acctA, "alice", pwAlice)
	if p := d.submit("/login/otp", url.Values{"ticket": {htmlUnescape(regexp1(ticketPattern, p.body))}, "otp": {code}}); p.status != 401 {
		t.Fatalf("replayed code: %s", p.summary())
	}
	// A recovery code logs in, once.
	p = d.login(acctA, "alice", pwAlice)
	ticket = htmlUnescape(regexp1(ticketPattern, p.body))
	if p := d.submit("/login/otp", url.Values{"ticket": {ticket}, "otp": {codes[0]}}); p.summary() != "303 /" {
		t.Fatalf("recovery code: %s", p.summary())
	}
	e := f.client()
	p = e.login(acctA, "alice", pwAlice)
	if p := e.submit("/login/otp", url.Values{"ticket": {htmlUnescape(regexp1(ticketPattern, p.body))}, "otp": {codes[0]}}); p.status != 401 {
		t.Fatalf("recovery code again: %s", p.summary())
	}
	// A forged ticket starts the login again.
	if p := e.submit("/login/otp", url.Values{"ticket": {"1." + ticket[2:]}, "otp": {codes[1]}}); p.status != 401 || !strings.Contains(p.body, `action="/login"`) {
		t.Fatalf("forged ticket: %s", p.summary())
	}
}

// TestEnrolmentHoldPages: with require_mfa everyone, a user without a
// factor is sent to the security page after the password, and every other
// page sends them back there until a factor is set up.
func TestEnrolmentHoldPages(t *testing.T) {
	clock := newStepClock()
	f := newFixture(t, fixtureOptions{now: clock.now})
	m := f.client().mustLogin(acctA, "", pwA)
	m.get("/accounts/10042/settings").has(t, `<select id="require_mfa" name="require_mfa"`, `<option value="none" selected>none</option>`)
	form := url.Values{"grant_ttl_max": {""}, "grant_ttl_default": {""}, "max_grants": {""}, "lease_ttl": {""},
		"ipv6_grant_prefix": {""}, "require_mfa": {"everyone"}}
	if p := m.submit("/accounts/10042/settings", form); p.status != 303 {
		t.Fatalf("settings: %s\n%s", p.summary(), p.body)
	}
	c := f.client()
	if p := c.login(acctA, "alice", pwAlice); p.summary() != "303 /security" {
		t.Fatalf("login: %s", p.summary())
	}
	for _, path := range []string{"/", "/me", "/me/devices", "/accounts/10042/firewall"} {
		if p := c.get(path); p.summary() != "303 /security" {
			t.Errorf("%s while held: %s", path, p.summary())
		}
	}
	p := c.get("/security")
	p.has(t, "asks you to use a second factor")
	p.lacks(t, `href="/me"`) // no menu but the way out
	if p := c.submit("/me/unblock", nil); p.summary() != "303 /security" {
		t.Errorf("unblock while held: %s", p.summary())
	}
	c.enrol(t, clock)
	if p := c.get("/me"); p.status != 200 {
		t.Fatalf("after enrolment: %s", p.summary())
	}
}

// TestEndedSessionPages: an employee sees where she is logged in; her
// master ends her phone's session from the security page, and that
// browser is logged out at its next page while her laptop stays in.
func TestEndedSessionPages(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	laptop := f.client().mustLogin(acctA, "alice", pwAlice)
	phone := f.client().mustLogin(acctA, "alice", pwAlice)
	p := laptop.get("/security")
	p.has(t, "Where you are logged in", "(this browser)", "Go-http-client")
	if n := strings.Count(p.body, `/end">`); n != 2 {
		t.Fatalf("%d sessions on the page", n)
	}
	// The phone's session, as the phone itself sees it.
	u, _ := url.Parse(f.ts.URL)
	var phoneToken string
	for _, ck := range phone.http.Jar.Cookies(u) {
		if ck.Name == sessionCookie {
			phoneToken = ck.Value
		}
	}
	pa, err := f.svc.Authenticate(t.Context(), phoneToken, netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	own, err := f.svc.MySessions(t.Context(), pa)
	if err != nil {
		t.Fatal(err)
	}
	var phoneID string
	for _, s := range own {
		if s.Current {
			phoneID = s.ID
		}
	}
	m := f.client().mustLogin(acctA, "", pwA)
	mp := m.get("/security")
	mp.has(t, "Where your staff are logged in", `action="/accounts/10042/sessions/`+phoneID+`/end"`)
	if p := m.submit("/accounts/10042/sessions/"+phoneID+"/end", nil); p.summary() != "303 /security" {
		t.Fatalf("master ends it: %s\n%s", p.summary(), p.body)
	}
	if p := phone.get("/me"); p.summary() != "303 /login" {
		t.Fatalf("ended browser: %s", p.summary())
	}
	if p := laptop.get("/me"); p.status != 200 {
		t.Fatalf("the phoneID browser: %s", p.summary())
	}
}

// TestClearFactorPage: the staff list shows who has a second factor; the
// master clears alice's from the staff page after a confirmation, her
// sessions end, and her password alone logs her in again. The API's rule
// (a master only) is the matrix's; this is what the page does.
func TestClearFactorPage(t *testing.T) {
	clock := newStepClock()
	f := newFixture(t, fixtureOptions{now: clock.now})
	alice := f.client().mustLogin(acctA, "alice", pwAlice)
	alice.enrol(t, clock)

	m := f.client().mustLogin(acctA, "", pwA)
	m.get("/accounts/10042/users").has(t, "authenticator app", `href="/accounts/10042/users/alice/mfa"`)
	m.get("/accounts/10042/users/alice/mfa").has(t, "Clear alice's second factor", "logged out everywhere")
	p := m.submit("/accounts/10042/users/alice/mfa", nil)
	if p.summary() != "303 /accounts/10042/users" {
		t.Fatalf("clear: %s\n%s", p.summary(), p.body)
	}
	after := m.get("/accounts/10042/users")
	after.has(t, "second factor is cleared", "1 session ended")
	after.lacks(t, `href="/accounts/10042/users/alice/mfa"`)
	if p := alice.get("/me"); p.summary() != "303 /login" {
		t.Fatalf("alice's session after the clear: %s", p.summary())
	}
	if p := f.client().login(acctA, "alice", pwAlice); p.summary() != "303 /" {
		t.Fatalf("password alone after the clear: %s", p.summary())
	}
}
