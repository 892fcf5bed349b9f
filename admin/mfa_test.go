package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// testClock is a clock the test moves, a TOTP step at a time.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	// The start of a step, so that a code stays valid until the test moves on.
	c.ns.Store(time.Now().Truncate(totpPeriod * time.Second).UnixNano())
	return c
}

func (c *testClock) now() time.Time { return time.Unix(0, c.ns.Load()) }
func (c *testClock) step()          { c.ns.Add(int64(totpPeriod * time.Second)) }
func (c *testClock) code(t *testing.T, secret string) string {
	t.Helper()
	code, err := totp.GenerateCode(secret, c.now())
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// enrolTOTP enrols the owner of tok and returns the secret and the
// recovery codes.
func (f *fixture) enrolTOTP(clock *testClock, tok string) (string, []string) {
	f.t.Helper()
	var en TOTPEnrolment
	r := f.req("POST", "/api/v1/me/mfa/totp", tok, nil)
	if r.status != 200 {
		f.t.Fatalf("begin: %d %s", r.status, r.body)
	}
	r.decode(f.t, &en)
	var rc RecoveryCodes
	r = f.req("POST", "/api/v1/me/mfa/totp/confirm", tok, codeBody{Code: clock.code(f.t, en.Secret)})
	if r.status != 200 {
		f.t.Fatalf("confirm: %d %s", r.status, r.body)
	}
	r.decode(f.t, &rc)
	return en.Secret, rc.Codes
}

func (f *fixture) loginOTP(account, username, pw, code string) resp {
	f.t.Helper()
	return f.req("POST", "/api/v1/login", "", LoginRequest{Account: account, Username: username, Password: pw, OTP: code})
}

// TestTOTPLogin is issue 16's show: enrol TOTP, log in without a code
// (otp_required), with a code (200), with the same code again (refused),
// with a recovery code (200, then refused).
func TestTOTPLogin(t *testing.T) {
	clock := newTestClock()
	f := newFixture(t, fixtureOptions{now: clock.now})
	tok := f.login(acctA, "alice", pwAlice)
	other := f.login(acctA, "alice", pwAlice)

	var en TOTPEnrolment
	r := f.req("POST", "/api/v1/me/mfa/totp", tok, nil)
	r.decode(t, &en)
	key, err := otp.NewKeyFromURL(en.URI)
	if err != nil || key.Secret() != en.Secret || key.Issuer() != "gatekeeper" || key.AccountName() != "alice@10042" ||
		key.Period() != 30 || key.Algorithm() != otp.AlgorithmSHA1 || key.Digits() != otp.DigitsSix {
		t.Fatalf("uri %q: %v", en.URI, err)
	}
	a, err := f.svc.Authenticate(context.Background(), tok, netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	qr, err := f.svc.TOTPQRCode(context.Background(), a, 240)
	if err != nil {
		t.Fatal(err)
	}
	if img, err := png.Decode(bytes.NewReader(qr)); err != nil || img.Bounds().Dx() != 240 {
		t.Fatalf("qr image: %v", err)
	}
	// A pending enrolment is no factor yet.
	if r := f.loginOTP(acctA, "alice", pwAlice, ""); r.status != 200 {
		t.Fatalf("login with enrolment pending: %d %s", r.status, r.body)
	}
	if r := f.req("POST", "/api/v1/me/mfa/totp/confirm", tok, codeBody{Code: "123456x"}); r.errCode() != CodeInvalidOTP {
		t.Fatalf("bad confirm: %d %s", r.status, r.body)
	}
	enrolCode := clock.code(t, en.Secret)
	var rc RecoveryCodes
	r = f.req("POST", "/api/v1/me/mfa/totp/confirm", tok, codeBody{Code: enrolCode})
	r.decode(t, &rc)
	if r.status != 200 || len(rc.Codes) != 10 || rc.SessionsEnded != 2 {
		t.Fatalf("confirm: %d %s", r.status, r.body)
	}
	// A new factor ends the other sessions; the calling one stays.
	if r := f.req("GET", "/api/v1/me", other, nil); r.status != 401 {
		t.Fatalf("other session after enrolment: %d", r.status)
	}
	var me Me
	f.req("GET", "/api/v1/me", tok, nil).decode(t, &me)
	if !me.SecondFactor.TOTP || me.SecondFactor.RecoveryCodesLeft != 10 {
		t.Fatalf("me: %+v", me.SecondFactor)
	}

	before := f.auditCount(acctA)
	r0 := f.loginOTP(acctA, "alice", pwAlice, "")
	if r0.status != 401 || r0.errCode() != CodeOTPRequired {
		t.Fatalf("without a code: %d %s", r0.status, r0.body)
	}
	var e struct{ Error struct{ Factors []string } }
	r0.decode(t, &e)
	if !slices.Equal(e.Error.Factors, []string{"totp"}) {
		t.Errorf("factors of a TOTP login: %q", e.Error.Factors)
	}
	if n := f.auditCount(acctA); n != before {
		t.Errorf("otp_required audited: %d entries, were %d", n, before)
	}
	// The code that confirmed the enrolment is used.
	if r := f.loginOTP(acctA, "alice", pwAlice, enrolCode); r.status != 401 || r.errCode() != CodeInvalidOTP {
		t.Fatalf("enrolment code again: %d %s", r.status, r.body)
	}
	clock.step()
	code := clock.code(t, en.Secret)
	if r := f.loginOTP(acctA, "alice", "wrong-password-99", code); r.errCode() != CodeInvalidCredentials {
		t.Fatalf("wrong password, right code: %d %s", r.status, r.body)
	}
	if r := f.loginOTP(acctA, "alice", pwAlice, code); r.status != 200 {
		t.Fatalf("with a code: %d %s", r.status, r.body)
	}
	if e := f.lastAudit(acctA); e.Action != "login.success" || !strings.Contains(string(e.After), `"second_factor":"totp"`) {
		t.Errorf("audit: %s %s", e.Action, e.After)
	}
	if r := f.loginOTP(acctA, "alice", pwAlice, code); r.status != 401 || r.errCode() != CodeInvalidOTP {
		t.Fatalf("same code again: %d %s", r.status, r.body)
	}
	if e := f.lastAudit(acctA); e.Action != "login.failure" || !strings.Contains(string(e.After), "wrong second factor") {
		t.Errorf("audit of a replay: %s %s", e.Action, e.After)
	}
	// The next step's code is within the skew, and not yet used.
	clock.step()
	prev := code
	if r := f.loginOTP(acctA, "alice", pwAlice, prev); r.status != 401 {
		t.Fatalf("a used code of the last step: %d %s", r.status, r.body)
	}
	if r := f.loginOTP(acctA, "alice", pwAlice, " "+clock.code(t, en.Secret)+" "); r.status != 200 {
		t.Fatalf("next code: %d %s", r.status, r.body)
	}

	recovery := strings.ToUpper(rc.Codes[3]) // typed in capitals: still the code
	if r := f.loginOTP(acctA, "alice", pwAlice, recovery); r.status != 200 {
		t.Fatalf("with a recovery code: %d %s", r.status, r.body)
	}
	if e := f.lastAudit(acctA); !strings.Contains(string(e.After), `"second_factor":"recovery_code"`) {
		t.Errorf("audit: %s", e.After)
	}
	if r := f.loginOTP(acctA, "alice", pwAlice, recovery); r.status != 401 || r.errCode() != CodeInvalidOTP {
		t.Fatalf("recovery code again: %d %s", r.status, r.body)
	}
	tok2 := f.loginOTP(acctA, "alice", pwAlice, rc.Codes[4])
	var lr LoginResult
	tok2.decode(t, &lr)
	f.req("GET", "/api/v1/me", lr.Token, nil).decode(t, &me)
	if me.SecondFactor.RecoveryCodesLeft != 8 {
		t.Fatalf("recovery codes left: %+v", me.SecondFactor)
	}

	// Stored sealed, recovery codes hashed.
	u := f.user(acctA, "alice")
	stored, _ := json.Marshal(u)
	for _, s := range append([]string{en.Secret}, rc.Codes...) {
		if strings.Contains(string(stored), s) {
			t.Fatalf("%q stored in the clear", s)
		}
	}

	// Removing the factor ends the other sessions; the password alone
	// logs in again.
	r = f.req("DELETE", "/api/v1/me/mfa/totp", lr.Token, nil)
	var ended SessionsEnded
	r.decode(t, &ended)
	if r.status != 200 || ended.SessionsEnded < 1 {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	if r := f.req("GET", "/api/v1/me", tok, nil); r.status != 401 {
		t.Fatalf("session after factor removed: %d", r.status)
	}
	if e := f.lastAudit(acctA); e.Action != "mfa.totp_remove" {
		t.Errorf("audit: %s", e.Action)
	}
	f.login(acctA, "alice", pwAlice)
}

// TestTOTPMaster: the master's factor lives on the account and works the
// same.
func TestTOTPMaster(t *testing.T) {
	clock := newTestClock()
	f := newFixture(t, fixtureOptions{now: clock.now})
	secret, _ := f.enrolTOTP(clock, f.login(acctA, "", pwA))
	if r := f.loginOTP(acctA, "", pwA, ""); r.errCode() != CodeOTPRequired {
		t.Fatalf("without a code: %d %s", r.status, r.body)
	}
	clock.step()
	code := clock.code(t, secret)
	if r := f.loginOTP(acctA, "", pwA, code); r.status != 200 {
		t.Fatalf("with a code: %d %s", r.status, r.body)
	}
	if r := f.loginOTP(acctA, "", pwA, code); r.errCode() != CodeInvalidOTP {
		t.Fatalf("replay: %d %s", r.status, r.body)
	}
	// Another account's master is untouched.
	f.login(acctB, "", pwB)
}

// TestTOTPSealedPerPerson: a sealed secret copied onto another person does
// not open, so a store writer cannot hand one person's factor to another.
func TestTOTPSealedPerPerson(t *testing.T) {
	clock := newTestClock()
	f := newFixture(t, fixtureOptions{now: clock.now})
	secret, _ := f.enrolTOTP(clock, f.login(acctA, "alice", pwAlice))
	err := f.bolt.Update(context.Background(), acctA, func(tx policy.Tx) error {
		a, _ := tx.User("alice")
		b, _ := tx.User("bob")
		b.MFA = a.MFA
		b.MFA.TOTPLastStep = 0
		return tx.PutUser(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	clock.step()
	if r := f.loginOTP(acctA, "bob", pwBob, clock.code(t, secret)); r.status != 500 {
		t.Fatalf("bob with alice's sealed secret: %d %s", r.status, r.body)
	}
}

// TestTOTPLoginLimits: wrong codes count against the login limits like
// wrong passwords.
func TestTOTPLoginLimits(t *testing.T) {
	clock := newTestClock()
	f := newFixture(t, fixtureOptions{now: clock.now,
		limits: LoginLimits{PerIP: Limit{Burst: 1000}, PerLogin: Limit{Burst: 3, Every: time.Hour, Lockout: time.Hour}}})
	secret, _ := f.enrolTOTP(clock, f.login(acctA, "alice", pwAlice))
	clock.step()
	for i := range 3 {
		if r := f.loginOTP(acctA, "alice", pwAlice, "000000"); r.errCode() != CodeInvalidOTP {
			t.Fatalf("wrong code %d: %d %s", i, r.status, r.body)
		}
	}
	r := f.loginOTP(acctA, "alice", pwAlice, clock.code(t, secret))
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("right code after the limit: %d %s", r.status, r.body)
	}
}

// TestTOTPOnceAcrossFleet: two instances on one Redis get the same code at
// once; exactly one logs in.
func TestTOTPOnceAcrossFleet(t *testing.T) {
	srv := redistest.Start(t)
	clock := newTestClock()
	ctx := context.Background()
	var svcs []*Service
	for range 2 {
		st, err := redisstore.Open(ctx, srv.URL(), redisstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		svc, err := New(Options{Store: st, PasswordParams: cheap, SecretsKey: testSecretsKey, Now: clock.now})
		if err != nil {
			t.Fatal(err)
		}
		svcs = append(svcs, svc)
	}
	if _, err := CreateAccount(ctx, svcs[0].store, NewAccount{ID: acctA, Password: pwA, Actor: "test", Role: policy.RoleOperator},
		cheap, clock.now()); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.2")
	login := func(svc *Service, code string) (LoginResult, error) {
		return svc.Login(ctx, LoginRequest{Account: acctA, Password: pwA, OTP: code}, ip)
	}
	res, err := login(svcs[0], "")
	if err != nil {
		t.Fatal(err)
	}
	a, err := svcs[0].Authenticate(ctx, res.Token, ip)
	if err != nil {
		t.Fatal(err)
	}
	en, err := svcs[0].BeginTOTP(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svcs[1].ConfirmTOTP(ctx, a, clock.code(t, en.Secret)); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		clock.step()
		code := clock.code(t, en.Secret)
		var wg sync.WaitGroup
		var wins, replays atomic.Int32
		for _, svc := range svcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := login(svc, code)
				switch {
				case err == nil:
					wins.Add(1)
				case AsError(err).Code == CodeInvalidOTP:
					replays.Add(1)
				default:
					t.Errorf("round %d: %v", round, err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 || replays.Load() != 1 {
			t.Fatalf("round %d: %d logins and %d refusals, want 1 and 1", round, wins.Load(), replays.Load())
		}
	}
}

// setRequireMFA sets an account's require_mfa as its master would.
func (f *fixture) setRequireMFA(account, who string) {
	f.t.Helper()
	r := f.req("PATCH", "/api/v1/accounts/"+account+"/settings", f.login(account, "", map[string]string{
		acctA: pwA, acctB: pwB, acctParent: pwParent}[account]), map[string]string{"require_mfa": who})
	if r.status != 200 {
		f.t.Fatalf("set require_mfa: %d %s", r.status, r.body)
	}
}

// TestMFAEnrolmentHold: with require_mfa, a person without a factor logs
// in with the password, is told to enrol, and every API call but those
// that enrol (and me, password, logout) answers 403
// mfa_enrollment_required until a factor is confirmed. Every route is
// called, so a new route is held unless it says otherwise.
func TestMFAEnrolmentHold(t *testing.T) {
	held := map[string]bool{}
	for _, rt := range (&Server{}).routes() {
		held[rt.pattern] = rt.held
	}
	// Only these may be open while held; a new one needs a reason here.
	for p, ok := range held {
		allowed := map[string]bool{"POST /api/v1/logout": true, "POST /api/v1/password": true, "GET /api/v1/me": true,
			"POST /api/v1/me/mfa/totp": true, "POST /api/v1/me/mfa/totp/confirm": true, "DELETE /api/v1/me/mfa/totp": true,
			// A passkey is a factor: registering one ends the hold.
			"POST /api/v1/me/passkeys/register/begin": true, "POST /api/v1/me/passkeys/register/finish": true,
			"GET /api/v1/me/passkeys": true}
		if ok && !allowed[p] {
			t.Errorf("%s is open to a held person", p)
		}
	}
	path := strings.NewReplacer("{acct}", acctA, "{username}", "bob", "{id}", "1")
	for _, c := range []struct {
		name, require, username, pw string
	}{
		{"user, everyone", policy.MFAEveryone, "alice", pwAlice},
		{"master, masters", policy.MFAMasters, "", pwA},
		{"master, everyone", policy.MFAEveryone, "", pwA},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := newTestClock()
			f := newFixture(t, fixtureOptions{now: clock.now})
			f.setRequireMFA(acctA, c.require)
			r := f.loginOTP(acctA, c.username, c.pw, "")
			var lr LoginResult
			r.decode(t, &lr)
			if r.status != 200 || !lr.MustEnrollMFA {
				t.Fatalf("login: %d %s", r.status, r.body)
			}
			if e := f.lastAudit(acctA); !strings.Contains(string(e.After), `"must_enroll_mfa":true`) {
				t.Errorf("audit: %s", e.After)
			}
			for _, rt := range (&Server{}).routes() {
				if rt.public || rt.device || rt.held {
					continue
				}
				method, p, _ := strings.Cut(rt.pattern, " ")
				r := f.req(method, path.Replace(p), lr.Token, "{}")
				if r.status != 403 || r.errCode() != CodeMFAEnrollmentRequired {
					t.Errorf("%s while held: %d %s", rt.pattern, r.status, r.body)
				}
			}
			var me Me
			f.req("GET", "/api/v1/me", lr.Token, nil).decode(t, &me)
			if !me.MustEnrollMFA {
				t.Errorf("me: %+v", me)
			}
			f.enrolTOTP(clock, lr.Token)
			f.req("GET", "/api/v1/me", lr.Token, nil).decode(t, &me)
			if me.MustEnrollMFA {
				t.Errorf("me after enrolment: %+v", me)
			}
			if r := f.req("POST", "/api/v1/accounts/10042/unblock", lr.Token, nil); r.status != 201 {
				t.Errorf("unblock after enrolment: %d %s", r.status, r.body)
			}
		})
	}
	// Masters only: a user is not held.
	f := newFixture(t, fixtureOptions{})
	f.setRequireMFA(acctA, policy.MFAMasters)
	if r := f.req("POST", "/api/v1/accounts/10042/unblock", f.login(acctA, "alice", pwAlice), nil); r.status != 201 {
		t.Errorf("a user under require_mfa masters: %d %s", r.status, r.body)
	}
	// A session open before the setting changed is held from then on.
	f = newFixture(t, fixtureOptions{})
	tok := f.login(acctA, "alice", pwAlice)
	f.setRequireMFA(acctA, policy.MFAEveryone)
	if r := f.req("POST", "/api/v1/accounts/10042/unblock", tok, nil); r.errCode() != CodeMFAEnrollmentRequired {
		t.Errorf("an open session after the change: %d %s", r.status, r.body)
	}
}

// TestClearLostFactor: a master clears an employee's factor, the operator
// a master's; each is audited and ends that person's sessions; the person
// logs in with the password alone again (held on enrolment if required).
func TestClearLostFactor(t *testing.T) {
	clock := newTestClock()
	f := newFixture(t, fixtureOptions{now: clock.now})
	aliceTok := f.login(acctA, "alice", pwAlice)
	f.enrolTOTP(clock, aliceTok)
	masterTok := f.login(acctA, "", pwA)
	f.enrolTOTP(clock, masterTok)

	// Alice may not clear her own through the master's call.
	if r := f.req("DELETE", "/api/v1/accounts/10042/users/alice/mfa", aliceTok, nil); r.status != 403 {
		t.Fatalf("alice clearing her own: %d %s", r.status, r.body)
	}
	if r := f.req("DELETE", "/api/v1/accounts/10042/users/nobody/mfa", masterTok, nil); r.status != 404 {
		t.Fatalf("no such user: %d %s", r.status, r.body)
	}
	r := f.req("DELETE", "/api/v1/accounts/10042/users/alice/mfa", masterTok, nil)
	var ended SessionsEnded
	r.decode(t, &ended)
	if r.status != 200 || ended.SessionsEnded != 1 {
		t.Fatalf("master clears alice's: %d %s", r.status, r.body)
	}
	e := f.lastAudit(acctA)
	if e.Action != "mfa.clear" || e.Target != "user/alice" || e.Actor != "master" || !strings.Contains(string(e.Before), `"totp":true`) {
		t.Errorf("audit: %+v %s", e, e.Before)
	}
	if r := f.req("GET", "/api/v1/me", aliceTok, nil); r.status != 401 {
		t.Errorf("alice's session after the clear: %d", r.status)
	}
	f.login(acctA, "alice", pwAlice)

	// A master cannot clear their own; the operator can.
	if r := f.req("DELETE", "/api/v1/accounts/10042/master/mfa", masterTok, nil); r.status != 403 {
		t.Fatalf("master clearing own: %d %s", r.status, r.body)
	}
	if r := f.req("DELETE", "/api/v1/accounts/99999/master/mfa", opToken, nil); r.status != 404 {
		t.Fatalf("no such account: %d %s", r.status, r.body)
	}
	r = f.req("DELETE", "/api/v1/accounts/10042/master/mfa", opToken, nil)
	r.decode(t, &ended)
	if r.status != 200 || ended.SessionsEnded != 1 {
		t.Fatalf("operator clears the master's: %d %s", r.status, r.body)
	}
	if e := f.lastAudit(acctA); e.Action != "mfa.clear" || e.Actor != "operator" || e.Target != "account/10042" {
		t.Errorf("audit: %+v", e)
	}
	if r := f.req("GET", "/api/v1/me", masterTok, nil); r.status != 401 {
		t.Errorf("master's session after the clear: %d", r.status)
	}
	f.login(acctA, "", pwA)
}

// TestLoginTicket: a ticket gives back the login it sealed, with a
// username that has dots, until it expires; a changed one does not open.
func TestLoginTicket(t *testing.T) {
	clock := newTestClock()
	f := newFixture(t, fixtureOptions{now: clock.now})
	req := LoginRequest{Account: acctA, Username: "dave.miller", Password: "p.a.s.s-word 1"}
	tk, err := f.svc.LoginTicket(req)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tk, req.Password) {
		t.Fatalf("password readable in %q", tk)
	}
	if got, err := f.svc.OpenLoginTicket(tk); err != nil || got != req {
		t.Fatalf("open: %+v %v", got, err)
	}
	other, _ := f.svc.LoginTicket(LoginRequest{Account: acctA, Username: "alice", Password: "x"})
	parts, oparts := strings.SplitN(tk, ".", 4), strings.SplitN(other, ".", 4)
	for _, bad := range []string{"", "1.2.3", tk[:len(tk)-3], parts[0] + "." + parts[1] + "." + oparts[2] + "." + parts[3],
		"99999999999." + strings.Join(parts[1:], ".")} {
		if _, err := f.svc.OpenLoginTicket(bad); err == nil {
			t.Errorf("opened %q", bad)
		}
	}
	for range 11 {
		clock.step()
	}
	if _, err := f.svc.OpenLoginTicket(tk); err == nil {
		t.Error("opened after 5 minutes")
	}
}

// TestPasswordMaxAge: with password_max_age, a password older than it is
// asked to be changed at the next login, a user's and a master's, and
// nothing else is allowed until then.
func TestPasswordMaxAge(t *testing.T) {
	clock := newTestClock()
	f := newFixture(t, fixtureOptions{now: clock.now})
	r := f.req("PATCH", "/api/v1/accounts/10042/settings", f.login(acctA, "", pwA), map[string]string{"password_max_age": "720h"})
	if r.status != 200 {
		t.Fatalf("setting: %d %s", r.status, r.body)
	}
	var lr LoginResult
	f.loginOTP(acctA, "alice", pwAlice, "").decode(t, &lr)
	if lr.MustResetPassword {
		t.Fatal("a fresh password expired")
	}
	clock.ns.Add(int64(721 * time.Hour))
	for _, c := range []struct{ username, pw, call string }{
		{"alice", pwAlice, "/api/v1/accounts/10042/unblock"},
		{"", pwA, "/api/v1/accounts/10042/users"},
	} {
		f.loginOTP(acctA, c.username, c.pw, "").decode(t, &lr)
		if !lr.MustResetPassword {
			t.Fatalf("%q: an old password did not expire", c.username)
		}
		if e := f.lastAudit(acctA); !strings.Contains(string(e.After), `"password_expired":true`) {
			t.Errorf("audit: %s", e.After)
		}
		method := "POST"
		if c.username == "" {
			method = "GET"
		}
		if r := f.req(method, c.call, lr.Token, nil); r.errCode() != CodePasswordResetRequired {
			t.Fatalf("%q before the change: %d %s", c.username, r.status, r.body)
		}
		if r := f.req("POST", "/api/v1/password", lr.Token, passwordBody{Current: c.pw, New: "violet lantern harbour 7"}); r.status != 200 {
			t.Fatalf("%q change: %d %s", c.username, r.status, r.body)
		}
		if r := f.req(method, c.call, lr.Token, nil); r.status >= 300 {
			t.Fatalf("%q after the change: %d %s", c.username, r.status, r.body)
		}
		f.loginOTP(acctA, c.username, "violet lantern harbour 7", "").decode(t, &lr)
		if lr.MustResetPassword {
			t.Fatalf("%q: the new password expired at once", c.username)
		}
	}
}

// A cleared factor is never a silent event for its owner: the person is
// told at their confirmed address (issue 21: "a factor reset never happens
// by email alone", and never unnoticed), and the message carries no
// secret. Someone without a confirmed address gets nothing mailed.
func TestClearedFactorNotice(t *testing.T) {
	clock := newTestClock()
	f := newFixture(t, fixtureOptions{now: clock.now, mail: true})
	masterTok := f.login(acctA, "", pwA)
	secret, codes := f.enrolTOTP(clock, f.login(acctA, "alice", pwAlice))
	f.confirmedEmail(t, masterTok, "alice", "alice@example.com")
	f.enrolTOTP(clock, f.login(acctA, "bob", pwBob))

	if r := f.req("DELETE", "/api/v1/accounts/10042/users/bob/mfa", masterTok, nil); r.status != 200 {
		t.Fatalf("clear bob's: %d %s", r.status, r.body)
	}
	if r := f.req("DELETE", "/api/v1/accounts/10042/users/alice/mfa", masterTok, nil); r.status != 200 {
		t.Fatalf("clear alice's: %d %s", r.status, r.body)
	}
	m := waitMail(t, f.mail, "alice@example.com", "gatekeeper: your second factor was removed", 0)
	for _, want := range []string{"login alice", "account 10042", "removed by master", "https://gate.example.com:8443/security"} {
		if !strings.Contains(m.Data, want) {
			t.Errorf("the notice lacks %q:\n%s", want, m.Data)
		}
	}
	for _, s := range append([]string{secret}, codes...) {
		if strings.Contains(m.Data, s) {
			t.Fatalf("the notice holds a secret:\n%s", m.Data)
		}
	}
	f.svc.WaitMail()
	for _, msg := range f.mail.Messages() {
		if strings.Contains(msg.Data, "second factor was removed") && msg.To[0] != "alice@example.com" {
			t.Errorf("a notice went to %v, who has no confirmed address", msg.To)
		}
	}
}
