package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// writeCase is one call that changes something.
type writeCase struct {
	name         string
	as           int // identity making the call
	method, path string
	body         any
	want         int
	// account is where the change and its audit entry land.
	account string
}

// writeCases covers every kind of write. Each runs on a fresh fixture in
// which alice holds grant 1 and 192.0.2.0/24 is manual rule 2.
var writeCases = []writeCase{
	{"login", anon, "POST", "/api/v1/login", loginBody(acctA, "alice", pwAlice), 200, acctA},
	{"failed login", anon, "POST", "/api/v1/login", loginBody(acctA, "alice", "wrong-password-1"), 401, acctA},
	{"logout", user, "POST", "/api/v1/logout", nil, 204, acctA},
	{"password change", user, "POST", "/api/v1/password", passwordBody{Current: pwAlice, New: "alice-new-password"}, 200, acctA},
	{"wrong current password", user, "POST", "/api/v1/password", passwordBody{Current: "not-it-at-all", New: "alice-new-password"}, 403, acctA},
	{"unblock", user, "POST", "/api/v1/accounts/10042/unblock", nil, 201, acctA},
	{"delete own grant", user, "DELETE", "/api/v1/me/grants/1", nil, 204, acctA},
	{"mode", master, "PUT", "/api/v1/accounts/10042/firewall/mode", modeBody{Mode: "off", Confirm: true}, 200, acctA},
	{"add rule", master, "POST", "/api/v1/accounts/10042/firewall/rules", ruleBody{CIDR: "198.51.100.0/24"}, 201, acctA},
	{"delete rule", master, "DELETE", "/api/v1/accounts/10042/firewall/rules/2", nil, 204, acctA},
	{"create user", master, "POST", "/api/v1/accounts/10042/users", userBody{Username: "dave.miller", Password: "dave-initial-pw-1"}, 201, acctA},
	{"update user", master, "PATCH", "/api/v1/accounts/10042/users/alice", patchBody{Active: new(false)}, 200, acctA},
	{"offboard", master, "POST", "/api/v1/accounts/10042/users/alice/offboard", nil, 200, acctA},
	{"reset passwords", master, "POST", "/api/v1/accounts/10042/users/reset-passwords", nil, 200, acctA},
	{"temporary password", master, "POST", "/api/v1/accounts/10042/users/alice/password", newPasswordBody{Password: "alice-temporary-pw"}, 200, acctA},
	{"generated temporary password", master, "POST", "/api/v1/accounts/10042/users/bob/password", nil, 200, acctA},
	{"master password by the operator", operator, "POST", "/api/v1/accounts/10042/master/password", nil, 200, acctA},
	{"settings", master, "PATCH", "/api/v1/accounts/10042/settings", map[string]any{"grant_ttl_max": "48h"}, 200, acctA},
	{"enrolment code", user, "POST", "/api/v1/me/devices", enrollmentBody{Name: "laptop"}, 201, acctA},
	{"child by parent", parentMaster, "POST", "/api/v1/accounts/10042/firewall/rules", ruleBody{CIDR: "198.51.100.7"}, 201, acctA},
	{"create account", operator, "POST", "/api/v1/accounts", accountBody{ID: "20001", Password: "a-good-password-1"}, 201, "20001"},
}

func (f *fixture) seedGrantAndRule() {
	now := time.Now()
	f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Source: policy.SourceUnblock,
		Owner: "alice", CreatedBy: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Source: policy.SourceManual,
		CreatedBy: "master", CreatedAt: now})
}

// TestEveryWriteAudited: each write leaves exactly one audit entry, with
// who, from where, what and when.
func TestEveryWriteAudited(t *testing.T) {
	for _, c := range writeCases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{})
			f.seedGrantAndRule()
			tok := f.token(c.as)
			before := 0
			if c.account != "20001" {
				before = f.auditCount(c.account)
			}
			r := f.req(c.method, c.path, tok, c.body)
			if r.status != c.want {
				t.Fatalf("status %d, want %d: %s", r.status, c.want, r.body)
			}
			if got := f.auditCount(c.account) - before; got != 1 {
				t.Fatalf("%d audit entries, want 1", got)
			}
			e := f.lastAudit(c.account)
			if e.Time.IsZero() || e.Actor == "" || e.Role == "" || e.ClientIP != "127.0.0.1" || e.Action == "" || e.Target == "" {
				t.Errorf("incomplete audit entry: %+v", e)
			}
			if strings.Contains(string(e.Before)+string(e.After), "argon2") {
				t.Errorf("audit entry holds a password hash: %+v", e)
			}
		})
	}
}

