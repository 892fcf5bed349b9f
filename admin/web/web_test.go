package web

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TestLogin: the login page, its CSRF token, a wrong password with the
// API's message, and a session cookie with every attribute.
func TestLogin(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	c := f.client()
	p := c.get("/login")
	if p.status != 200 {
		t.Fatalf("login page: %d", p.status)
	}
	p.has(t, `<html lang="en">`, `<label for="account">Account number</label>`, `<label for="username">Username</label>`,
		`<label for="password">Password</label>`, `name="csrf"`, `href="/login?as=master"`)
	checkCookie(t, p.header, loginCookie)

	// Without the token, or with another browser's, the form is refused.
	form := url.Values{"account": {acctA}, "username": {"alice"}, "password": {pwAlice}}
	if p := c.post("/login", form); p.status != http.StatusForbidden {
		t.Fatalf("login without CSRF token: %s", p.summary())
	}
	other := f.client()
	other.get("/login")
	form.Set("csrf", other.csrf)
	if p := c.post("/login", form); p.status != http.StatusForbidden || strings.Contains(p.header.Get("Set-Cookie"), sessionCookie) {
		t.Fatalf("login with another browser's token: %s", p.summary())
	}

	p = c.login(acctA, "alice", "wrong-password-123")
	if p.status != http.StatusUnauthorized {
		t.Fatalf("wrong password: %s", p.summary())
	}
	p.has(t, "The account number, username or password is wrong", `value="alice"`, `value="10042"`)
	p.lacks(t, "wrong-password-123")

	c.get("/login") // the employee form without a username
	p = c.submit("/login", url.Values{"account": {acctA}, "password": {pwAlice}})
	if p.status != http.StatusBadRequest {
		t.Fatalf("employee form without username: %s", p.summary())
	}
	p.has(t, `id="username-error"`, `aria-invalid="true"`)

	p = c.login(acctA, "alice", pwAlice)
	if p.summary() != "303 /" {
		t.Fatalf("login: %s %s", p.summary(), p.body)
	}
	checkCookie(t, p.header, sessionCookie)
	if p := c.get("/"); p.summary() != "303 /me" {
		t.Fatalf("home of a user: %s", p.summary())
	}
	if p := c.get("/login"); p.summary() != "303 /" {
		t.Fatalf("login page when logged in: %s", p.summary())
	}
	p = c.get("/me")
	p.has(t, "Your IP address is <strong class=\"ip\">127.0.0.1</strong>", "Unblock 127.0.0.1", "Hello, Alice Martin")

	// The master's form has no username.
	m := f.client()
	p = m.get("/login?as=master")
	p.has(t, "Master password")
	p.lacks(t, `name="username"`)
	if p := m.login(acctA, "", pwA); p.summary() != "303 /" {
		t.Fatalf("master login: %s", p.summary())
	}
	if p := m.get("/"); p.summary() != "303 /accounts/10042/firewall" {
		t.Fatalf("home of a master: %s", p.summary())
	}

	// Logging out ends the session in the store too.
	c.get("/me")
	if p := c.submit("/logout", nil); p.summary() != "303 /login" {
		t.Fatalf("logout: %s", p.summary())
	}
	if p := c.get("/login"); !strings.Contains(p.body, "You have logged out.") {
		t.Errorf("no message after logout:\n%s", p.body)
	}
	if p := c.get("/me"); p.summary() != "303 /login" {
		t.Fatalf("after logout: %s", p.summary())
	}
}

// checkCookie checks that the answer sets cookie name with the attributes
// every cookie here must have.
func checkCookie(t *testing.T, h http.Header, name string) {
	t.Helper()
	for _, line := range h.Values("Set-Cookie") {
		if !strings.HasPrefix(line, name+"=") {
			continue
		}
		for _, attr := range []string{"; Path=/", "; HttpOnly", "; Secure", "; SameSite=Strict"} {
			if !strings.Contains(line, attr) {
				t.Errorf("cookie %s lacks %q: %s", name, attr, line)
			}
		}
		if strings.Contains(strings.ToLower(line), "domain=") {
			t.Errorf("cookie %s has a domain: %s", name, line)
		}
		return
	}
	t.Errorf("no cookie %s in %q", name, h.Values("Set-Cookie"))
}

