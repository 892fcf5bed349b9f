package web

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// The identities holding permissions, in column order of
// TestPagesPermissionMatrix: dan and frank hold manage_staff, erin
// view_audit; the same as admin/permissions_test.go's.
const (
	manager = iota
	auditor
	nPermIdentities
)

var permIdentityNames = [nPermIdentities]string{"manager", "auditor"}

const (
	pwDan   = "dan-password-12345"
	pwErin  = "erin-password-1234"
	pwFrank = "frank-password-123"
)

// addPermissionHolders puts dan (manage_staff), frank (manage_staff) and
// erin (view_audit) into account A, each with desktop access.
func (f *fixture) addPermissionHolders() {
	f.t.Helper()
	err := f.bolt.Update(context.Background(), acctA, func(tx policy.Tx) error {
		for _, u := range []struct{ name, pw, perm string }{
			{"dan", pwDan, policy.PermManageStaff}, {"erin", pwErin, policy.PermViewAudit}, {"frank", pwFrank, policy.PermManageStaff},
		} {
			h, err := password.Hash(u.pw, cheap)
			if err != nil {
				return err
			}
			err = tx.PutUser(policy.User{Username: u.name, Active: true, DesktopAccess: true, PasswordHash: h,
				CreatedAt: time.Now(), Permissions: []string{u.perm}})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// asHolder returns a client logged in as a permission holder.
func (f *fixture) asHolder(identity int) *client {
	if identity == manager {
		return f.client().mustLogin(acctA, "dan", pwDan)
	}
	return f.client().mustLogin(acctA, "erin", pwErin)
}

// TestPagesPermissionMatrix requests every page route as a manager
// (manage_staff) and as an auditor (view_audit), each on a fresh store,
// and checks the exact answer. The pages decide nothing themselves: the
// Service's rules (admin.TestPermissionMatrix) show through them. A
// manager gets the staff pages for employees; an auditor the audit
// trail; both are refused the firewall, the settings, the notifications,
// the devices, the review, and every attempt to escalate: a permission
// change, a change to another permission holder or to themselves, the
// master as a target.
func TestPagesPermissionMatrix(t *testing.T) {
	type row struct {
		method, path string
		form         url.Values
		want         [nPermIdentities]string
	}
	const (
		ok    = "200"
		login = "303 /login"
		forb  = "403"
		nf    = "404"
		bad   = "400"
		home  = "303 /"
		sec   = "303 /security"
	)
	fw := "303 /accounts/10042/firewall"
	users := "303 /accounts/10042/users"
	v := func(kv ...string) url.Values {
		out := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	rows := []row{
		//                                                                            manager auditor
		{"GET", "/static/style.css", nil, [2]string{ok, ok}},
		{"GET", "/static/passkey.js", nil, [2]string{ok, ok}},
		{"GET", "/login", nil, [2]string{home, home}},
		{"POST", "/login", v("account", acctA, "username", "alice", "password", pwAlice), [2]string{forb, forb}},
		{"POST", "/logout", nil, [2]string{login, login}},
		{"GET", "/password/forgot", nil, [2]string{ok, ok}},
		{"POST", "/password/forgot", v("account", acctA, "username", "frank"), [2]string{"202", "202"}},
		{"GET", "/password/reset?token=10042.x", nil, [2]string{ok, ok}},
		{"POST", "/password/reset", v("token", "10042."+strings.Repeat("A", 43)+".frank", "new", "a-brand-new-password", "repeat", "a-brand-new-password"), [2]string{bad, bad}},
		{"GET", "/email/confirm?token=10042.x", nil, [2]string{ok, ok}},
		{"POST", "/email/confirm", v("token", "10042."+strings.Repeat("A", 43)), [2]string{bad, bad}},
		{"GET", "/me/email", nil, [2]string{ok, ok}},
		{"POST", "/me/email", v("email", "me@example.com"), [2]string{"303 /me/email", "303 /me/email"}},
		// Staff's addresses reset passwords: the master's, never a manager's.
		{"GET", "/accounts/10042/users/alice/email", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/users/alice/email", v("email", "alice@example.com"), [2]string{forb, forb}},
		{"POST", "/accounts/10042/users/frank/email", v("email", "mine@example.com"), [2]string{forb, forb}},
		{"GET", "/password", nil, [2]string{ok, ok}},
		{"POST", "/password", nil, [2]string{home, home}}, // the form is filled in per identity below
		{"POST", "/login/otp", v("ticket", "1.2.3.4", "otp", "123456"), [2]string{forb, forb}},
		{"GET", "/security", nil, [2]string{ok, ok}},
		{"POST", "/security/totp", nil, [2]string{ok, ok}},
		{"GET", "/security/totp/qr.png", nil, [2]string{nf, nf}},
		{"POST", "/security/totp/confirm", v("code", "123456"), [2]string{bad, bad}},
		{"POST", "/security/totp/delete", nil, [2]string{sec, sec}},
		{"POST", "/login/passkey/begin", nil, [2]string{forb, forb}},
		{"POST", "/login/passkey", v("token", "v1.x"), [2]string{forb, forb}},
		{"POST", "/security/passkeys/begin", nil, [2]string{ok, ok}},
		{"POST", "/security/passkeys", v("name", "k"), [2]string{sec, sec}},
		{"POST", "/security/passkeys/no-such-id/delete", nil, [2]string{nf, nf}},
		{"POST", "/security/passkeys/no-such-id/rename", v("name", "desk"), [2]string{nf, nf}},
		{"POST", "/security/sessions/0000000000000000/end", nil, [2]string{nf, nf}},
		// Other people's sessions are the master's.
		{"POST", "/accounts/10042/sessions/0000000000000000/end", nil, [2]string{forb, forb}},
		{"GET", "/", nil, [2]string{"303 /me", "303 /me"}},
		{"GET", "/me", nil, [2]string{ok, ok}},
		{"POST", "/me/unblock", nil, [2]string{"303 /me/access", "303 /me/access"}},
		{"POST", "/me/grants/1/delete", nil, [2]string{nf, nf}}, // alice's
		{"GET", "/switch?account=10042&section=users", nil, [2]string{forb, forb}},
		{"GET", "/accounts/10042", nil, [2]string{fw, fw}},
		// The firewall: neither reads nor changes it.
		{"GET", "/accounts/10042/firewall", nil, [2]string{forb, forb}},
		{"GET", "/accounts/10043/firewall", nil, [2]string{nf, nf}},
		{"POST", "/accounts/10042/firewall/mode", v("mode", "off", "confirm", "yes"), [2]string{forb, forb}},
		{"POST", "/accounts/10042/firewall/rules", v("cidr", "198.51.100.0/24", "note", "mine"), [2]string{forb, forb}},
		{"GET", "/accounts/10042/firewall/rules/2/delete", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/firewall/rules/2/delete", nil, [2]string{forb, forb}},
		// The staff pages: a manager's, for employees.
		{"GET", "/accounts/10042/users", nil, [2]string{ok, forb}},
		{"GET", "/accounts/10042/users?all=1", nil, [2]string{ok, forb}},
		{"GET", "/accounts/10043/users", nil, [2]string{nf, nf}},
		{"GET", "/accounts/10000/users", nil, [2]string{nf, nf}},
		{"POST", "/accounts/10042/users", v("username", "dave.miller", "password", "dave-initial-pw-1"), [2]string{users, forb}},
		{"POST", "/accounts/10042/users", v("username", "dave.miller", "password", "dave-initial-pw-1", "access_until", "2099-01-01T09:00"), [2]string{users, forb}},
		{"POST", "/accounts/10043/users", v("username", "dave.miller", "password", "dave-initial-pw-1"), [2]string{nf, nf}},
		{"POST", "/accounts/10042/users/alice/update", v("set", "desktop_access", "value", "false"), [2]string{users, forb}},
		{"POST", "/accounts/10042/users/alice/update", v("set", "web_access", "value", "true"), [2]string{users, forb}},
		{"POST", "/accounts/10042/users/alice/update", v("set", "must_reset_password", "value", "true"), [2]string{users, forb}},
		{"POST", "/accounts/10042/users/alice/update", v("set", "active", "value", "false"), [2]string{users, forb}},
		// Escalation: a permission change has no form field, and the other
		// permission holders, the manager themselves and the master are
		// not theirs to change.
		{"POST", "/accounts/10042/users/alice/update", v("set", "permissions", "value", "true"), [2]string{bad, bad}},
		{"POST", "/accounts/10042/users/dan/update", v("set", "permissions", "value", "true"), [2]string{bad, bad}},
		{"POST", "/accounts/10042/users/frank/update", v("set", "active", "value", "false"), [2]string{forb, forb}},
		{"POST", "/accounts/10042/users/erin/update", v("set", "must_reset_password", "value", "true"), [2]string{forb, forb}},
		{"POST", "/accounts/10042/users/dan/update", v("set", "active", "value", "false"), [2]string{forb, forb}},
		{"POST", "/accounts/10042/users/master/update", v("set", "active", "value", "false"), [2]string{nf, forb}},
		{"POST", "/accounts/10043/users/alice/update", v("set", "active", "value", "false"), [2]string{nf, nf}},
		{"POST", "/accounts/10042/users/alice/access-until", v("access_until", "2099-01-01T09:00"), [2]string{users, forb}},
		{"POST", "/accounts/10042/users/alice/access-until", v("access_until", ""), [2]string{users, forb}},
		{"POST", "/accounts/10042/users/frank/access-until", v("access_until", "2099-01-01T09:00"), [2]string{forb, forb}},
		{"POST", "/accounts/10042/users/dan/access-until", v("access_until", "2099-01-01T09:00"), [2]string{forb, forb}},
		{"POST", "/accounts/10042/users/master/access-until", v("access_until", "2099-01-01T09:00"), [2]string{nf, forb}},
		{"GET", "/accounts/10042/users/alice/offboard", nil, [2]string{ok, forb}},
		{"POST", "/accounts/10042/users/alice/offboard", nil, [2]string{users, forb}},
		{"GET", "/accounts/10042/users/frank/offboard", nil, [2]string{forb, forb}}, // another manager: not even the question
		{"POST", "/accounts/10042/users/frank/offboard", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/users/erin/offboard", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10043/users/alice/offboard", nil, [2]string{nf, nf}},
		{"GET", "/accounts/10042/users/alice/password", nil, [2]string{ok, forb}},
		{"POST", "/accounts/10042/users/alice/password", nil, [2]string{ok, forb}},
		{"GET", "/accounts/10042/users/frank/password", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/users/frank/password", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/users/dan/password", nil, [2]string{forb, forb}},
		// Clearing a second factor is the master's (a manager's would be a
		// takeover).
		{"GET", "/accounts/10042/users/alice/mfa", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/users/alice/mfa", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/users/frank/mfa", nil, [2]string{forb, forb}},
		{"GET", "/accounts/10042/users/export.csv", nil, [2]string{ok, forb}},
		{"GET", "/accounts/10042/users/alice/offboarding", nil, [2]string{nf, forb}}, // never offboarded
		// Account-wide resets touch the managers too: the master's.
		{"GET", "/accounts/10042/users/reset-passwords", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/users/reset-passwords", nil, [2]string{forb, forb}},
		{"GET", "/accounts/10042/review", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/review", v("remove", "user:frank"), [2]string{forb, forb}},
		// The audit trail: an auditor's.
		{"GET", "/accounts/10042/audit", nil, [2]string{forb, ok}},
		{"GET", "/accounts/10042/audit?user=alice", nil, [2]string{forb, ok}},
		{"GET", "/accounts/10043/audit", nil, [2]string{nf, nf}},
		{"GET", "/accounts/10000/audit", nil, [2]string{nf, nf}},
		{"GET", "/me/devices", nil, [2]string{ok, ok}},
		{"POST", "/me/devices", v("name", "laptop"), [2]string{ok, ok}},
		{"POST", "/me/devices/aaaaaaaaaaaaaaaa/inactive", nil, [2]string{nf, nf}},
		{"GET", "/accounts/10042/devices", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/devices/aaaaaaaaaaaaaaaa/update", v("set", "inactive"), [2]string{forb, forb}},
		// Settings hold the firewall's preferences and the time zone.
		{"GET", "/accounts/10042/settings", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/settings", v("max_grants", "50", "time_zone", "Europe/Berlin"), [2]string{forb, forb}},
		{"GET", "/accounts/10042/notifications", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/notifications/webhooks", v("url", "https://hooks.example.com/gk"), [2]string{forb, forb}},
		{"POST", "/accounts/10042/notifications/webhooks/wh_none/delete", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/notifications/emails", v("address", "new@example.com"), [2]string{forb, forb}},
		{"POST", "/accounts/10042/notifications/emails/delete", v("address", "owner@example.com", "confirm", "on"), [2]string{forb, forb}},
		{"POST", "/accounts/10042/notifications/test", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/notifications/webhooks/wh_none/events", v("event", "rule.added"), [2]string{forb, forb}},
		{"POST", "/accounts/10042/notifications/emails/events", v("address", "owner@example.com", "event", "rule.added"), [2]string{forb, forb}},
		{"GET", "/accounts/10042/access-requests", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/access-requests/ar1/approve", nil, [2]string{forb, forb}},
		{"POST", "/accounts/10042/access-requests/ar1/deny", v("reason", "not today"), [2]string{forb, forb}},
		{"GET", "/me/access", nil, [2]string{ok, ok}},
		// Neither holds web access: no hand-off to an application.
		{"GET", "/app/signin?host=app.test&to=%2Freports", nil, [2]string{forb, forb}},
		{"POST", "/me/access", v("reason", "working from home"), [2]string{"303 /me/access", "303 /me/access"}},
	}
	var reqs [][2]string
	for _, r := range rows {
		reqs = append(reqs, [2]string{r.method, r.path})
	}
	for _, pattern := range uncoveredRoutes(reqs) {
		t.Errorf("route %s has no row in the matrix", pattern)
	}
	start := time.Now()
	for _, r := range rows {
		for id := range nPermIdentities {
			t.Run(fmt.Sprintf("%s %s/%s", r.method, r.path, permIdentityNames[id]), func(t *testing.T) {
				f := matrixFixture(t, r.path)
				f.addPermissionHolders()
				c := f.asHolder(id)
				if pg, ok := publicForms[r.path]; ok && r.method == "POST" {
					c.get(pg) // the form's own token
				}
				form := r.form
				if r.path == "/password" && r.method == "POST" {
					pw := [nPermIdentities]string{pwDan, pwErin}[id]
					form = v("current", pw, "new", "a-brand-new-password", "repeat", "a-brand-new-password")
				}
				var got answer
				if r.method == "GET" {
					got = c.get(r.path)
				} else {
					got = c.submit(r.path, form)
				}
				if got.summary() != r.want[id] {
					t.Errorf("%s %s as %s: %s, want %s", r.method, r.path, permIdentityNames[id], got.summary(), r.want[id])
				}
			})
		}
	}
	t.Logf("%d cells in %v", len(rows)*int(nPermIdentities), time.Since(start))
}