// TestRefusedWriteChangesNothing: when the store refuses the commit, the
// call answers 503 store_unavailable and neither the data nor the audit
// trail changed.
func TestRefusedWriteChangesNothing(t *testing.T) {
	for _, c := range writeCases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{})
			f.seedGrantAndRule()
			tok := f.token(c.as)
			stateA, auditA := f.state(acctA), f.auditCount(acctA)
			accts, _ := f.bolt.Accounts(context.Background())
			f.store.failWrites.Store(true)
			r := f.req(c.method, c.path, tok, c.body)
			if r.status != http.StatusServiceUnavailable || r.errCode() != CodeStoreUnavailable {
				t.Fatalf("status %d %s, want 503 store_unavailable", r.status, r.body)
			}
			if f.state(acctA) != stateA {
				t.Errorf("state changed")
			}
			if n := f.auditCount(acctA); n != auditA {
				t.Errorf("audit entries %d, were %d", n, auditA)
			}
			if now, _ := f.bolt.Accounts(context.Background()); len(now) != len(accts) {
				t.Errorf("accounts %d, were %d", len(now), len(accts))
			}
			// And once the store is back, the same call works.
			f.store.failWrites.Store(false)
			if r := f.req(c.method, c.path, tok, c.body); r.status != c.want {
				t.Errorf("after recovery: %d, want %d: %s", r.status, c.want, r.body)
			}
		})
	}
}

// TestClosedStore: a real store failure (the bolt file closed under the
// server) answers 503, never 500, and leaks no detail.
func TestClosedStore(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.token(master)
	f.bolt.Close()
	for _, c := range []struct {
		method, path, tok string
		body              any
	}{
		{"POST", "/api/v1/login", "", loginBody(acctA, "alice", pwAlice)},
		{"GET", "/api/v1/accounts/10042/firewall", m, nil},
		{"POST", "/api/v1/accounts/10042/firewall/rules", m, ruleBody{CIDR: "198.51.100.0/24"}},
		{"GET", "/api/v1/accounts", opToken, nil},
	} {
		r := f.req(c.method, c.path, c.tok, c.body)
		if r.status != http.StatusServiceUnavailable || r.errCode() != CodeStoreUnavailable {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.status, r.body)
		}
		if strings.Contains(string(r.body), "bolt") || strings.Contains(string(r.body), "database") {
			t.Errorf("detail leaked: %s", r.body)
		}
	}
	if !strings.Contains(f.logs.String(), "store unavailable") {
		t.Errorf("the detail was not logged")
	}
}

// TestRequestTimeout: a store that stops answering makes a call fail
// with 503 timeout once the request's time is up, not hang.
func TestRequestTimeout(t *testing.T) {
	f := newFixture(t, fixtureOptions{requestTimeout: 200 * time.Millisecond})
	m := f.token(master)
	f.store.hang.Store(true)
	start := time.Now()
	r := f.req("POST", "/api/v1/accounts/10042/firewall/rules", m, ruleBody{CIDR: "198.51.100.0/24"})
	if r.status != http.StatusServiceUnavailable || r.errCode() != CodeTimeout {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("answered after %v", d)
	}
}

// TestStoreTimeout: a store that stops answering fails each call as
// unavailable once store.timeout is up, long before the request's own
// bound, reads and writes alike, and nothing changes.
func TestStoreTimeout(t *testing.T) {
	f := newFixture(t, fixtureOptions{storeTimeout: 100 * time.Millisecond})
	m := f.token(master)
	before := f.state(acctA)
	f.store.hang.Store(true)
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/v1/accounts/10042/firewall/rules", ruleBody{CIDR: "198.51.100.0/24"}},
		{"PUT", "/api/v1/accounts/10042/firewall/mode", map[string]any{"mode": "off", "confirm": true}},
		{"GET", "/api/v1/accounts/10042/firewall", nil},
		{"GET", "/api/v1/accounts/10042/users", nil},
	} {
		start := time.Now()
		r := f.req(c.method, c.path, m, c.body)
		took := time.Since(start)
		if r.status != http.StatusServiceUnavailable || r.errCode() != CodeStoreUnavailable {
			t.Errorf("%s %s with the store hung: %d %s, want 503 %s", c.method, c.path, r.status, r.body, CodeStoreUnavailable)
		}
		// The request's own bound is 15s: an answer well before it came
		// from store.timeout.
		if took > 10*time.Second {
			t.Errorf("%s %s answered after %v", c.method, c.path, took)
		}
	}
	f.store.hang.Store(false)
	if after := f.state(acctA); after != before {
		t.Errorf("the store changed:\n%s\n%s", before, after)
	}
	if !strings.Contains(f.logs.String(), "store.timeout") {
		t.Error("the log does not say the store did not answer within store.timeout")
	}
}

