package assertion

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Claims are what an assertion says.
type Claims struct {
	Issuer string `json:"iss"`
	// Subject is the username, or "master" for the account's master (a
	// name no user can have).
	Subject  string `json:"sub"`
	Account  string `json:"gatekeeper_account"`
	Audience string `json:"aud"`
	IssuedAt int64  `json:"iat"`
	// NotBefore and Expires bound when the assertion holds (Unix seconds).
	NotBefore int64  `json:"nbf"`
	Expires   int64  `json:"exp"`
	ID        string `json:"jti"`
}

// MasterSubject is the Subject of an assertion about an account's master.
const MasterSubject = "master"

// JWKS is a JSON Web Key Set (RFC 7517) of P-256 verification keys.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// JWK is one public key.
type JWK struct {
	Kty string `json:"kty"` // "EC"
	Crv string `json:"crv"` // "P-256"
	X   string `json:"x"`   // base64url, 32 bytes
	Y   string `json:"y"`   // base64url, 32 bytes
	Kid string `json:"kid"`
	Use string `json:"use"` // "sig"
	Alg string `json:"alg"` // "ES256"
}

// Leeway is the clock skew Verify allows on nbf and exp.
const Leeway = 5 * time.Second

// Verify checks token as an application should: the header's alg must be
// ES256 and its kid one of keys, the signature a 64-byte r||s that P-256
// accepts over the signing input, aud must be audience, and now must lie
// within nbf and exp (Leeway allowed). Anything else is refused.
func Verify(token string, keys JWKS, audience string, now time.Time) (Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Claims{}, errors.New("assertion: not a compact JWS of three parts")
	}
	head, err := decodeSegment(parts[0])
	if err != nil {
		return Claims{}, fmt.Errorf("assertion header: %w", err)
	}
	var h header
	if err := strictJSON(head, &h); err != nil {
		return Claims{}, fmt.Errorf("assertion header: %w", err)
	}
	if h.Alg != "ES256" {
		return Claims{}, fmt.Errorf("assertion: alg %q refused, want ES256", h.Alg)
	}
	if h.Typ != "" && h.Typ != "JWT" {
		return Claims{}, fmt.Errorf("assertion: typ %q refused", h.Typ)
	}
	pub, err := keys.key(h.Kid)
	if err != nil {
		return Claims{}, err
	}
	sig, err := decodeSegment(parts[2])
	if err != nil || len(sig) != 64 {
		return Claims{}, errors.New("assertion: signature is not 64 bytes of base64url")
	}
	digest := sha256.Sum256([]byte(token[:len(parts[0])+1+len(parts[1])]))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, digest[:], r, s) {
		return Claims{}, errors.New("assertion: bad signature")
	}
	body, err := decodeSegment(parts[1])
	if err != nil {
		return Claims{}, fmt.Errorf("assertion claims: %w", err)
	}
	var c Claims
	if err := json.Unmarshal(body, &c); err != nil {
		return Claims{}, fmt.Errorf("assertion claims: %w", err)
	}
	if c.Audience == "" || c.Audience != audience {
		return Claims{}, fmt.Errorf("assertion: audience %q, want %q", c.Audience, audience)
	}
	t := now.Unix()
	if c.Expires == 0 || t >= c.Expires+int64(Leeway/time.Second) {
		return Claims{}, errors.New("assertion: expired")
	}
	if t < c.NotBefore-int64(Leeway/time.Second) {
		return Claims{}, errors.New("assertion: not valid yet")
	}
	if c.Subject == "" || c.Account == "" {
		return Claims{}, errors.New("assertion: no subject or account")
	}
	return c, nil
}

type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

// decodeSegment decodes base64url without padding, refusing padding and
// any other alphabet.
func decodeSegment(s string) ([]byte, error) {
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

// strictJSON decodes one JSON object, refusing unknown fields, so that a
// header with crit, jku, x5u or the like is not half understood. (Claims
// are decoded leniently: a later version may add some.)
func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

func (k JWKS) key(kid string) (*ecdsa.PublicKey, error) {
	if kid == "" {
		return nil, errors.New("assertion: no kid")
	}
	for _, j := range k.Keys {
		if j.Kid != kid {
			continue
		}
		return j.PublicKey()
	}
	return nil, fmt.Errorf("assertion: unknown kid %q", kid)
}

// PublicKey is the key j describes; an error unless it is a P-256 ES256
// signing key on the curve.
func (j JWK) PublicKey() (*ecdsa.PublicKey, error) {
	if j.Kty != "EC" || j.Crv != "P-256" || (j.Alg != "" && j.Alg != "ES256") || (j.Use != "" && j.Use != "sig") {
		return nil, fmt.Errorf("assertion: key %q is not an ES256 P-256 signing key", j.Kid)
	}
	x, errX := decodeSegment(j.X)
	y, errY := decodeSegment(j.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		return nil, fmt.Errorf("assertion: key %q: x and y must be 32 bytes of base64url", j.Kid)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		return nil, fmt.Errorf("assertion: key %q: %w", j.Kid, err)
	}
	return pub, nil
}

// publicJWK describes pub.
func publicJWK(kid string, pub *ecdsa.PublicKey) (JWK, error) {
	b, err := pub.Bytes()
	if err != nil || len(b) != 65 {
		return JWK{}, fmt.Errorf("key %s: not a P-256 public key", kid)
	}
	enc := base64.RawURLEncoding
	return JWK{Kty: "EC", Crv: "P-256", X: enc.EncodeToString(b[1:33]), Y: enc.EncodeToString(b[33:]), Kid: kid, Use: "sig", Alg: "ES256"}, nil
}