// TestSecurityHeaders: every page, error pages included, forbids script,
// framing and caching; the stylesheet is cached only under its hash.
func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.client().mustLogin(acctA, "", pwA)
	for _, path := range []string{"/login", "/me", "/password", "/accounts/10042/firewall", "/accounts/10042/users",
		"/accounts/10042/audit", "/accounts/10043/firewall", "/nothing-here", "/accounts/10042/firewall/rules/99/delete"} {
		p := m.get(path)
		want := map[string]string{
			"Content-Security-Policy":   "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
			"Cache-Control":             "no-store",
			"X-Content-Type-Options":    "nosniff",
			"X-Frame-Options":           "DENY",
			"Referrer-Policy":           "same-origin",
			"Strict-Transport-Security": "max-age=31536000",
		}
		for k, v := range want {
			if got := p.header.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", path, k, got, v)
			}
		}
		if p.status == 200 && p.header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("%s: content type %q", path, p.header.Get("Content-Type"))
		}
		if strings.Contains(p.body, "<script") || strings.Contains(p.body, " style=") || strings.Contains(p.body, "<style") {
			t.Errorf("%s has inline script or style", path)
		}
	}
	css := f.pages.static["style.css"]
	p := m.get(css.url)
	if p.status != 200 || p.header.Get("Content-Type") != "text/css; charset=utf-8" ||
		p.header.Get("Cache-Control") != "public, max-age=31536000, immutable" || p.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("stylesheet: %d %v", p.status, p.header)
	}
	if p := m.get("/static/style.css"); p.header.Get("Cache-Control") != "no-cache" {
		t.Errorf("unversioned stylesheet: %q", p.header.Get("Cache-Control"))
	}
	if p := m.get(css.url, `If-None-Match: "`+css.hash+`"`); p.status != http.StatusNotModified {
		t.Errorf("conditional get: %d", p.status)
	}
	if p := m.get("/static/nothing.css"); p.status != 404 {
		t.Errorf("missing static file: %d", p.status)
	}
	if p := m.get("/accounts/10042/firewall", "Origin: https://evil.example"); p.status != http.StatusForbidden {
		t.Errorf("cross-origin page load: %d", p.status)
	}
}

// TestCSRF: every form POST without the session's token is refused with a
// 403 page and changes nothing, as is a cross-origin one; and a token
// does not outlive its session.
func TestCSRF(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	grant := f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Source: policy.SourceUnblock,
		Owner: "master", CreatedBy: "master", CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)})
	m := f.client().mustLogin(acctA, "", pwA)
	posts := []struct {
		path string
		form url.Values
	}{
		{"/logout", nil},
		{"/password", url.Values{"current": {pwA}, "new": {"a-new-master-password"}, "repeat": {"a-new-master-password"}}},
		{"/me/unblock", nil},
		{"/me/grants/1/delete", nil},
		{"/accounts/10042/firewall/mode", url.Values{"mode": {"off"}, "confirm": {"yes"}}},
		{"/accounts/10042/firewall/rules", url.Values{"cidr": {"198.51.100.0/24"}}},
		{"/accounts/10042/firewall/rules/1/delete", nil},
		{"/accounts/10042/users", url.Values{"username": {"dave.miller"}, "password": {"dave-initial-pw-1"}}},
		{"/accounts/10042/users/alice/update", url.Values{"set": {"active"}, "value": {"false"}}},
		{"/accounts/10042/users/alice/offboard", nil},
		{"/accounts/10042/users/alice/password", nil},
		{"/accounts/10042/users/reset-passwords", nil},
		{"/accounts/10042/settings", url.Values{"max_grants": {"7"}}},
		{"/me/devices", url.Values{"name": {"laptop"}}},
	}
	other := f.client().mustLogin(acctA, "", pwA) // a valid token, of another session
	before := f.lastAudit(acctA).ID
	for _, p := range posts {
		for name, token := range map[string]string{"no token": "", "another session's token": other.csrf, "garbage": "x"} {
			form := url.Values{}
			for k, v := range p.form {
				form[k] = v
			}
			if token != "" {
				form.Set("csrf", token)
			}
			res := m.post(p.path, form)
			if res.status != http.StatusForbidden {
				t.Errorf("%s with %s: %s", p.path, name, res.summary())
			}
			res.has(t, "This form was not accepted")
		}
		// A cross-origin post is refused even with the right token.
		form := url.Values{"csrf": {m.csrf}}
		if res := m.post(p.path, form, "Origin: https://evil.example"); res.status != http.StatusForbidden {
			t.Errorf("%s cross-origin: %s", p.path, res.summary())
		}
		if res := m.post(p.path, form, "Origin: null"); res.status != http.StatusForbidden {
			t.Errorf("%s from origin null: %s", p.path, res.summary())
		}
	}
	if got := f.lastAudit(acctA).ID; got != before {
		t.Fatalf("a refused form changed something: %+v", f.lastAudit(acctA))
	}
	if len(f.rules(acctA)) != 1 || f.rules(acctA)[0].ID != grant.ID || f.mode(acctA) != policy.ModeOn || !f.user(acctA, "alice").Active {
		t.Fatal("a refused form changed the store")
	}
	// A form that is not urlencoded is refused too.
	req, _ := http.NewRequest("POST", f.ts.URL+"/accounts/10042/firewall/mode", strings.NewReader(`{"mode":"off"}`))
	req.Header.Set("Content-Type", "application/json")
	if res := m.do(req); res.status != http.StatusUnsupportedMediaType {
		t.Errorf("JSON to a form: %s", res.summary())
	}

	// With the token the same form works; after logout the token is dead.
	token := m.csrf
	if res := m.submit("/accounts/10042/firewall/mode", url.Values{"mode": {"monitor"}}); res.summary() != "303 /accounts/10042/firewall" {
		t.Fatalf("with the token: %s %s", res.summary(), res.body)
	}
	m.submit("/logout", nil)
	m.mustLogin(acctA, "", pwA)
	if m.csrf == token {
		t.Fatal("a new session has the old CSRF token")
	}
	if res := m.post("/accounts/10042/firewall/mode", url.Values{"mode": {"on"}, "csrf": {token}}); res.status != http.StatusForbidden {
		t.Fatalf("the old session's token: %s", res.summary())
	}
}