// TestBadBodies: malformed, oversized, mistyped and unknown bodies are
// refused before anything happens.
func TestBadBodies(t *testing.T) {
	f := newFixture(t, fixtureOptions{maxBody: 4 << 10})
	f.seedGrantAndRule()
	m := f.token(master)
	u := f.token(user)
	huge := `{"note":"` + strings.Repeat("x", 5<<10) + `","cidr":"198.51.100.0/24"}`
	endpoints := []struct {
		method, path, tok string
	}{
		{"POST", "/api/v1/login", ""},
		{"POST", "/api/v1/password", u},
		{"POST", "/api/v1/accounts/10042/unblock", u},
		{"PUT", "/api/v1/accounts/10042/firewall/mode", m},
		{"POST", "/api/v1/accounts/10042/firewall/rules", m},
		{"POST", "/api/v1/accounts/10042/users", m},
		{"PATCH", "/api/v1/accounts/10042/users/alice", m},
		{"POST", "/api/v1/accounts", opToken},
	}
	bodies := []struct {
		name, body, ctype string
		status            int
		code              string
	}{
		{"truncated", `{"cidr":`, "", 400, CodeInvalidRequest},
		{"not json", `cidr=1.2.3.4`, "", 400, CodeInvalidRequest},
		{"array", `[]`, "", 400, CodeInvalidRequest},
		{"null", `null`, "", 400, CodeInvalidRequest},
		{"unknown field", `{"bogus":true}`, "", 400, CodeInvalidRequest},
		{"two objects", `{} {}`, "", 400, CodeInvalidRequest},
		{"wrong type", `{"cidr":5,"mode":5,"username":5,"password":5,"ttl":5,"active":"yes","id":5,"account":5,"current":5}`, "", 400, CodeInvalidRequest},
		{"bad duration", `{"ttl":"soon"}`, "", 400, CodeInvalidRequest},
		{"too large", huge, "", 413, CodeBodyTooLarge},
		{"form content type", `{}`, "application/x-www-form-urlencoded", 415, CodeUnsupportedMediaType},
		{"text content type", `{}`, "text/plain", 415, CodeUnsupportedMediaType},
		{"latin-1", `{}`, "application/json; charset=iso-8859-1", 415, CodeUnsupportedMediaType},
	}
	stateA, auditA := f.state(acctA), f.auditCount(acctA)
	for _, e := range endpoints {
		for _, b := range bodies {
			var hdr []string
			if b.ctype != "" {
				hdr = append(hdr, "Content-Type: "+b.ctype)
			}
			r := f.req(e.method, e.path, e.tok, b.body, hdr...)
			if r.status != b.status || r.errCode() != b.code {
				t.Errorf("%s %s with %s: %d %s, want %d %s", e.method, e.path, b.name, r.status, r.body, b.status, b.code)
			}
		}
	}
	if f.state(acctA) != stateA {
		t.Errorf("state changed")
	}
	if n := f.auditCount(acctA); n != auditA {
		t.Errorf("audit entries %d, were %d", n, auditA)
	}
	accts, _ := f.bolt.Accounts(context.Background())
	if len(accts) != 3 {
		t.Errorf("%d accounts", len(accts))
	}
}

