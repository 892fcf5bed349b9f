package web

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// The identities of the authorization matrix, in column order; the same as
// admin/authz_test.go's, without the operator, who has no pages.
const (
	anon         = iota // no session
	user                // alice: desktop access
	noDesk              // bob: no desktop access
	mustReset           // carol: must reset her password
	master              // master of 10042
	otherMaster         // master of 10043, unrelated
	parentMaster        // master of 10000, the parent of 10042
	nIdentities
)

var identityNames = [nIdentities]string{"anonymous", "user", "user-no-desktop", "user-must-reset",
	"master", "other-master", "parent-master"}

var currentPassword = [nIdentities]string{"", pwAlice, pwBob, pwCarol, pwA, pwB, pwParent}

// as returns a client logged in as identity, with a CSRF token at hand.
func (f *fixture) as(identity int) *client {
	c := f.client()
	switch identity {
	case user:
		c.mustLogin(acctA, "alice", pwAlice)
	case noDesk:
		c.mustLogin(acctA, "bob", pwBob)
	case mustReset:
		c.mustLogin(acctA, "carol", pwCarol)
	case master:
		c.mustLogin(acctA, "", pwA)
	case otherMaster:
		c.mustLogin(acctB, "", pwB)
	case parentMaster:
		c.mustLogin(acctParent, "", pwParent)
	}
	return c
}

// publicForms are the pages of the public forms, whose CSRF tokens are
// keyed by the login cookie rather than a session.
var publicForms = map[string]string{"/login": "/login", "/password/forgot": "/password/forgot",
	"/password/reset": "/password/reset?token=x", "/email/confirm": "/email/confirm?token=x",
	"/login/passkey/begin": "/login", "/login/passkey": "/login"}

