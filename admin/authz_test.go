package admin

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// The identities of the authorization matrix, in column order.
const (
	anon         = iota // no token
	user                // alice: desktop access
	noDesk              // bob: no desktop access
	mustReset           // carol: must reset her password
	master              // master of 10042
	otherMaster         // master of 10043, unrelated
	parentMaster        // master of 10000, the parent of 10042
	operator            // the operator token
	nIdentities
)

var identityNames = [nIdentities]string{"anonymous", "user", "user-no-desktop", "user-must-reset",
	"master", "other-master", "parent-master", "operator"}

// token logs identity in and returns its bearer token.
func (f *fixture) token(identity int) string {
	switch identity {
	case user:
		return f.login(acctA, "alice", pwAlice)
	case noDesk:
		return f.login(acctA, "bob", pwBob)
	case mustReset:
		return f.login(acctA, "carol", pwCarol)
	case master:
		return f.login(acctA, "", pwA)
	case otherMaster:
		return f.login(acctB, "", pwB)
	case parentMaster:
		return f.login(acctParent, "", pwParent)
	case operator:
		return opToken
	}
	return ""
}

// currentPassword is identity's password, for the password-change row.
var currentPassword = [nIdentities]string{"", pwAlice, pwBob, pwCarol, pwA, pwB, pwParent, ""}

