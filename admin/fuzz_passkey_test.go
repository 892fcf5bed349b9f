package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// passkeyFuzzService is a Service on a bolt store with account 10042,
// whose master has one passkey, and the master's actor.
func passkeyFuzzService(f *testing.F) (*Service, Actor, *authenticator) {
	bs, err := boltstore.Open(filepath.Join(f.TempDir(), "gk.db"), boltstore.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { bs.Close() })
	svc, err := New(Options{Store: bs, PasswordParams: cheap, SecretsKey: testSecretsKey, PublicURL: testPublicURL,
		LoginLimits: LoginLimits{PerIP: Limit{Burst: 1 << 30}, PerLogin: Limit{Burst: 1 << 30}}})
	if err != nil {
		f.Fatal(err)
	}
	ctx := f.Context()
	if _, err := CreateAccount(ctx, bs, NewAccount{ID: acctA, Name: "Smith Studio", Password: pwA, Actor: "test",
		Role: policy.RoleOperator}, cheap, time.Now()); err != nil {
		f.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.2")
	res, err := svc.Login(ctx, LoginRequest{Account: acctA, Password: pwA}, ip)
	if err != nil {
		f.Fatal(err)
	}
	a, err := svc.Authenticate(ctx, res.Token, ip)
	if err != nil {
		f.Fatal(err)
	}
	auth := newAuthenticator(f, testPublicURL)
	c, err := svc.BeginPasskeyRegistration(ctx, a)
	if err != nil {
		f.Fatal(err)
	}
	opts, _ := json.Marshal(c.Options)
	if _, err := svc.FinishPasskeyRegistration(ctx, a, PasskeyRegistration{Token: c.Token, Name: "key",
		Credential: auth.register(f, opts)}); err != nil {
		f.Fatal(err)
	}
	return svc, a, auth
}

// fuzzClientError fails unless err is nil or a 4xx Error: no body makes
// the passkey calls panic or fail as the server's fault.
func fuzzClientError(t *testing.T, b []byte, err error) {
	var e *Error
	if err != nil && (!errors.As(err, &e) || e.Status < 400 || e.Status >= 500) {
		t.Fatalf("%q: %v", b, err)
	}
}

// FuzzPasskeyRegistrationBody feeds the registration's finish any body,
// with a token the service sealed among the seeds: no panic, a client
// error, and no passkey added but from a real authenticator's answer.
func FuzzPasskeyRegistrationBody(f *testing.F) {
	svc, a, _ := passkeyFuzzService(f)
	c, err := svc.BeginPasskeyRegistration(f.Context(), a)
	if err != nil {
		f.Fatal(err)
	}
	tok, _ := json.Marshal(c.Token)
	for _, s := range []string{
		`{"token":` + string(tok) + `,"name":"laptop","credential":{"id":"AA","rawId":"AA","type":"public-key","response":{"attestationObject":"oA","clientDataJSON":"e30"}}}`,
		`{"token":` + string(tok) + `,"name":"","credential":{}}`,
		`{"token":"v1.x","name":"laptop","credential":null}`,
		`{"name":"\u0000"}`, `{"credential":[]}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var body PasskeyRegistration
		if err := decodeJSON(b, &body); err != nil {
			fuzzClientError(t, b, err)
			return
		}
		_, err := svc.FinishPasskeyRegistration(t.Context(), a, body)
		if err == nil {
			t.Fatalf("%q registered a passkey", b)
		}
		fuzzClientError(t, b, err)
	})
}

// FuzzPasskeyLoginBody feeds the login's finish any body, with a token the
// service sealed and the registered passkey's user handle among the
// seeds: no panic, a client error, and no session.
func FuzzPasskeyLoginBody(f *testing.F) {
	svc, _, auth := passkeyFuzzService(f)
	c, err := svc.BeginPasskeyLogin(f.Context(), PasskeyLoginBegin{})
	if err != nil {
		f.Fatal(err)
	}
	tok, _ := json.Marshal(c.Token)
	handle := b64(auth.handle)
	for _, s := range []string{
		`{"token":` + string(tok) + `,"credential":{"id":"AA","rawId":"AA","type":"public-key","response":{"authenticatorData":"AA","clientDataJSON":"e30","signature":"AA","userHandle":"` + handle + `"}}}`,
		`{"token":` + string(tok) + `,"credential":{"id":"AA","rawId":"AA","type":"public-key","response":{"authenticatorData":"AA","clientDataJSON":"e30","signature":"AA","userHandle":"MTAwNDIuYQ"}}}`,
		`{"token":` + string(tok) + `,"ticket":"1.2.3.4","credential":{}}`,
		`{"token":"v1.x","credential":null}`, `{"ticket":5}`,
	} {
		f.Add([]byte(s))
	}
	ip := netip.MustParseAddr("127.0.0.3")
	f.Fuzz(func(t *testing.T, b []byte) {
		var body PasskeyLogin
		if err := decodeJSON(b, &body); err != nil {
			fuzzClientError(t, b, err)
			return
		}
		res, err := svc.FinishPasskeyLogin(t.Context(), body, ip)
		if err == nil || res.Token != "" {
			t.Fatalf("%q logged in", b)
		}
		if AsError(err).Status == http.StatusTooManyRequests {
			return
		}
		fuzzClientError(t, b, err)
	})
}