// TestPagesAuthorizationMatrix requests every page route as every
// identity, each on a fresh store, and checks the exact answer: the status,
// and for a redirect where it goes. Forms are sent with the identity's
// CSRF token. Account 10042 holds alice's grant (ID 1) and a manual rule
// (ID 2). The rules are the API's (docs/admin-api.md), as pages show them:
// no session goes to the login page, a pending password reset to the
// password page, a user on a master page is refused (403), and anything
// about an account one may not see is not found (404).
func TestPagesAuthorizationMatrix(t *testing.T) {
	type row struct {
		method, path string
		form         func(identity int) url.Values
		want         [nIdentities]string
	}
	none := func(int) url.Values { return nil }
	fixed := func(v url.Values) func(int) url.Values { return func(int) url.Values { return v } }
	const (
		ok    = "200"
		login = "303 /login"
		reset = "303 /password"
		forb  = "403"
		nf    = "404"
		home  = "303 /"
	)
	fw := "303 /accounts/10042/firewall"
	users := "303 /accounts/10042/users"
	notif := "303 /accounts/10042/notifications"
	areqs := "303 /accounts/10042/access-requests"
	rows := []row{
		//                                                  anon   user   noDesk reset  master other parent
		{"GET", "/static/style.css", none, [nIdentities]string{ok, ok, ok, ok, ok, ok, ok}},
		{"GET", "/login", none, [nIdentities]string{ok, home, home, home, home, home, home}},
		// Logged in, a browser has no login form (GET /login goes home, and
		// logging in cleared the login cookie), so a post is an expired form.
		{"POST", "/login", func(int) url.Values {
			return url.Values{"account": {acctA}, "username": {"alice"}, "password": {pwAlice}}
		}, [nIdentities]string{home, forb, forb, forb, forb, forb, forb}},
		{"POST", "/logout", none, [nIdentities]string{login, login, login, login, login, login, login}},
		// Account recovery is public and answers everyone alike; its forms
		// carry the login cookie's token, fetched from their own page.
		{"GET", "/password/forgot", none, [nIdentities]string{ok, ok, ok, ok, ok, ok, ok}},
		{"POST", "/password/forgot", fixed(url.Values{"account": {acctA}, "username": {"alice"}}),
			[nIdentities]string{"202", "202", "202", "202", "202", "202", "202"}},
		{"GET", "/password/reset?token=10042.x", none, [nIdentities]string{ok, ok, ok, ok, ok, ok, ok}},
		{"POST", "/password/reset", fixed(url.Values{"token": {"10042." + strings.Repeat("A", 43) + ".alice"}, "new": {"a-brand-new-password"}, "repeat": {"a-brand-new-password"}}),
			[nIdentities]string{"400", "400", "400", "400", "400", "400", "400"}},
		{"GET", "/email/confirm?token=10042.x", none, [nIdentities]string{ok, ok, ok, ok, ok, ok, ok}},
		{"POST", "/email/confirm", fixed(url.Values{"token": {"10042." + strings.Repeat("A", 43)}}),
			[nIdentities]string{"400", "400", "400", "400", "400", "400", "400"}},
		{"GET", "/me/email", none, [nIdentities]string{login, ok, ok, reset, ok, ok, ok}},
		{"POST", "/me/email", fixed(url.Values{"email": {"me@example.com"}}),
			[nIdentities]string{login, "303 /me/email", "303 /me/email", reset, "303 /me/email", "303 /me/email", "303 /me/email"}},
		{"GET", "/accounts/10042/users/alice/email", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"POST", "/accounts/10042/users/alice/email", fixed(url.Values{"email": {"alice@example.com"}}),
			[nIdentities]string{login, forb, forb, reset, users, nf, users}},
		{"GET", "/password", none, [nIdentities]string{login, ok, ok, ok, ok, ok, ok}},
		{"POST", "/password", func(id int) url.Values {
			return url.Values{"current": {currentPassword[id]}, "new": {"a-brand-new-password"}, "repeat": {"a-brand-new-password"}}
		}, [nIdentities]string{login, home, home, home, home, home, home}},
		// Without a ticket from the first step, the login starts again.
		{"POST", "/login/otp", fixed(url.Values{"ticket": {"1.2.3.4"}, "otp": {"123456"}}),
			[nIdentities]string{forb, forb, forb, forb, forb, forb, forb}},
		{"GET", "/security", none, [nIdentities]string{login, ok, ok, reset, ok, ok, ok}},
		{"POST", "/security/totp", none, [nIdentities]string{login, ok, ok, reset, ok, ok, ok}},
		{"GET", "/security/totp/qr.png", none, [nIdentities]string{login, nf, nf, reset, nf, nf, nf}}, // none pending
		{"POST", "/security/totp/confirm", fixed(url.Values{"code": {"123456"}}), // none pending
			[nIdentities]string{login, "400", "400", reset, "400", "400", "400"}},
		{"POST", "/security/totp/delete", none, [nIdentities]string{login, "303 /security", "303 /security", reset, "303 /security", "303 /security", "303 /security"}},
		{"GET", "/static/passkey.js", none, [nIdentities]string{ok, ok, ok, ok, ok, ok, ok}},
		// Passkey logins keep to the login form's CSRF token, like POST /login.
		{"POST", "/login/passkey/begin", none, [nIdentities]string{ok, forb, forb, forb, forb, forb, forb}},
		{"POST", "/login/passkey", fixed(url.Values{"token": {"v1.x"}}), // no answer from a browser
			[nIdentities]string{"400", forb, forb, forb, forb, forb, forb}},
		{"POST", "/security/passkeys/begin", none, [nIdentities]string{login, ok, ok, reset, ok, ok, ok}},
		{"POST", "/security/passkeys", fixed(url.Values{"name": {"k"}}), // no answer from a browser
			[nIdentities]string{login, "303 /security", "303 /security", reset, "303 /security", "303 /security", "303 /security"}},
		{"POST", "/security/passkeys/no-such-id/delete", none, [nIdentities]string{login, nf, nf, reset, nf, nf, nf}},
		{"POST", "/security/passkeys/no-such-id/rename", fixed(url.Values{"name": {"desk"}}), [nIdentities]string{login, nf, nf, reset, nf, nf, nf}},
		{"POST", "/security/sessions/0000000000000000/end", none, [nIdentities]string{login, nf, nf, reset, nf, nf, nf}},
		{"POST", "/accounts/10042/sessions/0000000000000000/end", none, [nIdentities]string{login, forb, forb, reset, nf, nf, nf}},
		{"GET", "/", none, [nIdentities]string{login, "303 /me", "303 /me", reset, fw, "303 /accounts/10043/firewall", "303 /accounts/10000/firewall"}},
		{"GET", "/me", none, [nIdentities]string{login, ok, ok, reset, ok, ok, ok}},
		// unblock: approval: alice's unblock becomes a request.
		{"POST", "/me/unblock", none, [nIdentities]string{login, "303 /me/access", forb, reset, "303 /me", "303 /me", "303 /me"}},
		{"POST", "/me/grants/1/delete", none, [nIdentities]string{login, "303 /me", nf, reset, nf, nf, nf}},
		{"GET", "/switch?account=10042&section=users", none, [nIdentities]string{login, forb, forb, reset, users, users, users}},
		{"GET", "/accounts/10042", none, [nIdentities]string{login, fw, fw, reset, fw, fw, fw}},
		{"GET", "/accounts/10042/firewall", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"GET", "/accounts/10043/firewall", none, [nIdentities]string{login, nf, nf, reset, nf, ok, nf}},
		{"GET", "/accounts/10000/firewall", none, [nIdentities]string{login, nf, nf, reset, nf, nf, ok}},
		{"GET", "/accounts/99999/firewall", none, [nIdentities]string{login, nf, nf, reset, nf, nf, nf}},
		{"GET", "/accounts/no%20such/firewall", none, [nIdentities]string{login, nf, nf, reset, nf, nf, nf}},
		{"POST", "/accounts/10042/firewall/mode", fixed(url.Values{"mode": {"monitor"}}),
			[nIdentities]string{login, forb, forb, reset, fw, nf, fw}},
		{"POST", "/accounts/10042/firewall/mode", fixed(url.Values{"mode": {"off"}}), // the warning page
			[nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"POST", "/accounts/10042/firewall/rules", fixed(url.Values{"cidr": {"198.51.100.0/24"}, "note": {"branch office"}}),
			[nIdentities]string{login, forb, forb, reset, fw, nf, fw}},
		{"GET", "/accounts/10042/firewall/rules/2/delete", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"POST", "/accounts/10042/firewall/rules/2/delete", none, [nIdentities]string{login, forb, forb, reset, fw, nf, fw}},
		{"GET", "/accounts/10042/users", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"POST", "/accounts/10042/users", fixed(url.Values{"username": {"dave.miller"}, "password": {"dave-initial-pw-1"}}),
			[nIdentities]string{login, forb, forb, reset, users, nf, users}},
		{"POST", "/accounts/10042/users/alice/update", fixed(url.Values{"set": {"desktop_access"}, "value": {"false"}}),
			[nIdentities]string{login, forb, forb, reset, users, nf, users}},
		{"POST", "/accounts/10042/users/alice/access-until", fixed(url.Values{"access_until": {"2099-01-01T09:00"}}),
			[nIdentities]string{login, forb, forb, reset, users, nf, users}},
		{"GET", "/accounts/10042/users/alice/offboard", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"POST", "/accounts/10042/users/alice/offboard", none, [nIdentities]string{login, forb, forb, reset, users, nf, users}},
		{"GET", "/accounts/10042/users/alice/password", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"POST", "/accounts/10042/users/alice/password", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"GET", "/accounts/10042/users/alice/mfa", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"POST", "/accounts/10042/users/alice/mfa", none, [nIdentities]string{login, forb, forb, reset, users, nf, users}},
		{"GET", "/accounts/10042/users/export.csv", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"GET", "/accounts/10042/users/alice/offboarding", none, // never offboarded
			[nIdentities]string{login, forb, forb, reset, nf, nf, nf}},
		{"GET", "/accounts/10042/users/reset-passwords", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"POST", "/accounts/10042/users/reset-passwords", none, [nIdentities]string{login, forb, forb, reset, users, nf, users}},
		{"GET", "/accounts/10042/review", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"POST", "/accounts/10042/review", fixed(url.Values{"remove": {"rule:2"}}),
			[nIdentities]string{login, forb, forb, reset, "303 /accounts/10042/review", nf, "303 /accounts/10042/review"}},
		{"GET", "/accounts/10042/audit", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"GET", "/me/devices", none, [nIdentities]string{login, ok, ok, reset, ok, ok, ok}},
		{"POST", "/me/devices", fixed(url.Values{"name": {"laptop"}}), [nIdentities]string{login, ok, forb, reset, ok, ok, ok}},
		{"POST", "/me/devices/aaaaaaaaaaaaaaaa/inactive", none, [nIdentities]string{login, nf, nf, reset, nf, nf, nf}},
		{"GET", "/accounts/10042/devices", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"POST", "/accounts/10042/devices/aaaaaaaaaaaaaaaa/update", fixed(url.Values{"set": {"inactive"}}),
			[nIdentities]string{login, forb, forb, reset, nf, nf, nf}},
		{"GET", "/accounts/10042/settings", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"GET", "/accounts/10043/settings", none, [nIdentities]string{login, nf, nf, reset, nf, ok, nf}},
		{"POST", "/accounts/10042/settings", fixed(url.Values{"grant_ttl_max": {"48h"}, "max_grants": {"5"}}),
			[nIdentities]string{login, forb, forb, reset, "303 /accounts/10042/settings", nf, "303 /accounts/10042/settings"}},
		{"POST", "/accounts/10042/settings", fixed(url.Values{"max_grants": {"0"}}), // shown again with the error
			[nIdentities]string{login, forb, forb, reset, "400", nf, "400"}},
		{"GET", "/accounts/10042/notifications", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"GET", "/accounts/10043/notifications", none, [nIdentities]string{login, nf, nf, reset, nf, ok, nf}},
		{"POST", "/accounts/10042/notifications/webhooks", fixed(url.Values{"url": {"https://hooks.example.com/gk"}}), // the secret, once
			[nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"POST", "/accounts/10042/notifications/webhooks/wh_none/delete", none,
			[nIdentities]string{login, forb, forb, reset, notif, nf, notif}},
		{"POST", "/accounts/10042/notifications/emails", fixed(url.Values{"address": {"new@example.com"}}),
			[nIdentities]string{login, forb, forb, reset, notif, nf, notif}},
		{"POST", "/accounts/10042/notifications/emails/delete", fixed(url.Values{"address": {"owner@example.com"}, "confirm": {"on"}}),
			[nIdentities]string{login, forb, forb, reset, notif, nf, notif}},
		{"POST", "/accounts/10042/notifications/test", none, [nIdentities]string{login, forb, forb, reset, notif, nf, notif}},
		{"POST", "/accounts/10042/notifications/webhooks/wh_none/events", fixed(url.Values{"event": {"rule.added"}}),
			[nIdentities]string{login, forb, forb, reset, notif, nf, notif}},
		{"POST", "/accounts/10042/notifications/emails/events", fixed(url.Values{"address": {"owner@example.com"}, "event": {"rule.added"}}),
			[nIdentities]string{login, forb, forb, reset, notif, nf, notif}},
		{"GET", "/accounts/10042/access-requests", none, [nIdentities]string{login, forb, forb, reset, ok, nf, ok}},
		{"POST", "/accounts/10042/access-requests/ar1/approve", none, [nIdentities]string{login, forb, forb, reset, areqs, nf, areqs}},
		{"POST", "/accounts/10042/access-requests/ar1/deny", fixed(url.Values{"reason": {"not today"}}),
			[nIdentities]string{login, forb, forb, reset, areqs, nf, areqs}},
		{"GET", "/me/access", none, [nIdentities]string{login, ok, ok, reset, ok, ok, ok}},
		// The sign-in to a web application of 10042 (no user of the
		// fixture has web access): only its own master gets a hand-off.
		{"GET", "/app/signin?host=app.test&to=%2Freports", none, [nIdentities]string{login, forb, forb, reset, ok, "400", "400"}},
		{"GET", "/app/signin?host=app.test&to=%2F%2Fevil.example", none, [nIdentities]string{login, "400", "400", reset, "400", "400", "400"}},
		{"GET", "/app/signin?host=evil.example&to=%2F", none, [nIdentities]string{login, "400", "400", reset, "400", "400", "400"}},
		{"POST", "/me/access", fixed(url.Values{"reason": {"working from home"}}),
			[nIdentities]string{login, "303 /me/access", forb, reset, forb, forb, forb}},
	}
	// Every route must have a row.
	var reqs [][2]string
	for _, r := range rows {
		reqs = append(reqs, [2]string{r.method, r.path})
	}
	for _, pattern := range uncoveredRoutes(reqs) {
		t.Errorf("route %s has no row in the matrix", pattern)
	}
	start := time.Now()
	for _, r := range rows {
		for id := range nIdentities {
			t.Run(fmt.Sprintf("%s %s/%s", r.method, r.path, identityNames[id]), func(t *testing.T) {
				f := matrixFixture(t, r.path)
				c := f.as(id)
				if pg, ok := publicForms[r.path]; ok && r.method == "POST" {
					c.get(pg) // the form's own token
				}
				var got answer
				if r.method == "GET" {
					got = c.get(r.path)
				} else {
					got = c.submit(r.path, r.form(id))
				}
				if got.summary() != r.want[id] {
					t.Errorf("%s %s as %s: %s, want %s", r.method, r.path, identityNames[id], got.summary(), r.want[id])
				}
			})
		}
	}
	t.Logf("%d cells in %v", len(rows)*int(nIdentities), time.Since(start))
}

// matrixFixture is the store each cell of the matrices starts from:
// account 10042 holds alice's grant (ID 1), a manual rule (ID 2), a
// notification address, unblock: approval and alice's pending access
// request ar1.
func matrixFixture(t *testing.T, path string) *fixture {
	// The forgotten-password form is there only when mail can be sent.
	f := newFixture(t, fixtureOptions{mail: path == "/password/forgot"})
	now := time.Now()
	f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Source: policy.SourceUnblock,
		Owner: "alice", CreatedBy: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Source: policy.SourceManual,
		CreatedBy: "master", CreatedAt: now})
	f.setNotifications(acctA, policy.Notifications{Emails: []policy.Email{{Address: "owner@example.com"}}})
	f.setUnblock(acctA, policy.UnblockApproval)
	f.putRequest(acctA, policy.AccessRequest{ID: "ar1", User: "alice", IP: netip.MustParseAddr("192.0.2.44"),
		Status: policy.RequestPending, CreatedAt: now, ExpiresAt: now.Add(policy.RequestLifetime)})
	return f
}

// uncoveredRoutes returns the page routes that none of reqs (method and
// path) reaches.
func uncoveredRoutes(reqs [][2]string) []string {
	mux := http.NewServeMux()
	for _, rt := range (&Pages{}).routes() {
		mux.HandleFunc(rt.pattern, func(http.ResponseWriter, *http.Request) {})
	}
	covered := map[string]bool{}
	for _, r := range reqs {
		u, _ := url.Parse("https://gk" + r[1])
		_, pattern := mux.Handler(&http.Request{Method: r[0], URL: u, Host: "gk"})
		covered[pattern] = true
	}
	var out []string
	for _, rt := range (&Pages{}).routes() {
		if !covered[rt.pattern] {
			out = append(out, rt.pattern)
		}
	}
	return out
}
