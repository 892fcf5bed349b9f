package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// The identities holding permissions, in column order of
// TestPermissionMatrix: dan and frank hold manage_staff, erin view_audit.
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
		for _, u := range []struct {
			name, pw string
			perm     string
		}{{"dan", pwDan, policy.PermManageStaff}, {"erin", pwErin, policy.PermViewAudit}, {"frank", pwFrank, policy.PermManageStaff}} {
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

func (f *fixture) permToken(identity int) string {
	if identity == manager {
		return f.login(acctA, "dan", pwDan)
	}
	return f.login(acctA, "erin", pwErin)
}

// TestPermissionMatrix calls every endpoint as a manager (manage_staff)
// and as an auditor (view_audit), each call on a fresh store, and checks
// the exact status, including the attempts to escalate: granting
// themselves or anyone a permission, touching another manager or the
// master, changing the firewall or the settings.
func TestPermissionMatrix(t *testing.T) {
	type row struct {
		method, path string
		body         any
		want         [nPermIdentities]int
	}
	const (
		ok   = http.StatusOK
		made = http.StatusCreated
		gone = http.StatusNoContent
		unau = http.StatusUnauthorized
		forb = http.StatusForbidden
		nf   = http.StatusNotFound
		bad  = http.StatusBadRequest
	)
	rows := []row{
		//                                                                   manager auditor
		{"POST", "/api/v1/login", LoginRequest{Account: acctA, Username: "alice", Password: pwAlice}, [2]int{ok, ok}},
		{"POST", "/api/v1/logout", nil, [2]int{gone, gone}},
		{"GET", "/api/v1/me", nil, [2]int{ok, ok}},
		{"DELETE", "/api/v1/me/grants/1", nil, [2]int{nf, nf}},
		{"POST", "/api/v1/me/devices", enrollmentBody{Name: "home laptop"}, [2]int{made, made}},
		{"POST", "/api/v1/devices/enroll", EnrollRequest{Code: "10042.AAAA-BBBB-CCCC-DDDD", Name: "x", PublicKey: testDeviceKey().der}, [2]int{forb, forb}},
		{"GET", "/api/v1/me/devices", nil, [2]int{ok, ok}},
		{"PATCH", "/api/v1/me/devices/aaaaaaaaaaaaaaaa", map[string]bool{"active": false}, [2]int{nf, nf}},
		{"GET", "/api/v1/accounts/10042/devices", nil, [2]int{forb, forb}},
		{"PATCH", "/api/v1/accounts/10042/devices/aaaaaaaaaaaaaaaa", map[string]bool{"active": false}, [2]int{forb, forb}},
		{"POST", "/api/v1/devices/lease", nil, [2]int{unau, unau}},
		{"POST", "/api/v1/accounts/10042/unblock", map[string]string{"ttl": "1h"}, [2]int{made, made}},
		{"POST", "/api/v1/accounts/10043/unblock", nil, [2]int{nf, nf}},
		// The firewall is the master's: a manager cannot read or change it.
		{"GET", "/api/v1/accounts/10042/firewall", nil, [2]int{forb, forb}},
		{"PUT", "/api/v1/accounts/10042/firewall/mode", modeBody{Mode: "off", Confirm: true}, [2]int{forb, forb}},
		{"POST", "/api/v1/accounts/10042/firewall/rules", ruleBody{CIDR: "198.51.100.0/24"}, [2]int{forb, forb}},
		{"DELETE", "/api/v1/accounts/10042/firewall/rules/2", nil, [2]int{forb, forb}},
		// The staff list.
		{"GET", "/api/v1/accounts/10042/users", nil, [2]int{ok, forb}},
		{"GET", "/api/v1/accounts/10043/users", nil, [2]int{nf, nf}},
		{"GET", "/api/v1/accounts/10000/users", nil, [2]int{nf, nf}},
		{"POST", "/api/v1/accounts/10042/users", userBody{Username: "dave.miller", Password: "dave-initial-pw-1"}, [2]int{made, forb}},
		{"POST", "/api/v1/accounts/10043/users", userBody{Username: "dave.miller", Password: "dave-initial-pw-1"}, [2]int{nf, nf}},
		{"POST", "/api/v1/accounts/10042/users", userBody{Username: "dave.miller", Password: "dave-initial-pw-1",
			Permissions: []string{policy.PermManageStaff}}, [2]int{forb, forb}},
		{"PATCH", "/api/v1/accounts/10042/users/alice", map[string]bool{"desktop_access": false}, [2]int{ok, forb}},
		{"PATCH", "/api/v1/accounts/10042/users/alice", map[string]bool{"must_reset_password": true}, [2]int{ok, forb}},
		{"PATCH", "/api/v1/accounts/10042/users/alice", map[string]any{"permissions": []string{policy.PermViewAudit}}, [2]int{forb, forb}},
		{"PATCH", "/api/v1/accounts/10042/users/alice", map[string]any{"permissions": []string{"root"}}, [2]int{forb, forb}},
		// Escalation: grant themselves more, or take it from a peer.
		{"PATCH", "/api/v1/accounts/10042/users/dan", map[string]any{"permissions": []string{policy.PermManageStaff, policy.PermViewAudit}}, [2]int{forb, forb}},
		{"PATCH", "/api/v1/accounts/10042/users/erin", map[string]any{"permissions": []string{policy.PermManageStaff, policy.PermViewAudit}}, [2]int{forb, forb}},
		{"PATCH", "/api/v1/accounts/10042/users/frank", map[string]any{"permissions": []string{}}, [2]int{forb, forb}},
		{"PATCH", "/api/v1/accounts/10042/users/frank", map[string]bool{"active": false}, [2]int{forb, forb}},
		{"PATCH", "/api/v1/accounts/10042/users/erin", map[string]bool{"must_reset_password": true}, [2]int{forb, forb}},
		{"PATCH", "/api/v1/accounts/10042/users/dan", map[string]bool{"active": false}, [2]int{forb, forb}},
		{"PATCH", "/api/v1/accounts/10042/users/master", map[string]bool{"active": false}, [2]int{nf, forb}},
		{"PATCH", "/api/v1/accounts/10042/users/alice", map[string]string{}, [2]int{bad, forb}},
		{"POST", "/api/v1/accounts/10042/users/alice/offboard", nil, [2]int{ok, forb}},
		{"POST", "/api/v1/accounts/10042/users/frank/offboard", nil, [2]int{forb, forb}},
		{"POST", "/api/v1/accounts/10042/users/erin/offboard", nil, [2]int{forb, forb}},
		{"POST", "/api/v1/accounts/10043/users/alice/offboard", nil, [2]int{nf, nf}},
		{"GET", "/api/v1/accounts/10042/users/alice/offboarding", nil, [2]int{nf, forb}},
		{"GET", "/api/v1/accounts/10042/users/export.csv", nil, [2]int{ok, forb}},
		{"GET", "/api/v1/accounts/10043/users/export.csv", nil, [2]int{nf, nf}},
		{"GET", "/api/v1/accounts/10043/users/alice/offboarding", nil, [2]int{nf, nf}},
		// A temporary password: for staff, never for another manager
		// (that would take their login over), nor the master's.
		{"POST", "/api/v1/accounts/10042/users/alice/password", nil, [2]int{ok, forb}},
		{"POST", "/api/v1/accounts/10042/users/frank/password", nil, [2]int{forb, forb}},
		{"POST", "/api/v1/accounts/10042/users/erin/password", newPasswordBody{Password: "a-temporary-password"}, [2]int{forb, forb}},
		{"POST", "/api/v1/accounts/10042/users/dan/password", nil, [2]int{forb, forb}},
		{"POST", "/api/v1/accounts/10043/users/alice/password", nil, [2]int{nf, nf}},
		{"POST", "/api/v1/accounts/10042/master/password", nil, [2]int{forb, forb}},
		// Account-wide resets touch the managers too: the master's.
		{"POST", "/api/v1/accounts/10042/users/reset-passwords", nil, [2]int{forb, forb}},
		// The access review is the master's.
		{"GET", "/api/v1/accounts/10042/review", nil, [2]int{forb, forb}},
		{"POST", "/api/v1/accounts/10042/review", reviewBody{Remove: []ReviewRef{{Kind: "user", ID: "frank"}}}, [2]int{forb, forb}},
		{"GET", "/api/v1/accounts/10042/audit", nil, [2]int{forb, ok}},
		{"GET", "/api/v1/accounts/10043/audit", nil, [2]int{nf, nf}},
		{"GET", "/api/v1/accounts/10000/audit", nil, [2]int{nf, nf}},
		// Settings hold the firewall's and the notifications' preferences.
		{"GET", "/api/v1/accounts/10042/settings", nil, [2]int{forb, forb}},
		{"PATCH", "/api/v1/accounts/10042/settings", map[string]any{"max_grants": 50}, [2]int{forb, forb}},
		// Notifications are the master's; access requests are decided by
		// the master (a manager may ask, as any user with desktop access).
		{"GET", "/api/v1/accounts/10042/notifications", nil, [2]int{forb, forb}},
		{"PUT", "/api/v1/accounts/10042/notifications", map[string]any{"emails": []any{map[string]string{"address": "new@example.com"}}}, [2]int{forb, forb}},
		{"POST", "/api/v1/accounts/10042/notifications/test", nil, [2]int{forb, forb}},
		// (this account lets users unblock themselves: past the role check,
		// the request is refused as unneeded)
		{"POST", "/api/v1/accounts/10042/access-requests", accessRequestBody{Reason: "working from home"}, [2]int{http.StatusConflict, http.StatusConflict}},
		{"GET", "/api/v1/accounts/10042/access-requests", nil, [2]int{forb, forb}},
		{"POST", "/api/v1/accounts/10042/access-requests/ar1/approve", nil, [2]int{forb, forb}},
		{"POST", "/api/v1/accounts/10042/access-requests/ar1/deny", denyBody{Reason: "not today"}, [2]int{forb, forb}},
		{"GET", "/api/v1/me/access-requests", nil, [2]int{ok, ok}},
		// Second factors and sessions: their own as any user; everyone
		// else's are the master's (clearing a manager's factor would be a
		// takeover).
		{"POST", "/api/v1/me/mfa/totp", nil, [2]int{ok, ok}},
		{"POST", "/api/v1/me/mfa/totp/confirm", codeBody{Code: "000000"}, [2]int{bad, bad}},
		{"DELETE", "/api/v1/me/mfa/totp", nil, [2]int{ok, ok}},
		{"POST", "/api/v1/me/passkeys/register/begin", nil, [2]int{ok, ok}},
		{"POST", "/api/v1/me/passkeys/register/finish", PasskeyRegistration{Token: "v1.forged", Name: "key", Credential: []byte(`{}`)}, [2]int{bad, bad}},
		{"GET", "/api/v1/me/passkeys", nil, [2]int{ok, ok}},
		{"DELETE", "/api/v1/me/passkeys/no-such-id", nil, [2]int{nf, nf}},
		{"PATCH", "/api/v1/me/passkeys/no-such-id", map[string]string{"name": "desk"}, [2]int{nf, nf}},
		{"POST", "/api/v1/login/passkey/begin", nil, [2]int{ok, ok}},
		{"POST", "/api/v1/login/passkey/finish", PasskeyLogin{Token: "v1.forged", Credential: []byte(`{}`)}, [2]int{bad, bad}},
		{"GET", "/api/v1/me/sessions", nil, [2]int{ok, ok}},
		{"DELETE", "/api/v1/me/sessions/0000000000000000", nil, [2]int{nf, nf}},
		{"GET", "/api/v1/accounts/10042/sessions", nil, [2]int{forb, forb}},
		{"DELETE", "/api/v1/accounts/10042/sessions/0000000000000000", nil, [2]int{forb, forb}},
		{"DELETE", "/api/v1/accounts/10042/users/alice/mfa", nil, [2]int{forb, forb}},
		{"DELETE", "/api/v1/accounts/10042/users/frank/mfa", nil, [2]int{forb, forb}},
		{"DELETE", "/api/v1/accounts/10042/master/mfa", nil, [2]int{forb, forb}},
		// Email addresses reset passwords: a manager sets only their own,
		// never staff's and never a peer's (that would be a takeover).
		{"POST", "/api/v1/password/forgot", ForgotRequest{Account: acctA, Username: "frank"}, [2]int{http.StatusAccepted, http.StatusAccepted}},
		{"POST", "/api/v1/password/reset", ResetRequest{Token: acctA + "." + strings.Repeat("A", 43) + ".frank", New: "a-brand-new-password"}, [2]int{bad, bad}},
		{"POST", "/api/v1/email/confirm", TokenRequest{Token: acctA + "." + strings.Repeat("A", 43)}, [2]int{bad, bad}},
		{"GET", "/api/v1/me/email", nil, [2]int{ok, ok}},
		{"PUT", "/api/v1/me/email", EmailRequest{Email: "me@example.com"}, [2]int{ok, ok}},
		{"PUT", "/api/v1/accounts/10042/users/alice/email", EmailRequest{Email: "alice@example.com"}, [2]int{forb, forb}},
		{"PUT", "/api/v1/accounts/10042/users/frank/email", EmailRequest{Email: "mine@example.com"}, [2]int{forb, forb}},
		{"POST", "/api/v1/accounts", accountBody{ID: "20001", Name: "New Studio"}, [2]int{forb, forb}},
		{"GET", "/api/v1/accounts", nil, [2]int{forb, forb}},
	}
	passwordRow := func(id int) any {
		return passwordBody{Current: [2]string{pwDan, pwErin}[id], New: "a-brand-new-password"}
	}
	// Every route must have a row (the password change is tested below).
	mux := http.NewServeMux()
	for _, rt := range (&Server{}).routes() {
		mux.HandleFunc(rt.pattern, func(http.ResponseWriter, *http.Request) {})
	}
	covered := map[string]bool{"POST /api/v1/password": true}
	for _, r := range rows {
		req, _ := http.NewRequest(r.method, "https://gk"+r.path, nil)
		_, pattern := mux.Handler(req)
		covered[pattern] = true
	}
	for _, rt := range (&Server{}).routes() {
		if !covered[rt.pattern] {
			t.Errorf("route %s has no row in the permission matrix", rt.pattern)
		}
	}
	rows = append(rows, row{"POST", "/api/v1/password", nil, [2]int{ok, ok}})
	for _, r := range rows {
		for id := range nPermIdentities {
			name := fmt.Sprintf("%s %s %v/%s", r.method, r.path, r.body, permIdentityNames[id])
			t.Run(name, func(t *testing.T) {
				f := newFixture(t, fixtureOptions{})
				f.addPermissionHolders()
				now := time.Now()
				f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Source: policy.SourceUnblock,
					Owner: "alice", CreatedBy: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
				f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Source: policy.SourceManual,
					CreatedBy: "master", CreatedAt: now})
				body := r.body
				if r.path == "/api/v1/password" {
					body = passwordRow(id)
				}
				tok := f.permToken(id)
				before := f.state(acctA)
				res := f.req(r.method, r.path, tok, body)
				if res.status != r.want[id] {
					t.Errorf("%s as %s: status %d, want %d (%s)", r.path, permIdentityNames[id], res.status, r.want[id], res.body)
				}
				if res.status >= 400 && res.errCode() == "" {
					t.Errorf("error answer without a code: %s", res.body)
				}
				if res.status == forb {
					if after := f.state(acctA); after != before {
						t.Errorf("a refused call changed the account: now %s", after)
					}
				}
			})
		}
	}
}

