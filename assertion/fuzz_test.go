package assertion_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/assertion"
)

// fuzzKey is the key the seeds under testdata/fuzz/FuzzVerify are signed
// with: fixed, so that a seed stays valid; never a key gatekeeper uses.
func fuzzKey(t testing.TB) (*ecdsa.PrivateKey, assertion.JWKS) {
	d := sha256.Sum256([]byte("gatekeeper assertion fuzz key"))
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := priv.PublicKey.Bytes()
	set := assertion.JWKS{Keys: []assertion.JWK{{Kty: "EC", Crv: "P-256", X: b64(b[1:33]), Y: b64(b[33:]), Kid: "test", Use: "sig", Alg: "ES256"}}}
	return priv, set
}

// FuzzVerify: Verify never panics, and whatever it accepts the
// independent check accepts too, for the audience asked.
func FuzzVerify(f *testing.F) {
	_, set := fuzzKey(f)
	now := time.Unix(1772366410, 0)
	f.Add("a.b.c", "https://app.example.com")
	f.Fuzz(func(t *testing.T, token, audience string) {
		c, err := assertion.Verify(token, set, audience, now)
		if err != nil {
			return
		}
		if c.Audience != audience || c.Subject == "" || c.Account == "" || now.Unix() >= c.Expires+5 {
			t.Fatalf("accepted %+v for %q at %d", c, audience, now.Unix())
		}
		if strings.Count(token, ".") != 2 {
			t.Fatalf("accepted a token of %d parts", strings.Count(token, ".")+1)
		}
		independentVerify(t, token, set)
	})
}

// FuzzJWKS: a key set of any shape decodes without panicking, and a key it
// yields is on P-256.
func FuzzJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var set assertion.JWKS
		if json.Unmarshal(data, &set) != nil {
			return
		}
		for _, k := range set.Keys {
			pub, err := k.PublicKey()
			if err != nil {
				continue
			}
			if !elliptic.P256().IsOnCurve(pub.X, pub.Y) {
				t.Fatalf("key %q is off the curve", k.Kid)
			}
		}
	})
}

// TestFuzzSeedValid keeps the valid seed valid, so that the fuzzer starts
// from a token Verify accepts.
func TestFuzzSeedValid(t *testing.T) {
	b, err := os.ReadFile("testdata/fuzz/FuzzVerify/valid")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(l, "string("), ")"))
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, s)
	}
	_, set := fuzzKey(t)
	if _, err := assertion.Verify(args[0], set, args[1], time.Unix(1772366410, 0)); err != nil {
		t.Fatalf("the valid seed is refused: %v", err)
	}
}