// TestAuthorizationMatrix calls every endpoint as every identity, each call
// on a fresh store, and checks the exact status. Account 10042 is the
// target unless the path says otherwise; it holds alice's grant (ID 1) and
// a manual rule (ID 2).
func TestAuthorizationMatrix(t *testing.T) {
	type row struct {
		method, path string
		body         func(identity int) any
		want         [nIdentities]int
	}
	none := func(int) any { return nil }
	fixed := func(v any) func(int) any { return func(int) any { return v } }
	const (
		ok   = http.StatusOK
		made = http.StatusCreated
		gone = http.StatusNoContent
		unau = http.StatusUnauthorized
		forb = http.StatusForbidden
		nf   = http.StatusNotFound
		acc  = http.StatusAccepted
		bad  = http.StatusBadRequest
	)
	rows := []row{
		//                                                                          anon  user  noDesk reset master other parent operator
		{"POST", "/api/v1/login", fixed(LoginRequest{Account: acctA, Username: "alice", Password: pwAlice}),
			[nIdentities]int{ok, ok, ok, ok, ok, ok, ok, ok}},
		{"POST", "/api/v1/logout", none,
			[nIdentities]int{unau, gone, gone, gone, gone, gone, gone, forb}},
		{"POST", "/api/v1/password", func(id int) any {
			return passwordBody{Current: currentPassword[id], New: "a-brand-new-password"}
		}, [nIdentities]int{unau, ok, ok, ok, ok, ok, ok, forb}},
		{"GET", "/api/v1/me", none,
			[nIdentities]int{unau, ok, ok, ok, ok, ok, ok, forb}},
		{"POST", "/api/v1/me/mfa/totp", none,
			[nIdentities]int{unau, ok, ok, forb, ok, ok, ok, forb}},
		{"POST", "/api/v1/me/mfa/totp/confirm", fixed(codeBody{Code: "000000"}), // none pending
			[nIdentities]int{unau, bad, bad, forb, bad, bad, bad, forb}},
		{"DELETE", "/api/v1/me/mfa/totp", none,
			[nIdentities]int{unau, ok, ok, forb, ok, ok, ok, forb}},
		{"POST", "/api/v1/me/passkeys/register/begin", none,
			[nIdentities]int{unau, ok, ok, forb, ok, ok, ok, forb}},
		{"POST", "/api/v1/me/passkeys/register/finish", fixed(PasskeyRegistration{Token: "v1.forged", Name: "key",
			Credential: []byte(`{}`)}), [nIdentities]int{unau, bad, bad, forb, bad, bad, bad, forb}},
		{"GET", "/api/v1/me/passkeys", none,
			[nIdentities]int{unau, ok, ok, forb, ok, ok, ok, forb}},
		{"DELETE", "/api/v1/me/passkeys/no-such-id", none,
			[nIdentities]int{unau, nf, nf, forb, nf, nf, nf, forb}},
		{"PATCH", "/api/v1/me/passkeys/no-such-id", fixed(map[string]string{"name": "desk"}),
			[nIdentities]int{unau, nf, nf, forb, nf, nf, nf, forb}},
		{"POST", "/api/v1/login/passkey/begin", none,
			[nIdentities]int{ok, ok, ok, ok, ok, ok, ok, ok}},
		{"POST", "/api/v1/login/passkey/finish", fixed(PasskeyLogin{Token: "v1.forged", Credential: []byte(`{}`)}),
			[nIdentities]int{bad, bad, bad, bad, bad, bad, bad, bad}},
		{"GET", "/api/v1/me/sessions", none,
			[nIdentities]int{unau, ok, ok, ok, ok, ok, ok, forb}},
		{"DELETE", "/api/v1/me/sessions/0000000000000000", none,
			[nIdentities]int{unau, nf, nf, nf, nf, nf, nf, forb}},
		{"GET", "/api/v1/accounts/10042/sessions", none,
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"DELETE", "/api/v1/accounts/10042/sessions/0000000000000000", none,
			[nIdentities]int{unau, forb, forb, forb, nf, nf, nf, forb}},
		// Public, and the same answer whoever asks about whom.
		{"POST", "/api/v1/password/forgot", fixed(ForgotRequest{Account: acctA, Username: "alice"}),
			[nIdentities]int{acc, acc, acc, acc, acc, acc, acc, acc}},
		{"POST", "/api/v1/password/forgot", fixed(ForgotRequest{Account: acctB}),
			[nIdentities]int{acc, acc, acc, acc, acc, acc, acc, acc}},
		// Only a mailed token resets; a session or the operator token is no help.
		{"POST", "/api/v1/password/reset", fixed(ResetRequest{Token: acctA + "." + strings.Repeat("A", 43) + ".alice", New: "a-brand-new-password"}),
			[nIdentities]int{bad, bad, bad, bad, bad, bad, bad, bad}},
		{"POST", "/api/v1/email/confirm", fixed(TokenRequest{Token: acctA + "." + strings.Repeat("A", 43)}),
			[nIdentities]int{bad, bad, bad, bad, bad, bad, bad, bad}},
		{"GET", "/api/v1/me/email", none,
			[nIdentities]int{unau, ok, ok, ok, ok, ok, ok, forb}},
		{"PUT", "/api/v1/me/email", fixed(EmailRequest{Email: "me@example.com"}),
			[nIdentities]int{unau, ok, ok, ok, ok, ok, ok, forb}},
		// A user sets their own; a master (or manage_staff) anyone's.
		{"PUT", "/api/v1/accounts/10042/users/alice/email", fixed(EmailRequest{Email: "alice@example.com"}),
			[nIdentities]int{unau, ok, forb, forb, ok, nf, ok, forb}},
		{"PUT", "/api/v1/accounts/10042/users/bob/email", fixed(EmailRequest{Email: "bob@example.com"}),
			[nIdentities]int{unau, forb, ok, forb, ok, nf, ok, forb}},
		{"DELETE", "/api/v1/me/grants/1", none,
			[nIdentities]int{unau, gone, nf, forb, nf, nf, nf, forb}},
		{"POST", "/api/v1/me/devices", fixed(enrollmentBody{Name: "home laptop"}),
			[nIdentities]int{unau, made, forb, forb, made, made, made, forb}},
		{"POST", "/api/v1/devices/enroll", fixed(EnrollRequest{Code: "10042.AAAA-BBBB-CCCC-DDDD", Name: "x", PublicKey: testDeviceKey().der}),
			[nIdentities]int{forb, forb, forb, forb, forb, forb, forb, forb}},
		{"GET", "/api/v1/me/devices", none,
			[nIdentities]int{unau, ok, ok, forb, ok, ok, ok, forb}},
		{"PATCH", "/api/v1/me/devices/aaaaaaaaaaaaaaaa", fixed(map[string]bool{"active": false}),
			[nIdentities]int{unau, nf, nf, forb, nf, nf, nf, forb}},
		{"GET", "/api/v1/accounts/10042/devices", none,
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"PATCH", "/api/v1/accounts/10042/devices/aaaaaaaaaaaaaaaa", fixed(map[string]bool{"active": false}),
			[nIdentities]int{unau, forb, forb, forb, nf, nf, nf, forb}},
		{"POST", "/api/v1/devices/lease", none, // a token is not a device
			[nIdentities]int{unau, unau, unau, unau, unau, unau, unau, unau}},
		// unblock: approval: alice's unblock becomes a request (202).
		{"POST", "/api/v1/accounts/10042/unblock", fixed(map[string]string{"ttl": "1h"}),
			[nIdentities]int{unau, http.StatusAccepted, forb, forb, made, nf, made, forb}},
		{"POST", "/api/v1/accounts/10043/unblock", none,
			[nIdentities]int{unau, nf, nf, forb, nf, made, nf, forb}},
		{"GET", "/api/v1/accounts/10042/firewall", none,
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"GET", "/api/v1/accounts/10043/firewall", none,
			[nIdentities]int{unau, nf, nf, forb, nf, ok, nf, forb}},
		{"GET", "/api/v1/accounts/99999/firewall", none,
			[nIdentities]int{unau, nf, nf, forb, nf, nf, nf, forb}},
		{"GET", "/api/v1/accounts/10000/firewall", none,
			[nIdentities]int{unau, nf, nf, forb, nf, nf, ok, forb}},
		{"PUT", "/api/v1/accounts/10042/firewall/mode", fixed(modeBody{Mode: "monitor"}),
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"POST", "/api/v1/accounts/10042/firewall/rules", fixed(ruleBody{CIDR: "198.51.100.0/24", Note: "branch office"}),
			[nIdentities]int{unau, forb, forb, forb, made, nf, made, forb}},
		{"DELETE", "/api/v1/accounts/10042/firewall/rules/2", none,
			[nIdentities]int{unau, forb, forb, forb, gone, nf, gone, forb}},
		{"GET", "/api/v1/accounts/10042/users", none,
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"POST", "/api/v1/accounts/10042/users", fixed(userBody{Username: "dave.miller", Password: "dave-initial-pw-1"}),
			[nIdentities]int{unau, forb, forb, forb, made, nf, made, forb}},
		{"PATCH", "/api/v1/accounts/10042/users/alice", fixed(map[string]bool{"desktop_access": false}),
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"POST", "/api/v1/accounts/10042/users/alice/offboard", none,
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"GET", "/api/v1/accounts/10042/users/export.csv", none,
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"GET", "/api/v1/accounts/10042/users/alice/offboarding", none, // alice was never offboarded
			[nIdentities]int{unau, forb, forb, forb, nf, nf, nf, forb}},
		{"POST", "/api/v1/accounts/10042/users/reset-passwords", none,
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"POST", "/api/v1/accounts/10042/users/alice/password", none,
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"POST", "/api/v1/accounts/10042/users/alice/password", fixed(newPasswordBody{Password: "a-temporary-password"}),
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"POST", "/api/v1/accounts/10042/master/password", none,
			[nIdentities]int{unau, forb, forb, forb, forb, forb, forb, ok}},
		{"POST", "/api/v1/accounts/99999/master/password", none,
			[nIdentities]int{unau, forb, forb, forb, forb, forb, forb, nf}},
		{"DELETE", "/api/v1/accounts/10042/users/alice/mfa", none,
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"DELETE", "/api/v1/accounts/10042/master/mfa", none,
			[nIdentities]int{unau, forb, forb, forb, forb, forb, forb, ok}},
		{"GET", "/api/v1/accounts/10042/review", none,
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"POST", "/api/v1/accounts/10042/review", fixed(reviewBody{Remove: []ReviewRef{{Kind: "rule", ID: "2"}}}),
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"GET", "/api/v1/accounts/10042/audit", none,
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"GET", "/api/v1/accounts/10042/settings", none,
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"PATCH", "/api/v1/accounts/10042/settings", fixed(map[string]any{"max_grants": 5}),
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"PATCH", "/api/v1/accounts/10043/settings", fixed(map[string]any{"max_grants": 5}),
			[nIdentities]int{unau, nf, nf, forb, nf, ok, nf, forb}},
		{"GET", "/api/v1/accounts/10042/notifications", none,
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"PUT", "/api/v1/accounts/10042/notifications", fixed(map[string]any{"emails": []any{map[string]string{"address": "new@example.com"}}}),
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"PUT", "/api/v1/accounts/10043/notifications", fixed(map[string]any{"emails": []any{map[string]string{"address": "new@example.com"}}}),
			[nIdentities]int{unau, nf, nf, forb, nf, ok, nf, forb}},
		{"POST", "/api/v1/accounts/10042/notifications/test", none,
			[nIdentities]int{unau, forb, forb, forb, http.StatusAccepted, nf, http.StatusAccepted, forb}},
		{"POST", "/api/v1/accounts/10042/access-requests", fixed(accessRequestBody{Reason: "working from home"}),
			[nIdentities]int{unau, made, forb, forb, forb, nf, forb, forb}},
		{"GET", "/api/v1/accounts/10042/access-requests", none,
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"GET", "/api/v1/accounts/10043/access-requests", none,
			[nIdentities]int{unau, nf, nf, forb, nf, ok, nf, forb}},
		{"POST", "/api/v1/accounts/10042/access-requests/ar1/approve", none,
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"POST", "/api/v1/accounts/10042/access-requests/ar1/deny", fixed(denyBody{Reason: "not today"}),
			[nIdentities]int{unau, forb, forb, forb, ok, nf, ok, forb}},
		{"GET", "/api/v1/me/access-requests", none,
			[nIdentities]int{unau, ok, ok, forb, ok, ok, ok, forb}},
		{"POST", "/api/v1/accounts", fixed(accountBody{ID: "20001", Name: "New Studio"}),
			[nIdentities]int{unau, forb, forb, forb, forb, forb, forb, made}},
		{"GET", "/api/v1/accounts", none,
			[nIdentities]int{unau, forb, forb, forb, forb, forb, forb, ok}},
	}
	// Every route must have a row.
	mux := http.NewServeMux()
	for _, rt := range (&Server{}).routes() {
		mux.HandleFunc(rt.pattern, func(http.ResponseWriter, *http.Request) {})
	}
	covered := map[string]bool{}
	for _, r := range rows {
		req, _ := http.NewRequest(r.method, "https://gk"+r.path, nil)
		_, pattern := mux.Handler(req)
		covered[pattern] = true
	}
	for _, rt := range (&Server{}).routes() {
		if !covered[rt.pattern] {
			t.Errorf("route %s has no row in the matrix", rt.pattern)
		}
	}
	start := time.Now()
	for _, r := range rows {
		for id := range nIdentities {
			name := fmt.Sprintf("%s %s/%s", r.method, r.path, identityNames[id])
			t.Run(name, func(t *testing.T) {
				f := newFixture(t, fixtureOptions{})
				now := time.Now()
				f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Source: policy.SourceUnblock,
					Owner: "alice", CreatedBy: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
				f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Source: policy.SourceManual,
					CreatedBy: "master", CreatedAt: now})
				f.setNotifications(acctA, policy.Notifications{Emails: []policy.Email{{Address: "owner@example.com"}}})
				f.setUnblock(acctA, policy.UnblockApproval)
				f.putRequest(acctA, policy.AccessRequest{ID: "ar1", User: "alice", IP: netip.MustParseAddr("192.0.2.44"),
					Status: policy.RequestPending, CreatedAt: now, ExpiresAt: now.Add(policy.RequestLifetime)})
				res := f.req(r.method, r.path, f.token(id), r.body(id))
				if res.status != r.want[id] {
					t.Errorf("%s as %s: status %d, want %d (%s)", r.path, identityNames[id], res.status, r.want[id], res.body)
				}
				if res.status >= 400 && res.errCode() == "" {
					t.Errorf("error answer without a code: %s", res.body)
				}
			})
		}
	}
	t.Logf("%d cells in %v", len(rows)*nIdentities, time.Since(start))
}