// TestNoSecretsInLogs runs through everything that touches a secret with
// debug logging on, then looks for every secret in the log.
func TestNoSecretsInLogs(t *testing.T) {
	clock := newTestClock()
	f := newFixture(t, fixtureOptions{now: clock.now})
	secrets := []string{pwA, pwAlice, pwBob, pwCarol, pwB, pwParent, opToken, "$argon2id"}
	tokens := []string{}
	for id := user; id < nIdentities; id++ {
		tokens = append(tokens, f.token(id))
	}
	m, alice := tokens[master-1], tokens[user-1]
	f.req("POST", "/api/v1/login", "", loginBody(acctA, "alice", "a-wrong-secret-1"))
	f.req("POST", "/api/v1/login", "", loginBody(acctA, "nobody", "b-wrong-secret-2"))
	f.req("POST", "/api/v1/login", "", `{"account":"10042","password":"c-wrong-secret-3","bogus":1}`)
	f.req("POST", "/api/v1/login", "", `{"account":"10042","password":"d-wrong-secret-4"`)
	f.req("POST", "/api/v1/password", alice, passwordBody{Current: "e-wrong-secret-5", New: "f-new-secret-666"})
	f.req("POST", "/api/v1/password", alice, passwordBody{Current: pwAlice, New: "g-new-secret-777"})
	f.req("POST", "/api/v1/password", alice, passwordBody{Current: "g-new-secret-777", New: "short"})
	f.req("POST", "/api/v1/accounts/10042/users", m, userBody{Username: "dave.miller", Password: "h-new-secret-888"})
	f.req("POST", "/api/v1/accounts/10042/users", m, userBody{Username: "erin", Password: "erin"})
	r := f.req("POST", "/api/v1/accounts", opToken, accountBody{ID: "20001"})
	var created CreatedAccount
	r.decode(t, &created)
	f.req("POST", "/api/v1/accounts", opToken, accountBody{ID: "20002", Password: "i-new-secret-999"})
	f.req("GET", "/api/v1/me", "10042.forged-token-value-xyz", nil)
	f.req("GET", "/api/v1/accounts", "not-the-operator-token-zzz", nil)
	f.req("POST", "/api/v1/logout", alice, nil)
	f.req("GET", "/api/v1/me", alice, nil)
	// Second factors: the secret, its codes, the recovery codes, the
	// sealed form.
	bobTok := f.login(acctA, "bob", pwBob)
	totpSecret, recovery := f.enrolTOTP(clock, bobTok)
	enrolCode := clock.code(t, totpSecret)
	f.loginOTP(acctA, "bob", pwBob, "")
	f.loginOTP(acctA, "bob", pwBob, enrolCode) // a replay
	clock.step()
	totpCode := clock.code(t, totpSecret)
	f.loginOTP(acctA, "bob", pwBob, totpCode)
	f.loginOTP(acctA, "bob", "m-wrong-secret-333", totpCode)
	f.loginOTP(acctA, "bob", pwBob, recovery[0])
	f.loginOTP(acctA, "bob", pwBob, recovery[0])
	f.loginOTP(acctA, "bob", pwBob, "zzzzz-wrong-recovery")
	sealed := f.user(acctA, "bob").MFA.TOTPSecret
	secrets = append(secrets, totpSecret, enrolCode, totpCode, sealed, "m-wrong-secret-333", "zzzzz-wrong-recovery")
	secrets = append(secrets, recovery...)
	for _, c := range recovery {
		secrets = append(secrets, recoveryHash(c))
	}
	// Passkeys: the challenges and the tokens that seal them, of a
	// registration and of logins answered, replayed and forged.
	challengeOf := func(c ceremonyResp) string {
		var o struct{ PublicKey struct{ Challenge string } }
		if err := json.Unmarshal(c.Options, &o); err != nil || o.PublicKey.Challenge == "" {
			t.Fatalf("no challenge in %s", c.Options)
		}
		return o.PublicKey.Challenge
	}
	dave := newAuthenticator(t, testPublicURL)
	var reg ceremonyResp
	f.req("POST", "/api/v1/me/passkeys/register/begin", m, nil).decode(t, &reg)
	f.req("POST", "/api/v1/me/passkeys/register/finish", m, PasskeyRegistration{Token: reg.Token, Name: "key",
		Credential: dave.register(t, reg.Options)})
	secrets = append(secrets, reg.Token, challengeOf(reg))
	for range 2 {
		var c ceremonyResp
		f.req("POST", "/api/v1/login/passkey/begin", "", nil).decode(t, &c)
		answer := dave.assert(t, c.Options)
		f.req("POST", "/api/v1/login/passkey/finish", "", PasskeyLogin{Token: c.Token, Credential: answer})
		f.req("POST", "/api/v1/login/passkey/finish", "", PasskeyLogin{Token: c.Token, Credential: answer})
		secrets = append(secrets, c.Token, challengeOf(c))
	}

	f.req("POST", "/api/v1/accounts/10042/users/bob/password", m, newPasswordBody{Password: "k-temp-secret-111"})
	var temp TemporaryPassword
	f.req("POST", "/api/v1/accounts/10042/users/carol/password", m, nil).decode(t, &temp)
	var masterReset MasterPasswordReset
	f.req("POST", "/api/v1/accounts/10043/master/password", opToken, nil).decode(t, &masterReset)
	f.req("POST", "/api/v1/accounts/10043/master/password", opToken, newPasswordBody{Password: "l-master-secret-222"})
	if temp.Password == "" || masterReset.Password == "" {
		t.Fatalf("no generated password shown: %+v %+v", temp, masterReset)
	}
	// Recovery by email: tokens and new passwords stay out of the log
	// (the happy path with real mail: TestForgotPasswordEndToEnd).
	resetTok := acctA + "." + strings.Repeat("m", 43) + ".alice"
	f.req("PUT", "/api/v1/accounts/10042/users/alice/email", m, EmailRequest{Email: "alice@example.com"})
	f.req("POST", "/api/v1/password/forgot", "", ForgotRequest{Account: acctA, Username: "alice"})
	f.req("POST", "/api/v1/password/reset", "", ResetRequest{Token: resetTok, New: "m-reset-secret-333"})
	f.req("POST", "/api/v1/password/reset", "", ResetRequest{Token: "n-garbage-token-444", New: "o-reset-secret-555"})
	f.req("POST", "/api/v1/email/confirm", "", TokenRequest{Token: acctA + "." + strings.Repeat("p", 43)})
	f.store.failWrites.Store(true)
	f.req("POST", "/api/v1/login", "", loginBody(acctA, "bob", pwBob))
	f.req("POST", "/api/v1/accounts/10042/users", m, userBody{Username: "frank.ocean", Password: "j-new-secret-000"})

	secrets = append(secrets, tokens...)
	secrets = append(secrets, created.Password, "a-wrong-secret-1", "b-wrong-secret-2", "c-wrong-secret-3",
		"d-wrong-secret-4", "e-wrong-secret-5", "f-new-secret-666", "g-new-secret-777", "h-new-secret-888",
		"i-new-secret-999", "j-new-secret-000", "forged-token-value-xyz", "not-the-operator-token-zzz",
		"k-temp-secret-111", temp.Password, masterReset.Password, "l-master-secret-222",
		strings.Repeat("m", 43), "m-reset-secret-333", "n-garbage-token-444", "o-reset-secret-555", strings.Repeat("p", 43))
	logs := f.logs.String()
	var audit strings.Builder
	for _, acct := range []string{acctA, acctB, acctParent} {
		es, err := f.bolt.Audit(context.Background(), acct, policy.AuditQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			b, _ := json.Marshal(e)
			audit.Write(b)
		}
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("secret %q is in the log", s)
		}
		if s != "" && strings.Contains(audit.String(), s) {
			t.Errorf("secret %q is in the audit trail", s)
		}
	}
	for _, want := range []string{"mfa.totp_enrol", "recovery_code", "wrong second factor"} {
		if !strings.Contains(audit.String(), want) {
			t.Errorf("audit trail lacks %q", want)
		}
	}
	// The log is not simply empty.
	for _, want := range []string{"login failed", "admin request", "store unavailable"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	t.Logf("checked %d secrets against %d bytes of log", len(secrets), len(logs))
}

