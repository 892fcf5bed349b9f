package admin

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// A master gives an employee who forgot their password a temporary one:
// the employee's sessions end at once, the new login is held on "choose a
// new password", and the audit entry names no password. Generated when
// none is given, and shown only in that answer.
func TestTemporaryPassword(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.token(master)
	alice := f.token(user)
	aliceAgain := f.token(user)

	var res TemporaryPassword
	r := f.req("POST", "/api/v1/accounts/10042/users/alice/password", m, nil)
	r.decode(t, &res)
	if r.status != 200 || res.Username != "alice" || len(res.Password) < 12 || res.SessionsEnded != 2 {
		t.Fatalf("temporary password: %d %s", r.status, r.body)
	}
	for _, tok := range []string{alice, aliceAgain} {
		if r := f.req("GET", "/api/v1/me", tok, nil); r.status != 401 {
			t.Fatalf("an old session of alice: %d %s", r.status, r.body)
		}
	}
	if r := f.req("POST", "/api/v1/login", "", loginBody(acctA, "alice", pwAlice)); r.status != 401 {
		t.Fatalf("the forgotten password still logs in: %d", r.status)
	}
	var login struct {
		Token             string `json:"token"`
		MustResetPassword bool   `json:"must_reset_password"`
	}
	f.req("POST", "/api/v1/login", "", loginBody(acctA, "alice", res.Password)).decode(t, &login)
	if !login.MustResetPassword {
		t.Fatal("a login with the temporary password is not held on choosing a new one")
	}
	if r := f.req("POST", "/api/v1/accounts/10042/unblock", login.Token, nil); r.errCode() != CodePasswordResetRequired {
		t.Fatalf("unblock with the temporary password: %d %s", r.status, r.body)
	}
	if r := f.req("POST", "/api/v1/password", login.Token, passwordBody{Current: res.Password, New: "alice-own-new-password"}); r.status != 200 {
		t.Fatalf("choosing a new password: %d %s", r.status, r.body)
	}
	if r := f.req("POST", "/api/v1/accounts/10042/unblock", login.Token, nil); r.status != 201 {
		t.Fatalf("unblock after choosing: %d %s", r.status, r.body)
	}

	// Among the audit entries of the two calls, the temporary password's
	// names no password, generated or chosen.
	f.req("POST", "/api/v1/accounts/10042/users/bob/password", m, newPasswordBody{Password: "bob-chosen-temp-pw"})
	e := f.lastAudit(acctA)
	if e.Action != "user.temporary_password" || e.Target != "user/bob" {
		t.Fatalf("audit: %+v", e)
	}
	entries, err := f.bolt.Audit(t.Context(), acctA, policy.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := json.Marshal(e)
		for _, secret := range []string{res.Password, "bob-chosen-temp-pw", "$argon2id"} {
			if strings.Contains(string(b), secret) {
				t.Fatalf("audit entry holds a password: %s", b)
			}
		}
	}

	// Bad input changes nothing.
	for _, bad := range []struct {
		path string
		body any
		code string
	}{
		{"/api/v1/accounts/10042/users/alice/password", newPasswordBody{Password: "short"}, CodeWeakPassword},
		{"/api/v1/accounts/10042/users/alice/password", newPasswordBody{Password: "alice"}, CodeWeakPassword},
		{"/api/v1/accounts/10042/users/alice/password", `{"password":"x-long-enough-1","extra":1}`, CodeInvalidRequest},
		{"/api/v1/accounts/10042/users/nobody.here/password", nil, CodeNotFound},
	} {
		before := f.state(acctA)
		if r := f.req("POST", bad.path, m, bad.body); r.errCode() != bad.code {
			t.Errorf("%s %v: %d %s, want %s", bad.path, bad.body, r.status, r.body, bad.code)
		}
		if f.state(acctA) != before {
			t.Errorf("%s %v changed the account", bad.path, bad.body)
		}
	}
}

// The operator's path for a master who forgot the master password, beside
// the CLI: a generated password shown once, every master session ended.
func TestMasterPasswordByOperator(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	old := f.token(master)
	var res MasterPasswordReset
	r := f.req("POST", "/api/v1/accounts/10042/master/password", opToken, nil)
	r.decode(t, &res)
	if r.status != 200 || len(res.Password) < 12 || res.SessionsEnded != 1 {
		t.Fatalf("reset: %d %s", r.status, r.body)
	}
	if r := f.req("GET", "/api/v1/me", old, nil); r.status != 401 {
		t.Fatalf("the old master session: %d", r.status)
	}
	f.login(acctA, "", res.Password)
	if r := f.req("POST", "/api/v1/accounts/10042/master/password", opToken, newPasswordBody{Password: "10042"}); r.errCode() != CodeWeakPassword {
		t.Fatalf("the account number as the master password: %d %s", r.status, r.body)
	}
}
