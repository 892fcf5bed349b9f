package admin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// authenticator is a software WebAuthn authenticator, as a browser with a
// platform passkey answers: "none" attestation, ES256, user present and
// verified, a discoverable credential that remembers its user handle. It
// exists to drive the real verification of the WebAuthn library through
// the API; the Chromium test drives the same with a virtual one.
type authenticator struct {
	origin, rpID string
	key          *ecdsa.PrivateKey
	id, handle   []byte
	count        uint32
}

func newAuthenticator(t testing.TB, origin string) *authenticator {
	u, err := url.Parse(origin)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	return &authenticator{origin: origin, rpID: u.Hostname(), key: k, id: id}
}

// cbor appends the head of a CBOR item of major type mt and argument n.
func cborHead(b []byte, mt byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(b, mt<<5|byte(n))
	case n < 256:
		return append(b, mt<<5|24, byte(n))
	default:
		return append(b, mt<<5|25, byte(n>>8), byte(n))
	}
}

func cborInt(b []byte, n int) []byte {
	if n < 0 {
		return cborHead(b, 1, uint64(-1-n))
	}
	return cborHead(b, 0, uint64(n))
}

func cborBytes(b, v []byte) []byte       { return append(cborHead(b, 2, uint64(len(v))), v...) }
func cborText(b []byte, s string) []byte { return append(cborHead(b, 3, uint64(len(s))), s...) }

func (a *authenticator) authData(attested bool) []byte {
	rp := sha256.Sum256([]byte(a.rpID))
	a.count++
	flags := byte(0x01 | 0x04 | 0x08 | 0x10) // user present, verified, backup eligible and state
	out := append(rp[:], flags)
	out = binary.BigEndian.AppendUint32(out, a.count)
	if attested {
		flags |= 0x40
		out[32] = flags
		out = append(out, make([]byte, 16)...) // AAGUID
		out = binary.BigEndian.AppendUint16(out, uint16(len(a.id)))
		out = append(out, a.id...)
		x, y := make([]byte, 32), make([]byte, 32)
		a.key.X.FillBytes(x)
		a.key.Y.FillBytes(y)
		k := cborHead(nil, 5, 5)
		k = cborInt(cborInt(k, 1), 2)    // kty: EC2
		k = cborInt(cborInt(k, 3), -7)   // alg: ES256
		k = cborInt(cborInt(k, -1), 1)   // crv: P-256
		k = cborBytes(cborInt(k, -2), x) // x
		k = cborBytes(cborInt(k, -3), y) // y
		out = append(out, k...)
	}
	return out
}

func clientData(typ, challenge, origin string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": origin, "crossOrigin": false})
	return b
}

var b64 = base64.RawURLEncoding.EncodeToString

// register answers creation options (as the API returns them).
func (a *authenticator) register(t testing.TB, options json.RawMessage) json.RawMessage {
	t.Helper()
	var o struct {
		PublicKey struct {
			Challenge string `json:"challenge"`
			User      struct {
				ID string `json:"id"`
			} `json:"user"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(options, &o); err != nil {
		t.Fatal(err)
	}
	h, err := base64.RawURLEncoding.DecodeString(o.PublicKey.User.ID)
	if err != nil {
		t.Fatalf("user id: %v", err)
	}
	a.handle = h
	att := cborHead(nil, 5, 3)
	att = cborText(cborText(att, "fmt"), "none")
	att = cborHead(cborText(att, "attStmt"), 5, 0)
	att = cborBytes(cborText(att, "authData"), a.authData(true))
	b, _ := json.Marshal(map[string]any{"id": b64(a.id), "rawId": b64(a.id), "type": "public-key",
		"response": map[string]any{"attestationObject": b64(att),
			"clientDataJSON": b64(clientData("webauthn.create", o.PublicKey.Challenge, a.origin))}})
	return b
}

// assert answers request options.
func (a *authenticator) assert(t *testing.T, options json.RawMessage) json.RawMessage {
	t.Helper()
	var o struct {
		PublicKey struct {
			Challenge string `json:"challenge"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(options, &o); err != nil {
		t.Fatal(err)
	}
	ad := a.authData(false)
	cd := clientData("webauthn.get", o.PublicKey.Challenge, a.origin)
	sum := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, ad...), sum[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"id": b64(a.id), "rawId": b64(a.id), "type": "public-key",
		"response": map[string]any{"authenticatorData": b64(ad), "clientDataJSON": b64(cd),
			"signature": b64(sig), "userHandle": b64(a.handle)}})
	return b
}