// TestOperatorAccounts: the operator creates and lists accounts.
func TestOperatorAccounts(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	r := f.req("POST", "/api/v1/accounts", opToken, accountBody{ID: "20001", Name: "Lee Dental", Parent: acctParent})
	var c CreatedAccount
	r.decode(t, &c)
	if r.status != 201 || c.Account.ID != "20001" || c.Account.Mode != policy.ModeOn || len(c.Password) < 12 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), "argon2") {
		t.Fatalf("hash in the answer: %s", r.body)
	}
	f.login("20001", "", c.Password)
	// The parent's master manages the new child.
	if r := f.req("GET", "/api/v1/accounts/20001/firewall", f.token(parentMaster), nil); r.status != 200 {
		t.Fatalf("parent on new child: %d", r.status)
	}
	for _, bad := range []struct {
		body   accountBody
		status int
		code   string
	}{
		{accountBody{ID: "20001"}, 409, CodeExists},
		{accountBody{ID: "-bad"}, 400, CodeInvalidRequest},
		{accountBody{ID: "20003", Parent: "77777"}, 400, CodeInvalidRequest},
		{accountBody{ID: "20004", Password: "short"}, 400, CodeWeakPassword},
		{accountBody{ID: "20005", Password: "20005"}, 400, CodeWeakPassword},
	} {
		if r := f.req("POST", "/api/v1/accounts", opToken, bad.body); r.status != bad.status || r.errCode() != bad.code {
			t.Errorf("%+v: %d %s", bad.body, r.status, r.body)
		}
	}
	var list struct{ Accounts []AccountView }
	f.req("GET", "/api/v1/accounts", opToken, nil).decode(t, &list)
	if len(list.Accounts) != 4 {
		t.Fatalf("%d accounts: %+v", len(list.Accounts), list)
	}
}