// TestGrantPermissions: the master grants and takes permissions with the
// user's PATCH, audited; a name that is not a permission is refused; the
// change applies at the holder's next call, sessions already open too;
// what a manager creates holds no permission.
func TestGrantPermissions(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	mtok := f.token(master)
	if r := f.req("PATCH", "/api/v1/accounts/10042/users/bob", mtok, map[string]any{"permissions": []string{"root"}}); r.status != 400 || r.errCode() != CodeInvalidPermission {
		t.Fatalf("unknown permission: %d %s", r.status, r.body)
	}
	r := f.req("PATCH", "/api/v1/accounts/10042/users/bob", mtok,
		map[string]any{"permissions": []string{policy.PermViewAudit, policy.PermManageStaff, policy.PermViewAudit}})
	var ch UserChange
	r.decode(t, &ch)
	if r.status != 200 || !slices.Equal(ch.User.Permissions, []string{policy.PermManageStaff, policy.PermViewAudit}) {
		t.Fatalf("grant: %d %s", r.status, r.body)
	}
	if e := f.lastAudit(acctA); e.Action != "user.update" || !strings.Contains(string(e.After), `"permissions":["manage_staff","view_audit"]`) {
		t.Fatalf("grant audit: %+v %s", e, e.After)
	}
	btok := f.login(acctA, "bob", pwBob)
	var me Me
	f.req("GET", "/api/v1/me", btok, nil).decode(t, &me)
	if !slices.Equal(me.Permissions, []string{policy.PermManageStaff, policy.PermViewAudit}) {
		t.Fatalf("me: %+v", me)
	}
	r = f.req("POST", "/api/v1/accounts/10042/users", btok, userBody{Username: "gina.rossi", Password: "gina-initial-pw-1"})
	var made UserView
	r.decode(t, &made)
	if r.status != 201 || len(made.Permissions) != 0 {
		t.Fatalf("manager creates: %d %s", r.status, r.body)
	}
	if e := f.lastAudit(acctA); e.Actor != "bob" || e.Action != "user.create" {
		t.Fatalf("create audit: %+v", e)
	}
	if r := f.req("GET", "/api/v1/accounts/10042/audit", btok, nil); r.status != 200 {
		t.Fatalf("audit with view_audit: %d %s", r.status, r.body)
	}
	// Taken away: bob's open session loses both at once.
	if r := f.req("PATCH", "/api/v1/accounts/10042/users/bob", mtok, map[string]any{"permissions": []string{}}); r.status != 200 {
		t.Fatalf("take: %d %s", r.status, r.body)
	}
	if r := f.req("GET", "/api/v1/accounts/10042/users", btok, nil); r.status != 403 {
		t.Fatalf("staff list after the permission was taken: %d %s", r.status, r.body)
	}
	if r := f.req("GET", "/api/v1/accounts/10042/audit", btok, nil); r.status != 403 {
		t.Fatalf("audit after the permission was taken: %d %s", r.status, r.body)
	}
	// The same permissions again change nothing and are not audited.
	n := f.auditCount(acctA)
	if r := f.req("PATCH", "/api/v1/accounts/10042/users/bob", mtok, map[string]any{"permissions": nil}); r.status != 400 {
		t.Fatalf("null permissions alone: %d %s", r.status, r.body)
	}
	if r := f.req("PATCH", "/api/v1/accounts/10042/users/bob", mtok, map[string]any{"permissions": []string{}}); r.status != 200 || f.auditCount(acctA) != n {
		t.Fatalf("no change: %d %s, audit %d -> %d", r.status, r.body, n, f.auditCount(acctA))
	}
}