// TestPasswordReset: a user who must reset is sent to the password page
// from everywhere until they have, with the API's messages on the way.
func TestPasswordReset(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	c := f.client()
	if p := c.login(acctA, "carol", pwCarol); p.summary() != "303 /password" {
		t.Fatalf("login: %s", p.summary())
	}
	for _, path := range []string{"/", "/me", "/accounts/10042/firewall"} {
		if p := c.get(path); p.summary() != "303 /password" {
			t.Errorf("%s before the reset: %s", path, p.summary())
		}
	}
	c.get("/password") // for the CSRF token
	if p := c.submit("/me/unblock", nil); p.summary() != "303 /password" {
		t.Errorf("unblock before the reset: %s", p.summary())
	}
	p := c.get("/password")
	p.has(t, "Choose a new password", "Before you go on")
	p.lacks(t, `href="/me"`) // no menu to pages that would only send her back

	p = c.submit("/password", url.Values{"current": {pwCarol}, "new": {"carol-new-password"}, "repeat": {"carol-new-passwort"}})
	if p.status != http.StatusBadRequest {
		t.Fatalf("mismatch: %s", p.summary())
	}
	p.has(t, `id="repeat-error"`, "The two new passwords are not the same.")
	p = c.submit("/password", url.Values{"current": {pwCarol}, "new": {"short"}, "repeat": {"short"}})
	if p.status != http.StatusBadRequest {
		t.Fatalf("weak: %s", p.summary())
	}
	p.has(t, `id="new-error"`, "Password must be at least 12 characters")
	p = c.submit("/password", url.Values{"current": {"not-her-password"}, "new": {"carol-new-password"}, "repeat": {"carol-new-password"}})
	if p.status != http.StatusForbidden {
		t.Fatalf("wrong current: %s", p.summary())
	}
	p.has(t, `id="current-error"`, "The current password is wrong")
	p = c.submit("/password", url.Values{"current": {pwCarol}, "new": {"carol-new-password"}, "repeat": {"carol-new-password"}})
	if p.summary() != "303 /" {
		t.Fatalf("reset: %s %s", p.summary(), p.body)
	}
	if f.user(acctA, "carol").MustResetPassword {
		t.Fatal("still must reset")
	}
	c.get("/")
	p = c.get("/me")
	p.has(t, "Your new password is set.", "Unblock 127.0.0.1")
	if a := f.lastAudit(acctA); a.Action != "password.change" || a.Actor != "carol" {
		t.Fatalf("audit: %+v", a)
	}
}