// TestNoAccountOnLostStore: a store that is known to have held a
// generation (here from the machine's snapshot) and holds none refuses to
// create an account, which would give it a new generation and make the
// lost policy impossible to re-seed; the API says so, and nothing is
// created. Every entry point's case is in cmd/gatekeeper's
// TestNoGenerationMinted.
func TestNoAccountOnLostStore(t *testing.T) {
	ctx := context.Background()
	bs, err := boltstore.Open(filepath.Join(t.TempDir(), "gk.db"),
		boltstore.Options{Lineage: policy.NewLineage("G1", "the test's snapshot")})
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	svc, err := New(Options{Store: bs, PasswordParams: cheap})
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.CreateAccount(ctx, Operator(netip.MustParseAddr("127.0.0.1")), NewAccount{ID: "20001", Password: pwA})
	if e := AsError(err); e.Status != http.StatusServiceUnavailable || e.Code != CodeStoreLostData {
		t.Fatalf("create on a lost store: %v", err)
	}
	d, err := bs.LoadPolicy(ctx)
	if err != nil || d.Generation != "" || len(d.Accounts) != 0 {
		t.Fatalf("after the refusal: generation %q, %d accounts, %v; want none", d.Generation, len(d.Accounts), err)
	}
}

// TestResetMasterPassword: the operator gives a master a new password;
// the master's sessions end, the change is audited, and nobody else may.
func TestResetMasterPassword(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx := context.Background()
	m := f.token(master)
	op := Operator(netip.MustParseAddr("127.0.0.1"))
	res, err := f.svc.ResetMasterPassword(ctx, op, acctA, "")
	if err != nil || res.Password == "" || res.SessionsEnded != 1 {
		t.Fatalf("reset: %+v, %v; want a generated password and the one session ended", res, err)
	}
	if r := f.req("GET", "/api/v1/me", m, nil); r.status != http.StatusUnauthorized {
		t.Errorf("the master's session after the reset: %d", r.status)
	}
	a, _ := f.bolt.Account(ctx, acctA)
	if !password.Verify(a.MasterHash, res.Password) {
		t.Error("the new password does not verify")
	}
	if e := f.lastAudit(acctA); e.Action != "account.master_password_reset" || e.Role != policy.RoleOperator {
		t.Errorf("audit: %+v", e)
	}
	if _, err := f.svc.ResetMasterPassword(ctx, op, "nope", pwB); AsError(err).Status != http.StatusNotFound {
		t.Errorf("unknown account: %v", err)
	}
	if _, err := f.svc.ResetMasterPassword(ctx, op, acctA, "short"); AsError(err).Code != CodeWeakPassword {
		t.Errorf("weak password: %v", err)
	}
	if _, err := f.svc.ResetMasterPassword(ctx, Actor{Role: policy.RoleMaster, Account: acctA}, acctA, pwB); AsError(err).Status != http.StatusForbidden {
		t.Errorf("a master resetting through the operator's call: %v", err)
	}
}

// TestOperatorTokenFile: a missing file gets a new token, mode 0600; an
// existing one is read; a weak one is refused.
func TestOperatorTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "operator.token")
	tok, created, err := OperatorToken(path)
	if err != nil || !created || len(tok) < 40 || strings.Contains(tok, ".") {
		t.Fatalf("create: %q %v %v", tok, created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	again, created, err := OperatorToken(path)
	if err != nil || created || again != tok {
		t.Fatalf("reread: %v %v", created, err)
	}
	weak := filepath.Join(dir, "weak")
	os.WriteFile(weak, []byte("short\n"), 0o600)
	if _, _, err := OperatorToken(weak); err == nil {
		t.Fatal("a short token was accepted")
	}
}