// TestMustResetCodes checks the codes, not just the statuses, of the
// password-reset gate: the user can still see themselves, change the
// password and log out, and nothing else until then.
func TestMustResetCodes(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tok := f.token(mustReset)
	if r := f.req("POST", "/api/v1/accounts/10042/unblock", tok, nil); r.status != 403 || r.errCode() != CodePasswordResetRequired {
		t.Fatalf("unblock before reset: %d %s", r.status, r.body)
	}
	if r := f.req("GET", "/api/v1/accounts/10042/firewall", tok, nil); r.errCode() != CodePasswordResetRequired {
		t.Fatalf("firewall before reset: %d %s", r.status, r.body)
	}
	var me Me
	r := f.req("GET", "/api/v1/me", tok, nil)
	r.decode(t, &me)
	if !me.MustResetPassword || me.ClientIP != "127.0.0.1" {
		t.Fatalf("me: %+v", me)
	}
	if r := f.req("POST", "/api/v1/password", tok, passwordBody{Current: pwCarol, New: pwCarol}); r.errCode() != CodeWeakPassword {
		t.Fatalf("same password accepted: %d %s", r.status, r.body)
	}
	if r := f.req("POST", "/api/v1/password", tok, passwordBody{Current: pwCarol, New: "carol-new-password"}); r.status != 200 {
		t.Fatalf("password: %d %s", r.status, r.body)
	}
	if r := f.req("POST", "/api/v1/accounts/10042/unblock", tok, nil); r.status != 201 {
		t.Fatalf("unblock after reset: %d %s", r.status, r.body)
	}
	if r := f.req("GET", "/api/v1/accounts/10042/firewall", tok, nil); r.errCode() != CodeForbidden {
		t.Fatalf("a user on the firewall: %d %s", r.status, r.body)
	}
	// A master requiring a reset applies to the session already open.
	m := f.token(master)
	f.req("PATCH", "/api/v1/accounts/10042/users/carol", m, map[string]bool{"must_reset_password": true})
	if r := f.req("POST", "/api/v1/accounts/10042/unblock", tok, nil); r.errCode() != CodePasswordResetRequired {
		t.Fatalf("unblock after a new reset requirement: %d %s", r.status, r.body)
	}
	if r := f.req("POST", "/api/v1/accounts/10042/unblock", f.token(noDesk), nil); r.errCode() != CodeNoDesktopAccess {
		t.Fatalf("unblock without desktop access: %d %s", r.status, r.body)
	}
}
