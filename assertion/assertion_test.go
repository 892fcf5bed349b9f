package assertion_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/assertion"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

const aud = "https://app.example.com"

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time           { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration)      { c.ns.Add(int64(d)) }
func testKey(b byte) []byte               { return bytes.Repeat([]byte{b}, 32) }
func boltStore(t testing.TB) policy.Store { return openBolt(t, filepath.Join(t.TempDir(), "gk.db")) }

func openBolt(t testing.TB, path string) policy.Store {
	t.Helper()
	st, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newSigner(t testing.TB, st assertion.KeyStore, c *clock, key []byte) *assertion.Signer {
	t.Helper()
	s, err := assertion.New(t.Context(), assertion.Options{Store: st, SecretsKey: key, Now: c.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestAssertVerifies(t *testing.T) {
	c := newClock()
	s := newSigner(t, boltStore(t), c, testKey(1))
	for _, tc := range []struct{ user, sub string }{{"alice", "alice"}, {"", assertion.MasterSubject}} {
		tok, err := s.Assert(t.Context(), "10042", tc.user, aud)
		if err != nil {
			t.Fatalf("Assert: %v", err)
		}
		got, err := assertion.Verify(tok, s.Keys(), aud, c.Now())
		if err != nil {
			t.Fatalf("Verify(%s): %v", tc.user, err)
		}
		now := c.Now().Unix()
		want := assertion.Claims{Issuer: "gatekeeper", Subject: tc.sub, Account: "10042", Audience: aud,
			IssuedAt: now, NotBefore: now, Expires: now + 60, ID: got.ID}
		if got != want || len(got.ID) < 16 {
			t.Errorf("claims = %+v, want %+v", got, want)
		}
		independentVerify(t, tok, s.Keys())
	}
}

// independentVerify checks tok a second way: its own base64 (padded
// standard alphabet after translation), the key from x and y through
// big.Int, and the signature re-encoded as ASN.1 for ecdsa.VerifyASN1.
func independentVerify(t *testing.T, tok string, set assertion.JWKS) {
	t.Helper()
	dec := func(s string) []byte {
		s = strings.NewReplacer("-", "+", "_", "/").Replace(s)
		s += strings.Repeat("=", (4-len(s)%4)%4)
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("decode %q: %v", s, err)
		}
		return b
	}
	parts := strings.Split(tok, ".")
	var h map[string]any
	if err := json.Unmarshal(dec(parts[0]), &h); err != nil || h["alg"] != "ES256" || h["typ"] != "JWT" {
		t.Fatalf("header %v, %v", h, err)
	}
	var pub *ecdsa.PublicKey
	for _, k := range set.Keys {
		if k.Kid == h["kid"] {
			pub = &ecdsa.PublicKey{Curve: p256(), X: new(big.Int).SetBytes(dec(k.X)), Y: new(big.Int).SetBytes(dec(k.Y))}
		}
	}
	if pub == nil {
		t.Fatalf("kid %v not in the JWKS", h["kid"])
	}
	sig := dec(parts[2])
	der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.VerifyASN1(pub, digest[:], der) {
		t.Fatalf("the independent check refuses %s", tok)
	}
}

func TestRefused(t *testing.T) {
	c := newClock()
	s := newSigner(t, boltStore(t), c, testKey(1))
	keys := s.Keys()
	tok, err := s.Assert(t.Context(), "10042", "alice", aud)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	enc := base64.RawURLEncoding
	kid := keys.Keys[0].Kid
	resign := func(head, body string) string {
		return enc.EncodeToString([]byte(head)) + "." + enc.EncodeToString([]byte(body)) + "." + parts[2]
	}
	body, _ := enc.DecodeString(parts[1])
	x, _ := enc.DecodeString(keys.Keys[0].X)
	mac := hmac.New(sha256.New, x)
	hsHead := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT","kid":"`+kid+`"}`)) + "." + parts[1]
	mac.Write([]byte(hsHead))
	sig, _ := enc.DecodeString(parts[2])
	der, _ := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])})

	cases := map[string]struct {
		tok, aud string
		at       time.Time
	}{
		"wrong audience":            {tok, "https://other.example.com", c.Now()},
		"audience prefix":           {tok, "https://app.example.co", c.Now()},
		"expired":                   {tok, aud, c.Now().Add(2 * time.Minute)},
		"not yet":                   {tok, aud, c.Now().Add(-time.Minute)},
		"alg none":                  {enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"`+kid+`"}`)) + "." + parts[1] + ".", aud, c.Now()},
		"alg none no sig":           {resign(`{"alg":"none","typ":"JWT","kid":"`+kid+`"}`, string(body)), aud, c.Now()},
		"HS256 with the public key": {hsHead + "." + enc.EncodeToString(mac.Sum(nil)), aud, c.Now()},
		"unknown kid":               {resign(`{"alg":"ES256","typ":"JWT","kid":"nope"}`, string(body)), aud, c.Now()},
		"no kid":                    {resign(`{"alg":"ES256","typ":"JWT"}`, string(body)), aud, c.Now()},
		"ASN.1 signature":           {parts[0] + "." + parts[1] + "." + enc.EncodeToString(der), aud, c.Now()},
		"padded":                    {tok + "=", aud, c.Now()},
		"two parts":                 {parts[0] + "." + parts[1], aud, c.Now()},
		"four parts":                {tok + ".x", aud, c.Now()},
		"crit header":               {resign(`{"alg":"ES256","typ":"JWT","kid":"`+kid+`","crit":["x"]}`, string(body)), aud, c.Now()},
		"empty":                     {"", aud, c.Now()},
	}
	for name, tc := range cases {
		if got, err := assertion.Verify(tc.tok, keys, tc.aud, tc.at); err == nil {
			t.Errorf("%s: Verify accepted it: %+v", name, got)
		}
	}
	// Every single flipped bit anywhere in the token is refused.
	for i := range len(tok) {
		for _, bit := range []byte{1, 2, 4, 8, 16, 32} {
			b := []byte(tok)
			b[i] ^= bit
			if got, err := assertion.Verify(string(b), keys, aud, c.Now()); err == nil && string(b) != tok {
				// Base64's last character may carry unused bits; Strict refuses those.
				t.Errorf("flip bit %d of byte %d: accepted %+v", bit, i, got)
			}
		}
	}
}

func TestCache(t *testing.T) {
	c := newClock()
	s := newSigner(t, boltStore(t), c, testKey(1))
	a, _ := s.Assert(t.Context(), "10042", "alice", aud)
	c.Add(29 * time.Second)
	b, _ := s.Assert(t.Context(), "10042", "alice", aud)
	if a != b {
		t.Errorf("a token was not reused within half its life")
	}
	if o, _ := s.Assert(t.Context(), "10042", "bob", aud); o == a {
		t.Errorf("another user got alice's token")
	}
	if o, _ := s.Assert(t.Context(), "10042", "alice", "https://other.example.com"); o == a {
		t.Errorf("another route got alice's token")
	}
	c.Add(2 * time.Second)
	d, _ := s.Assert(t.Context(), "10042", "alice", aud)
	if d == a {
		t.Errorf("a token was reused past half its life")
	}
	if _, err := assertion.Verify(d, s.Keys(), aud, c.Now().Add(55*time.Second)); err != nil {
		t.Errorf("a fresh token does not hold for most of its life: %v", err)
	}
}

func TestRotation(t *testing.T) {
	c := newClock()
	st := boltStore(t)
	s := newSigner(t, st, c, testKey(1))
	first := s.Keys().Keys
	if len(first) != 1 {
		t.Fatalf("first ring: %d keys, want 1", len(first))
	}
	old, _ := s.Assert(t.Context(), "10042", "alice", aud)

	// 23 h in, the next key is published but does not sign yet.
	c.Add(23 * time.Hour)
	if err := s.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Keys().Keys); n != 2 {
		t.Fatalf("after 23 h: %d keys published, want 2", n)
	}
	if kid := kidOf(t, mustAssert(t, s)); kid != first[0].Kid {
		t.Fatalf("the published next key signs before its overlap is over")
	}
	// Another instance (a verifier's cache) that loads now knows both.
	other := newSigner(t, st, c, testKey(1))
	if other.Version() != s.Version() {
		t.Fatalf("another instance loaded version %d, want %d", other.Version(), s.Version())
	}

	// At 24 h the new key signs; the old one is still published.
	c.Add(time.Hour)
	tok := mustAssert(t, s)
	if kidOf(t, tok) == first[0].Kid {
		t.Fatalf("the old key still signs after the rotation")
	}
	if kidOf(t, mustAssert(t, other)) != kidOf(t, tok) {
		t.Fatalf("two instances sign with different keys")
	}
	if n := len(s.Keys().Keys); n != 2 {
		t.Fatalf("just after rotating: %d keys, want 2", n)
	}
	if _, err := assertion.Verify(old, s.Keys(), aud, time.Unix(kidTime(t, old), 0)); err != nil {
		t.Fatalf("a token of the old key no longer verifies against the JWKS: %v", err)
	}
	// Once every token of the old key expired (TTL + Retain), it goes.
	c.Add(time.Minute + 10*time.Minute + time.Second)
	if err := s.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, k := range s.Keys().Keys {
		if k.Kid == first[0].Kid {
			t.Fatalf("the old key is still published after its tokens expired")
		}
	}
}

func mustAssert(t *testing.T, s *assertion.Signer) string {
	t.Helper()
	tok, err := s.Assert(t.Context(), "10042", "alice", aud)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	h, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	var v struct{ Kid string }
	if err := json.Unmarshal(h, &v); err != nil {
		t.Fatal(err)
	}
	return v.Kid
}

func kidTime(t *testing.T, tok string) int64 {
	t.Helper()
	b, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	var c assertion.Claims
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.IssuedAt
}

func TestWrongSecretsKeyRefused(t *testing.T) {
	c := newClock()
	st := boltStore(t)
	newSigner(t, st, c, testKey(1))
	c.Add(23 * time.Hour) // a rotation is due: it must not add a key sealed with key 2
	if _, err := assertion.New(t.Context(), assertion.Options{Store: st, SecretsKey: testKey(2), Now: c.Now}); err == nil {
		t.Fatal("an instance with another secrets key started")
	}
	ring, _ := st.SigningKeys(t.Context())
	if ring.Version != 1 || len(ring.Keys) != 1 {
		t.Fatalf("the ring changed: %+v", ring)
	}
	for _, k := range ring.Keys {
		if strings.Contains(k.Sealed, "PRIVATE") || !strings.HasPrefix(k.Sealed, "v1.") {
			t.Fatalf("a private key is not sealed: %q", k.Sealed)
		}
	}
}

func TestJWKSHandler(t *testing.T) {
	c := newClock()
	s := newSigner(t, boltStore(t), c, testKey(1))
	srv := httptest.NewServer(s.JWKS())
	defer srv.Close()
	resp, err := http.Get(srv.URL + assertion.JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set assertion.JWKS
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	if ct, cc := resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"); ct != "application/json" || cc != "public, max-age=300" {
		t.Errorf("Content-Type %q, Cache-Control %q", ct, cc)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("JWKS %+v", set)
	}
	k := set.Keys[0]
	if k.Kty != "EC" || k.Crv != "P-256" || k.Use != "sig" || k.Alg != "ES256" || k.Kid == "" {
		t.Errorf("key %+v", k)
	}
	if _, err := assertion.Verify(mustAssert(t, s), set, aud, c.Now()); err != nil {
		t.Errorf("a token does not verify against the served JWKS: %v", err)
	}
	post, err := http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", post.StatusCode)
	}
}

// TestFleetRotatesOnce has instances on one Redis refresh at once when a
// rotation is due: one installs the next key and all end with its ring.
func TestFleetRotatesOnce(t *testing.T) {
	srv := redistest.Start(t)
	c := newClock()
	const n = 4
	var signers []*assertion.Signer
	for range n {
		st, err := redisstore.Open(t.Context(), srv.URL(), redisstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		signers = append(signers, newSigner(t, st, c, testKey(7)))
	}
	for _, s := range signers[1:] {
		if s.Version() != 1 {
			t.Fatalf("instances made their own first keys: version %d", s.Version())
		}
	}
	c.Add(23 * time.Hour)
	var wg sync.WaitGroup
	for _, s := range signers {
		wg.Go(func() {
			if err := s.Refresh(t.Context()); err != nil {
				t.Errorf("Refresh: %v", err)
			}
		})
	}
	wg.Wait()
	want, _ := json.Marshal(signers[0].Keys())
	for i, s := range signers {
		got, _ := json.Marshal(s.Keys())
		if s.Version() != 2 || !bytes.Equal(got, want) {
			t.Errorf("instance %d: version %d, keys %s; want version 2, %s", i, s.Version(), got, want)
		}
	}
	c.Add(time.Hour)
	kid := kidOf(t, mustAssert(t, signers[0]))
	for i, s := range signers {
		tok := mustAssert(t, s)
		if kidOf(t, tok) != kid {
			t.Errorf("instance %d signs with another key", i)
		}
		if _, err := assertion.Verify(tok, signers[(i+1)%n].Keys(), aud, c.Now()); err != nil {
			t.Errorf("instance %d's token, checked with another's JWKS: %v", i, err)
		}
	}
}

// TestStoreDownAtStart: a signer whose store does not answer starts all
// the same, refuses to assert and serves no keys, and Run loads the ring
// once the store is back.
func TestStoreDownAtStart(t *testing.T) {
	srv := redistest.Start(t)
	st, err := redisstore.Open(t.Context(), srv.URL(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := assertion.New(ctx, assertion.Options{Store: st, SecretsKey: testKey(1), Reload: time.Hour})
	if err != nil {
		t.Fatalf("New with the store down: %v", err)
	}
	if tok, err := s.Assert(ctx, "10042", "alice", aud); err == nil {
		t.Fatalf("asserted %q with no keys", tok)
	}
	rec := httptest.NewRecorder()
	s.JWKS().ServeHTTP(rec, httptest.NewRequest("GET", assertion.JWKSPath, nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("JWKS with no keys: %d", rec.Code)
	}
	srv.Restart()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	for s.Version() == 0 {
		if ctx.Err() != nil {
			t.Fatal("Run did not load the ring once the store was back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := assertion.Verify(mustAssert(t, s), s.Keys(), aud, time.Now()); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