type ceremonyResp struct {
	Token   string          `json:"token"`
	Options json.RawMessage `json:"options"`
}

func (f *fixture) registerPasskey(a *authenticator, tok, name string) PasskeyInfo {
	f.t.Helper()
	var c ceremonyResp
	r := f.req("POST", "/api/v1/me/passkeys/register/begin", tok, nil)
	if r.status != 200 {
		f.t.Fatalf("register begin: %d %s", r.status, r.body)
	}
	r.decode(f.t, &c)
	r = f.req("POST", "/api/v1/me/passkeys/register/finish", tok,
		PasskeyRegistration{Token: c.Token, Name: name, Credential: a.register(f.t, c.Options)})
	if r.status != 201 {
		f.t.Fatalf("register finish: %d %s", r.status, r.body)
	}
	var info PasskeyInfo
	r.decode(f.t, &info)
	return info
}

// TestPasskeyLogin registers two passkeys, logs in with one alone
// (usernameless), refuses the same answer twice, shows that a password
// login then needs the second factor, and removes a passkey.
func TestPasskeyLogin(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tok := f.login(acctA, "alice", pwAlice)
	other := f.login(acctA, "alice", pwAlice) // another browser of hers
	laptop, phone := newAuthenticator(t, testPublicURL), newAuthenticator(t, testPublicURL)
	k1 := f.registerPasskey(laptop, tok, "laptop")
	// A new factor ends her other sessions, as a TOTP enrolment does.
	if r := f.req("GET", "/api/v1/me", other, nil); r.status != 401 {
		t.Errorf("another session after a passkey was added: %d", r.status)
	}
	f.registerPasskey(phone, tok, "phone")

	var list struct{ Passkeys []PasskeyInfo }
	f.req("GET", "/api/v1/me/passkeys", tok, nil).decode(t, &list)
	if len(list.Passkeys) != 2 || list.Passkeys[0].Name != "laptop" || list.Passkeys[1].Name != "phone" {
		t.Fatalf("passkeys: %+v", list.Passkeys)
	}
	// A rename keeps the key and the sessions, and is audited; a name
	// the registration would refuse is refused here too.
	if r := f.req("PATCH", "/api/v1/me/passkeys/"+k1.ID, tok, map[string]string{"name": " office laptop "}); r.status != 200 {
		t.Fatalf("rename: %d %s", r.status, r.body)
	}
	for _, bad := range []string{"", "   ", "a\x00b", strings.Repeat("x", 65)} {
		if r := f.req("PATCH", "/api/v1/me/passkeys/"+k1.ID, tok, map[string]string{"name": bad}); r.status != 400 {
			t.Errorf("rename to %q: %d %s", bad, r.status, r.body)
		}
	}
	f.req("GET", "/api/v1/me/passkeys", tok, nil).decode(t, &list)
	if list.Passkeys[0].Name != "office laptop" || list.Passkeys[0].ID != k1.ID {
		t.Fatalf("after the rename: %+v", list.Passkeys)
	}
	if e := f.lastAudit(acctA); e.Action != "mfa.passkey_rename" || !strings.Contains(string(e.Before), `"laptop"`) || !strings.Contains(string(e.After), `"office laptop"`) {
		t.Errorf("rename audited as %+v", e)
	}
	if r := f.req("PATCH", "/api/v1/me/passkeys/"+k1.ID, f.login(acctA, "bob", pwBob), map[string]string{"name": "mine"}); r.status != 404 {
		t.Errorf("bob renames alice's passkey: %d %s", r.status, r.body)
	}

	// A password alone no longer does: a passkey is a second factor.
	r0 := f.req("POST", "/api/v1/login", "", LoginRequest{Account: acctA, Username: "alice", Password: pwAlice})
	if r0.status != 401 || !containsCode(r0.body, CodeOTPRequired) {
		t.Fatalf("password login with a passkey: %d %s", r0.status, r0.body)
	}
	// It says a passkey completes it, and no code: alice has no app.
	var e struct{ Error struct{ Factors []string } }
	r0.decode(t, &e)
	if !slices.Equal(e.Error.Factors, []string{"passkey"}) {
		t.Errorf("factors of a passkey-only login: %q", e.Error.Factors)
	}

	// Usernameless: nothing but the passkey.
	var c ceremonyResp
	f.req("POST", "/api/v1/login/passkey/begin", "", nil).decode(t, &c)
	answer := laptop.assert(t, c.Options)
	r := f.req("POST", "/api/v1/login/passkey/finish", "", PasskeyLogin{Token: c.Token, Credential: answer})
	if r.status != 200 {
		t.Fatalf("passkey login: %d %s", r.status, r.body)
	}
	var lr LoginResult
	r.decode(t, &lr)
	var me struct{ Username string }
	f.req("GET", "/api/v1/me", lr.Token, nil).decode(t, &me)
	if me.Username != "alice" {
		t.Fatalf("passkey login is %q, want alice", me.Username)
	}
	// The same challenge answered again is refused.
	if r := f.req("POST", "/api/v1/login/passkey/finish", "", PasskeyLogin{Token: c.Token, Credential: laptop.assert(t, c.Options)}); r.status == 200 {
		t.Fatalf("a challenge was used twice: %d %s", r.status, r.body)
	}
	// An answer signed by another key is refused.
	stranger := newAuthenticator(t, testPublicURL)
	stranger.id, stranger.handle = laptop.id, laptop.handle
	f.req("POST", "/api/v1/login/passkey/begin", "", nil).decode(t, &c)
	if r := f.req("POST", "/api/v1/login/passkey/finish", "", PasskeyLogin{Token: c.Token, Credential: stranger.assert(t, c.Options)}); r.status != 401 {
		t.Fatalf("a forged passkey answer: %d %s", r.status, r.body)
	}
	// An answer for another origin is refused.
	phishing := *phone
	phishing.origin = "https://gate.test.evil:8443"
	f.req("POST", "/api/v1/login/passkey/begin", "", nil).decode(t, &c)
	if r := f.req("POST", "/api/v1/login/passkey/finish", "", PasskeyLogin{Token: c.Token, Credential: phishing.assert(t, c.Options)}); r.status != 401 {
		t.Fatalf("an answer from another origin: %d %s", r.status, r.body)
	}

	// Remove the laptop's: it no longer logs in; the phone's still does.
	if r := f.req("DELETE", "/api/v1/me/passkeys/"+k1.ID, lr.Token, nil); r.status != 200 {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	if r := f.req("GET", "/api/v1/me", tok, nil); r.status != 401 {
		t.Errorf("another session after a passkey was removed: %d", r.status)
	}
	if r := f.req("GET", "/api/v1/me", lr.Token, nil); r.status != 200 {
		t.Errorf("the session that removed it: %d", r.status)
	}
	f.req("POST", "/api/v1/login/passkey/begin", "", nil).decode(t, &c)
	if r := f.req("POST", "/api/v1/login/passkey/finish", "", PasskeyLogin{Token: c.Token, Credential: laptop.assert(t, c.Options)}); r.status != 401 {
		t.Fatalf("a removed passkey: %d %s", r.status, r.body)
	}
	f.req("POST", "/api/v1/login/passkey/begin", "", nil).decode(t, &c)
	if r := f.req("POST", "/api/v1/login/passkey/finish", "", PasskeyLogin{Token: c.Token, Credential: phone.assert(t, c.Options)}); r.status != 200 {
		t.Fatalf("the phone's passkey: %d %s", r.status, r.body)
	}
}

// TestPasskeyRegistrationBound shows that a registration's token belongs
// to the session that began it.
func TestPasskeyRegistrationBound(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tok := f.login(acctA, "alice", pwAlice)
	other := f.login(acctA, "bob", pwBob)
	var c ceremonyResp
	f.req("POST", "/api/v1/me/passkeys/register/begin", tok, nil).decode(t, &c)
	a := newAuthenticator(t, testPublicURL)
	r := f.req("POST", "/api/v1/me/passkeys/register/finish", other,
		PasskeyRegistration{Token: c.Token, Name: "stolen", Credential: a.register(t, c.Options)})
	if r.status != 400 {
		t.Fatalf("another session's registration: %d %s", r.status, r.body)
	}
}

func containsCode(body []byte, code string) bool {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	json.Unmarshal(body, &e)
	return e.Error.Code == code
}