// TestUnblock: a user unblocks their own address and removes it again; a
// user without desktop access is told why they cannot.
func TestUnblock(t *testing.T) {
	f := newFixture(t, fixtureOptions{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	c := f.client().mustLogin(acctA, "alice", pwAlice)
	xff := "X-Forwarded-For: 203.0.113.7"
	p := c.get("/me", xff)
	p.has(t, `Your IP address is <strong class="ip">203.0.113.7</strong>`, "None at the moment.")
	req, _ := http.NewRequest("POST", f.ts.URL+"/me/unblock", strings.NewReader(url.Values{"csrf": {c.csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	if p := c.do(req); p.summary() != "303 /me" {
		t.Fatalf("unblock: %s %s", p.summary(), p.body)
	}
	rules := f.rules(acctA)
	if len(rules) != 1 || rules[0].Prefix.String() != "203.0.113.7/32" || rules[0].Owner != "alice" || rules[0].Source != policy.SourceUnblock {
		t.Fatalf("rules: %+v", rules)
	}
	p = c.get("/me", xff)
	p.has(t, "203.0.113.7 is unblocked until", "It is unblocked until", "Keep 203.0.113.7 unblocked longer", "this address",
		`action="/me/grants/1/delete"`)
	if a := f.lastAudit(acctA); a.Action != "grant.create" || a.Actor != "alice" || a.ClientIP != "203.0.113.7" {
		t.Fatalf("audit: %+v", a)
	}
	if p := c.submit("/me/grants/1/delete", nil); p.summary() != "303 /me" {
		t.Fatalf("remove: %s", p.summary())
	}
	if len(f.rules(acctA)) != 0 {
		t.Fatal("grant not removed")
	}
	c.get("/me").has(t, "203.0.113.7 is no longer unblocked.")
	if p := c.submit("/me/grants/1/delete", nil); p.status != http.StatusNotFound {
		t.Fatalf("remove again: %s", p.summary())
	}

	b := f.client().mustLogin(acctA, "bob", pwBob)
	p = b.get("/me")
	p.has(t, "Your login does not have desktop access")
	p.lacks(t, `action="/me/unblock"`)
	p = b.submit("/me/unblock", nil)
	if p.status != http.StatusForbidden {
		t.Fatalf("unblock without desktop access: %s", p.summary())
	}
	p.has(t, "Your login does not have desktop access; ask the account holder")
}

// TestFirewallForms: the mode through its warning, rules with the API's
// errors next to the field, the broad-network confirmation, deletion
// through its confirmation page, and the banners.
func TestFirewallForms(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.client().mustLogin(acctA, "", pwA)
	base := "/accounts/10042/firewall"
	p := m.get(base)
	p.has(t, "<h1>Firewall</h1>", "No address is allowed yet.", `<legend>Who can reach the database?</legend>`,
		`id="mode-on" name="mode" value="on" checked`, "Your address right now is <span class=\"cidr\">127.0.0.1</span>")
	p.lacks(t, "banner-off", "banner-monitor")

	// Off needs the warning page; the page's own form confirms.
	p = m.submit(base+"/mode", url.Values{"mode": {"off"}})
	if p.status != 200 || f.mode(acctA) != policy.ModeOn {
		t.Fatalf("off without confirmation: %s, mode %s", p.summary(), f.mode(acctA))
	}
	p.has(t, "Turn the firewall off?", "anyone on the internet", `name="confirm" value="yes"`, "Turn the firewall off</button>")
	if p := m.submit(base+"/mode", url.Values{"mode": {"off"}, "confirm": {"yes"}}); p.summary() != "303 "+base {
		t.Fatalf("off: %s", p.summary())
	}
	if f.mode(acctA) != policy.ModeOff {
		t.Fatal("not off")
	}
	p = m.get(base)
	p.has(t, "The firewall is off: every address can connect.", "banner-off", "The firewall is OFF.", `value="off" checked`)
	m.get("/accounts/10042/users").has(t, "The firewall is OFF.")
	m.submit(base+"/mode", url.Values{"mode": {"monitor"}})
	m.get(base).has(t, "The firewall is in monitor mode.")
	if p := m.submit(base+"/mode", url.Values{"mode": {"sideways"}}); p.status != 400 {
		t.Fatalf("bad mode: %s", p.summary())
	} else {
		p.has(t, `id="mode-error"`, "Mode must be on, monitor or off")
	}
	m.submit(base+"/mode", url.Values{"mode": {"on"}})

	// Errors next to the field, with the API's messages; values kept.
	for _, c := range []struct {
		form  url.Values
		field string
		msg   string
	}{
		{url.Values{"cidr": {"not-an-ip"}, "note": {"x"}}, "cidr", "Invalid CIDR: &#34;not-an-ip&#34; is not an IP address"},
		{url.Values{"cidr": {"0.0.0.0/0"}}, "cidr", "set the firewall mode to off instead"},
		{url.Values{"cidr": {"198.51.100.7"}, "ttl": {"30s"}}, "ttl", "Ttl must be between 1m and 10 years"},
		{url.Values{"cidr": {"198.51.100.7"}, "ttl": {"soon"}}, "ttl", "A duration must be a string like"},
		{url.Values{"cidr": {"198.51.100.7"}, "note": {strings.Repeat("n", 201)}}, "note", "Note is longer than 200 bytes"},
	} {
		p := m.submit(base+"/rules", c.form)
		if p.status != 400 {
			t.Errorf("%v: %s", c.form, p.summary())
			continue
		}
		p.has(t, `id="`+c.field+`-error"`, c.msg, `value="`+c.form.Get("cidr")+`"`)
	}

	// A broad network asks first, showing how many addresses it is.
	p = m.submit(base+"/rules", url.Values{"cidr": {"10.0.0.0/8"}, "note": {"the VPN"}, "ttl": {"24h"}})
	if p.status != 200 || len(f.rules(acctA)) != 0 {
		t.Fatalf("broad network: %s", p.summary())
	}
	p.has(t, "Allow a whole network?", "16,777,216 addresses", `name="note" value="the VPN"`, `name="ttl" value="24h"`)
	if p := m.submit(base+"/rules", url.Values{"cidr": {"10.0.0.0/8"}, "note": {"the VPN"}, "ttl": {"24h"}, "confirm": {"yes"}}); p.summary() != "303 "+base {
		t.Fatalf("confirmed: %s", p.summary())
	}
	if p := m.submit(base+"/rules", url.Values{"cidr": {"198.51.100.0/24"}, "note": {"Front office"}}); p.summary() != "303 "+base {
		t.Fatalf("add: %s", p.summary())
	}
	p = m.get(base)
	p.has(t, "Added 198.51.100.0/24 (Front office).", "10.0.0.0/8", "the VPN", "Front office", "by account holder", "never")
	p = m.submit(base+"/rules", url.Values{"cidr": {"198.51.100.0/24"}})
	if p.status != http.StatusConflict {
		t.Fatalf("duplicate: %s", p.summary())
	}
	p.has(t, `id="cidr-error"`, "198.51.100.0/24 is already allowed by a rule")

	var id policy.RuleID
	for _, r := range f.rules(acctA) {
		if r.Note == "Front office" {
			id = r.ID
		}
	}
	del := base + "/rules/" + itoa(int(id)) + "/delete"
	p = m.get(del)
	p.has(t, "Delete this rule?", "198.51.100.0/24", "Front office", "closed within a second", "Delete the rule for 198.51.100.0/24")
	if p := m.submit(del, nil); p.summary() != "303 "+base {
		t.Fatalf("delete: %s", p.summary())
	}
	if len(f.rules(acctA)) != 1 {
		t.Fatalf("rules after delete: %+v", f.rules(acctA))
	}
	m.get(base).has(t, "Deleted the rule for 198.51.100.0/24.")
	if p := m.get(del); p.status != 404 {
		t.Fatalf("deleted rule's page: %s", p.summary())
	}
	if p := m.submit(del, nil); p.status != 404 {
		t.Fatalf("delete again: %s", p.summary())
	}
	if a := f.lastAudit(acctA); a.Action != "rule.delete" || a.Actor != "master" {
		t.Fatalf("audit: %+v", a)
	}
}

// TestStaffForms: add a user (the API's username rules), change flags,
// offboard through the page that says what it will do, and make everyone
// reset.
func TestStaffForms(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	now := time.Now()
	f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Source: policy.SourceUnblock,
		Owner: "alice", CreatedBy: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	alice := f.client().mustLogin(acctA, "alice", pwAlice)
	m := f.client().mustLogin(acctA, "", pwA)
	base := "/accounts/10042/users"
	p := m.get(base)
	p.has(t, "<h1>Staff</h1>", "Alice Martin", "Bob Stone", "carol", "must choose a new password", "no desktop access",
		"203.0.113.7", `href="/accounts/10042/users/alice/offboard"`, "from <span class=\"cidr\">127.0.0.1</span>")
	if !regexpMatch(`id="new-password" name="password" value="[A-Za-z0-9]{20}"`, p.body) {
		t.Error("no suggested password")
	}

	for _, c := range []struct {
		username, password, field, msg string
		status                         int
	}{
		{"reception", "a-fine-password-1", "username", "does not name a person", 400},
		{"x", "a-fine-password-1", "username", "A username is 2 to 64 characters", 400},
		{"alice", "a-fine-password-1", "username", "There is already a user &#34;alice&#34;", 409},
		{"dave.miller", "short", "password", "Password must be at least 12 characters", 400},
	} {
		p := m.submit(base, url.Values{"username": {c.username}, "password": {c.password}, "display_name": {"Dave"}})
		if p.status != c.status {
			t.Errorf("%s: %s", c.username, p.summary())
			continue
		}
		p.has(t, `id="`+c.field+`-error"`, c.msg, `value="Dave"`)
	}
	if p := m.submit(base, url.Values{"username": {"Dave.Miller"}, "display_name": {"Dave Miller"}, "password": {"dave-initial-pw-1"}}); p.summary() != "303 "+base {
		t.Fatalf("add: %s %s", p.summary(), p.body)
	}
	if u := f.user(acctA, "dave.miller"); !u.Active || !u.MustResetPassword || !u.DesktopAccess {
		t.Fatalf("dave: %+v", u)
	}
	m.get(base).has(t, "Added dave.miller.", "Dave Miller")

	if p := m.submit(base+"/bob/update", url.Values{"set": {"desktop_access"}, "value": {"true"}}); p.summary() != "303 "+base {
		t.Fatalf("desktop access: %s", p.summary())
	}
	m.get(base).has(t, "bob has desktop access")
	if !f.user(acctA, "bob").DesktopAccess {
		t.Fatal("bob has no desktop access")
	}
	m.submit(base+"/bob/update", url.Values{"set": {"must_reset_password"}, "value": {"true"}})
	if !f.user(acctA, "bob").MustResetPassword {
		t.Fatal("bob need not reset")
	}
	for _, bad := range []url.Values{{"set": {"password"}, "value": {"true"}}, {"set": {"active"}, "value": {"maybe"}}} {
		if p := m.submit(base+"/bob/update", bad); p.status != 400 {
			t.Errorf("%v: %s", bad, p.summary())
		}
	}
	if p := m.submit(base+"/nobody/update", url.Values{"set": {"active"}, "value": {"false"}}); p.status != 404 {
		t.Errorf("no such user: %s", p.summary())
	}

	// Offboarding says exactly what it will do, then does it.
	p = m.get(base + "/alice/offboard")
	p.has(t, "Offboard Alice Martin (alice)?", "can no longer log in", "logged out everywhere", "Desktop access is taken away",
		"Their 1 unblocked address is removed:", "203.0.113.7", "Offboard alice</button>")
	if p := m.submit(base+"/alice/offboard", nil); p.summary() != "303 "+base {
		t.Fatalf("offboard: %s", p.summary())
	}
	u := f.user(acctA, "alice")
	if u.Active || u.DesktopAccess || len(f.rules(acctA)) != 0 {
		t.Fatalf("after offboarding: %+v, rules %+v", u, f.rules(acctA))
	}
	p = m.get(base)
	p.has(t, "alice is offboarded: login deactivated, desktop access off, 1 session ended, 1 unblocked address removed.")
	p.lacks(t, "Alice Martin")
	if p := alice.get("/me"); p.summary() != "303 /login" {
		t.Fatalf("alice after offboarding: %s", p.summary())
	}
	p = m.get(base + "?all=1")
	p.has(t, "Alice Martin", "deactivated", "Reactivate", `href="/accounts/10042/users/alice/offboarding"`)
	// A last day and a permission show on the staff list.
	if err := f.bolt.Update(t.Context(), acctA, func(tx policy.Tx) error {
		u, err := tx.User("bob")
		if err != nil {
			return err
		}
		u.AccessUntil, u.Permissions = time.Now().Add(48*time.Hour), []string{policy.PermManageStaff}
		return tx.PutUser(u)
	}); err != nil {
		t.Fatal(err)
	}
	m.get(base).has(t, "last day <time", "manages staff")
	// The receipt: what was done and when, printable, without script.
	p = m.get(base + "/alice/offboarding")
	p.has(t, "Offboarding receipt: Alice Martin (alice)", "<dt>By</dt><dd>master</dd>", "Sessions ended: 1.",
		"Unblocked addresses removed (1)", "203.0.113.7/32", "Devices made inactive (0)")
	p.lacks(t, "<script")
	csv := m.get(base + "/export.csv")
	if csv.status != 200 || !strings.Contains(csv.body, "alice,Alice Martin,false,false,") {
		t.Fatalf("export: %s %s", csv.summary(), csv.body)
	}
	if p := m.get(base + "/bob/offboarding"); p.status != 404 {
		t.Fatalf("receipt of someone never offboarded: %s", p.summary())
	}
	if p := m.submit(base+"/alice/update", url.Values{"set": {"active"}, "value": {"true"}, "all": {"1"}}); p.summary() != "303 "+base+"?all=1" {
		t.Fatalf("reactivate: %s", p.summary())
	}

	// A temporary password for someone who forgot theirs: asked first,
	// then shown once on the answer itself (not in a flash cookie).
	bob := f.client().mustLogin(acctA, "bob", pwBob)
	p = m.get(base + "/bob/password")
	p.has(t, "a temporary password?", "logged out everywhere", "shows it to you once")
	p = m.submit(base+"/bob/password", nil)
	if p.status != 200 {
		t.Fatalf("temporary password: %s", p.summary())
	}
	p.has(t, "Temporary password for bob", "shown only this once")
	temp := regexp.MustCompile(`<code>([^<]+)</code>`).FindStringSubmatch(p.body)
	if temp == nil || len(temp[1]) < 12 {
		t.Fatalf("no temporary password on the page:\n%s", p.body)
	}
	for _, c := range p.header.Values("Set-Cookie") {
		if strings.Contains(c, temp[1]) {
			t.Fatalf("the temporary password is in a cookie: %s", c)
		}
	}
	if p.header.Get("Cache-Control") != "no-store" {
		t.Errorf("the page with the password may be stored: %q", p.header.Get("Cache-Control"))
	}
	if p := bob.get("/me"); p.summary() != "303 /login" {
		t.Fatalf("bob's session after a temporary password: %s", p.summary())
	}
	if !f.user(acctA, "bob").MustResetPassword {
		t.Fatal("bob need not choose a new password after a temporary one")
	}
	f.client().mustLogin(acctA, "bob", temp[1])
	m.get("/accounts/10042/audit").has(t, "gave a temporary password")

	p = m.get(base + "/reset-passwords")
	p.has(t, "Everyone must choose a new password?", "1 active user will have to choose a new password",
		"(3 others already have to.)")
	if p := m.submit(base+"/reset-passwords", nil); p.summary() != "303 "+base {
		t.Fatalf("reset everyone: %s", p.summary())
	}
	m.get(base).has(t, "Done: every user must choose a new password the next time they use gatekeeper (1 user newly asked).")
	if !f.user(acctA, "alice").MustResetPassword {
		t.Fatal("alice need not reset")
	}
}

// TestAudit: newest first, a filter by person, pages that chain.
func TestAudit(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.client().mustLogin(acctA, "alice", pwAlice).submit("/me/unblock", nil)
	m := f.client().mustLogin(acctA, "", pwA)
	for i := range 60 {
		m.submit("/accounts/10042/firewall/rules", url.Values{"cidr": {"198.51.100." + itoa(i+1)}, "note": {"desk " + itoa(i)}})
	}
	base := "/accounts/10042/audit"
	p := m.get(base)
	p.has(t, "<h1>Audit trail</h1>", "added a rule", "rule/", "198.51.100.60/32", `<option value="alice">alice</option>`,
		`<option value="master">account holder</option>`, `<option value="master@10000">account holder of 10000</option>`,
		"Older entries", "<details><summary>Details</summary>")
	p.lacks(t, "unblocked an address", ">Newest<") // 60 rule entries come first
	older := regexp1(`href="(/accounts/10042/audit\?before=[^"]+)"`, p.body)
	p = m.get(htmlUnescape(older))
	p.has(t, "unblocked an address", "logged in", "alice", ">Newest<")
	p.lacks(t, "Older entries")

	p = m.get(base + "?user=alice")
	p.has(t, "unblocked an address", "logged in", `<option value="alice" selected>`)
	p.lacks(t, "added a rule", "Older entries")
	p = m.get(base + "?user=carol")
	p.has(t, "Nothing about carol in the trail.")
	if p := m.get(base + "?user=" + strings.Repeat("x", 100)); p.status != 200 {
		t.Errorf("long filter: %s", p.summary()) // clipped to 80, then simply no match
	}
}

// TestAccountSwitcher: a parent's master moves between its accounts; a
// child's master sees no switcher and cannot reach the parent.
func TestAccountSwitcher(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	pm := f.client().mustLogin(acctParent, "", pwParent)
	p := pm.get("/accounts/10000/users")
	p.has(t, `<select id="switch-account" name="account">`, `<option value="10000" selected>Smith Group (10000)</option>`,
		`<option value="10042">Smith Studio (10042)</option>`, `name="section" value="users"`)
	p.lacks(t, "Jones Shop")
	if p := pm.get("/switch?account=10042&section=users"); p.summary() != "303 /accounts/10042/users" {
		t.Fatalf("switch: %s", p.summary())
	}
	p = pm.get("/accounts/10042/users")
	p.has(t, "Smith Studio", `<option value="10042" selected>`, `href="/accounts/10042/firewall"`, "Alice Martin")
	if p := pm.get("/switch?account=10042&section=nonsense"); p.summary() != "303 /accounts/10042/firewall" {
		t.Fatalf("unknown section: %s", p.summary())
	}
	if p := pm.get("/switch?account=../../x"); p.status != 404 {
		t.Fatalf("bad account: %s", p.summary())
	}
	if p := pm.get("/switch?account=10043"); p.summary() != "303 /accounts/10043/firewall" {
		t.Fatalf("switch to a stranger: %s", p.summary())
	} else if p := pm.get(p.location()); p.status != 404 {
		t.Fatalf("a stranger's firewall: %s", p.summary())
	}
	// The parent's master acts on the child under their own name.
	pm.get("/accounts/10042/firewall")
	pm.submit("/accounts/10042/firewall/rules", url.Values{"cidr": {"192.0.2.1"}})
	if a := f.lastAudit(acctA); a.Actor != "master@10000" {
		t.Fatalf("audit: %+v", a)
	}
	pm.get("/accounts/10042/firewall").has(t, "by account holder of 10000")

	cm := f.client().mustLogin(acctA, "", pwA)
	p = cm.get("/accounts/10042/firewall")
	p.lacks(t, "switch-account")
	if p := cm.get("/accounts/10000/firewall"); p.status != 404 {
		t.Fatalf("child's master on the parent: %s", p.summary())
	}
}

// TestErrorPages: unknown paths and methods, and a store that fails.
func TestErrorPages(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	c := f.client()
	p := c.get("/nothing")
	if p.status != 404 {
		t.Fatalf("unknown path: %d", p.status)
	}
	p.has(t, "<h1>Not found</h1>", `<html lang="en">`)
	req, _ := http.NewRequest("DELETE", f.ts.URL+"/me", nil)
	if p := c.do(req); p.status != http.StatusMethodNotAllowed || p.header.Get("Allow") == "" {
		t.Fatalf("wrong method: %d %v", p.status, p.header)
	}
	// The API keeps answering JSON beside the pages.
	if p := c.get("/api/v1/me"); p.status != 401 || !strings.Contains(p.body, `"unauthorized"`) {
		t.Fatalf("API: %d %s", p.status, p.body)
	}
	// Host names outside admin.hosts are refused, as by the API.
	g := newFixture(t, fixtureOptions{hosts: []string{"admin.example.com"}})
	rec := httptest.NewRecorder()
	g.pages.ServeHTTP(rec, httptest.NewRequest("GET", "https://evil.example/login", nil))
	if rec.Code != http.StatusForbidden {
		t.Fatalf("foreign host: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	g.pages.ServeHTTP(rec, httptest.NewRequest("GET", "https://admin.example.com/login", nil))
	if rec.Code != 200 {
		t.Fatalf("own host: %d", rec.Code)
	}
}

// TestLoginLimits: the Service's limits apply to the login form, which
// says when to try again; and pages are counted by route.
func TestLoginLimits(t *testing.T) {
	f := newFixture(t, fixtureOptions{limits: admin.LoginLimits{PerLogin: admin.Limit{Burst: 3, Lockout: time.Minute}}})
	c := f.client()
	for i := range 3 {
		if p := c.login(acctA, "alice", "not-the-password"); p.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %s", i, p.summary())
		}
	}
	p := c.login(acctA, "alice", pwAlice) // right, but locked out
	if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") == "" {
		t.Fatalf("locked out: %s %v", p.summary(), p.header)
	}
	p.has(t, "Too many failed attempts; try again in", `value="alice"`)
	if a := f.lastAudit(acctA); a.Action != "login.failure" {
		t.Fatalf("audit: %+v", a)
	}
	got := counterValue(t, f.pages.requests.WithLabelValues("POST /login", "429"))
	if got != 1 {
		t.Errorf("requests{POST /login,429} = %v", got)
	}
	c.get("/nothing")
	if got := counterValue(t, f.pages.requests.WithLabelValues("unmatched", "404")); got != 1 {
		t.Errorf("requests{unmatched,404} = %v", got)
	}
}

func counterValue(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestRelative: how times read.
func TestRelative(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		10 * time.Second:                "in under a minute",
		-10 * time.Second:               "just now",
		time.Minute:                     "in 1 minute",
		-80 * time.Minute:               "1 hour ago",
		12 * time.Hour:                  "in 12 hours",
		-3 * 24 * time.Hour:             "3 days ago",
		90 * 24 * time.Hour:             "in 3 months",
		-800 * 24 * time.Hour:           "2 years ago",
		12*time.Hour - time.Second:      "in 12 hours",
		59*time.Minute + 50*time.Second: "in 1 hour",
		59 * time.Minute:                "in 59 minutes",
		5*24*time.Hour - time.Minute:    "in 5 days",
	} {
		if got := relative(now.Add(d), now); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}
