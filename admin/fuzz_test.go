package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// fuzzBody fuzzes the strict decoding of one request body type and the
// checks the Service makes of it before touching the store. Whatever the
// bytes: no panic; a refusal is a 4xx *Error; what decodes survives a
// round trip unchanged. Seeds: the bodies of the write and bad-body tables,
// plus the files in testdata/fuzz/<name>.
func fuzzBody[T any](f *testing.F, vet func(T) error) {
	for _, c := range writeCases {
		if c.body != nil {
			b, _ := json.Marshal(c.body)
			f.Add(b)
		}
	}
	for _, s := range []string{`{"cidr":`, `[]`, `null`, `{"bogus":true}`, `{} {}`, `{"ttl":"soon"}`, `{"ttl":5}`,
		`{"active":"yes"}`, "{\"note\":\"\xff\"}", `{"cidr":"::ffff:1.2.3.4/120","confirm":true}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v T
		if err := decodeJSON(b, &v); err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Code != CodeInvalidRequest {
				t.Fatalf("decode error %#v", err)
			}
			return
		}
		if vet != nil {
			if err := vet(v); err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Status < 400 || e.Status >= 500 || e.Code == "" {
					t.Fatalf("check of %q: %#v", b, err)
				}
			}
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var w T
		if err := decodeJSON(again, &w); err != nil || !reflect.DeepEqual(v, w) {
			t.Fatalf("round trip of %q: %v, %#v != %#v", b, err, v, w)
		}
	})
}

func FuzzLoginBody(f *testing.F) {
	fuzzBody(f, func(b LoginRequest) error {
		if n := auditName(normalizeUsername(b.Username)); n != "" && !usernamePattern.MatchString(n) && n != "(invalid username)" {
			return errors.New("audit name escaped the pattern")
		}
		return nil
	})
}

func FuzzPasswordBody(f *testing.F) {
	fuzzBody(f, func(b passwordBody) error { return vetPassword(b.New, "alice", acctA) })
}

func FuzzForgotBody(f *testing.F) {
	fuzzBody(f, func(b ForgotRequest) error { return nil }) // every body gets the same 202
}

func FuzzResetBody(f *testing.F) {
	fuzzBody(f, func(b ResetRequest) error {
		acct, user, ok := parseLinkToken(b.Token)
		if !ok {
			return errBadToken
		}
		if !policy.ValidAccountID(acct) || (user != "" && !usernamePattern.MatchString(user)) {
			return errors.New("a malformed token was parsed: " + b.Token)
		}
		if linkToken(acct, user, strings.SplitN(b.Token, ".", 3)[1]) != b.Token {
			return errors.New("a token does not parse back to itself: " + b.Token)
		}
		return vetPassword(b.New, user, acct)
	})
}

func FuzzEmailBody(f *testing.F) {
	fuzzBody(f, func(b EmailRequest) error {
		a, err := checkEmail(b.Email)
		if err == nil && (strings.ContainsAny(a, "\r\n<>,") || len(a) > maxEmail) {
			return errors.New("a bad address was accepted: " + a)
		}
		return err
	})
}

func FuzzUnblockBody(f *testing.F) {
	fuzzBody(f, func(b unblockBody) error {
		d, err := grantTTL(time.Duration(b.TTL), policy.Settings{})
		if err == nil && (d < time.Minute || d > policy.DefaultGrantTTLMax) {
			return errors.New("ttl out of bounds accepted")
		}
		return err
	})
}

func FuzzModeBody(f *testing.F) {
	fuzzBody(f, func(b modeBody) error {
		if _, err := policy.ParseMode(b.Mode); err != nil {
			return badRequest(CodeInvalidRequest, "mode")
		}
		return nil
	})
}

func FuzzRuleBody(f *testing.F) {
	fuzzBody(f, func(b ruleBody) error {
		r, err := b.newRule().vet()
		if err == nil && (!r.Prefix.IsValid() || r.Prefix.Bits() == 0 || r.Prefix != r.Prefix.Masked() ||
			(r.Prefix.Addr().Is4In6() && r.Prefix.Bits() >= 96) || (policy.NeedsConfirm(r.Prefix) && !b.Confirm)) {
			return errors.New("a bad network was accepted: " + r.Prefix.String())
		}
		return err
	})
}

func FuzzUserBody(f *testing.F) {
	fuzzBody(f, func(b userBody) error {
		n, err := b.newUser()
		if err != nil {
			return err
		}
		n, err = n.vet(acctA)
		if err == nil && (!usernamePattern.MatchString(n.Username) || isGeneric(n.Username)) {
			return errors.New("a bad username was accepted: " + n.Username)
		}
		if err == nil && !knownPermissions(n.Permissions) {
			return errors.New("an unknown permission was accepted")
		}
		return err
	})
}

func FuzzPatchBody(f *testing.F) {
	fuzzBody(f, func(b patchBody) error {
		p, err := b.patch()
		if err != nil {
			return err
		}
		if p.AccessUntil != nil && !p.AccessUntil.IsZero() && p.AccessUntil.Format(time.RFC3339Nano) == "" {
			return errors.New("an unprintable last day was accepted")
		}
		if b.Permissions == nil {
			return nil
		}
		ps, err := vetPermissions(*b.Permissions)
		if err == nil && !knownPermissions(ps) {
			return errors.New("an unknown permission was accepted")
		}
		return err
	})
}

// knownPermissions reports whether ps holds only known permissions, each
// once.
func knownPermissions(ps []string) bool {
	seen := map[string]bool{}
	for _, p := range ps {
		if seen[p] || !slices.Contains(policy.Permissions, p) {
			return false
		}
		seen[p] = true
	}
	return true
}

func FuzzAccountBody(f *testing.F) {
	fuzzBody[accountBody](f, nil)
}

// FuzzCodeBody fuzzes the body of a TOTP confirmation and the checks of a
// second-factor code (also the "otp" of a login): no panic; only six
// digits can match a TOTP step, and only a step within the skew after the
// last one used; a recovery code matches only its own hash, however typed.
func FuzzCodeBody(f *testing.F) {
	const secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	now := time.Unix(1_800_000_000, 0)
	_, hashes := newRecoveryCodes()
	fuzzBody(f, func(b codeBody) error {
		cur := now.Unix() / totpPeriod
		if step, ok := matchTOTP(secret, b.Code, now, cur-1); ok {
			c := strings.TrimSpace(b.Code)
			if len(c) != 6 || strings.Trim(c, "0123456789") != "" || step < cur || step > cur+totpSkew {
				return errors.New("a code matched that cannot")
			}
		}
		fa := policy.SecondFactor{RecoveryHashes: slices.Clone(hashes)}
		if useRecoveryCode(&fa, b.Code) {
			return errors.New("a random code was a recovery code")
		}
		if recoveryHash(b.Code) != recoveryHash(strings.ToUpper(strings.ReplaceAll(b.Code, "-", ""))) &&
			strings.IndexFunc(b.Code, func(r rune) bool { return r > 127 }) < 0 {
			return errors.New("recovery codes depend on case or dashes")
		}
		return nil
	})
}

// FuzzLoginTicket feeds the pages' second login step any ticket: no
// panic, and nothing opens but a ticket the service sealed itself, to the
// login it sealed.
func FuzzLoginTicket(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	svc, err := New(Options{Store: &flakyStore{}, SecretsKey: testSecretsKey, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	want := LoginRequest{Account: acctA, Username: "dave.miller", Password: "a password"}
	good, err := svc.LoginTicket(want)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{good, "", "1.2.3.4", "1800000300.MTAwNDI.ZGF2ZQ.v1.AAAA", good[:len(good)/2], good + "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ticket string) {
		got, err := svc.OpenLoginTicket(ticket)
		if err != nil {
			if e := AsError(err); e.Status != http.StatusUnauthorized {
				t.Fatalf("%q: %v", ticket, err)
			}
			return
		}
		if got != want {
			t.Fatalf("%q opened to %+v", ticket, got)
		}
	})
}

func FuzzReviewBody(f *testing.F) {
	fuzzBody(f, func(b reviewBody) error { return vetReviewRefs(b.Remove) })
}
