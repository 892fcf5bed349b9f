package assertion_test

// This file is the README's application snippet ("Web applications: who
// is signed in"), kept here so that it compiles and runs; TestREADMEShowsApp
// checks the README quotes it unchanged. Standard library only.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Keys holds the listener's JWKS, fetched again when a token names a key
// it does not know (after a rotation), at most once a minute.
type Keys struct {
	URL     string // https://app.example.com/.well-known/gatekeeper/jwks.json
	mu      sync.Mutex
	keys    map[string]*ecdsa.PublicKey
	fetched time.Time
}

func (k *Keys) key(kid string) (*ecdsa.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if pub, ok := k.keys[kid]; ok || time.Since(k.fetched) < time.Minute {
		return pub, nil
	}
	k.fetched = time.Now()
	resp, err := http.Get(k.URL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct{ Kid, Kty, Crv, X, Y string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return nil, err
	}
	k.keys = map[string]*ecdsa.PublicKey{}
	for _, j := range set.Keys {
		x, _ := base64.RawURLEncoding.DecodeString(j.X)
		y, _ := base64.RawURLEncoding.DecodeString(j.Y)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err == nil && j.Kty == "EC" && j.Crv == "P-256" && len(x) == 32 && len(y) == 32 {
			k.keys[j.Kid] = pub
		}
	}
	return k.keys[kid], nil
}

// WhoIs returns the user and account of a request gatekeeper passed to
// the application at audience (e.g. "https://app.example.com").
func WhoIs(r *http.Request, keys *Keys, audience string) (user, account string, err error) {
	parts := strings.Split(r.Header.Get("Gatekeeper-Assertion"), ".")
	if len(parts) != 3 {
		return "", "", errors.New("no assertion")
	}
	var h struct{ Alg, Kid string }
	var c struct {
		Sub, Aud string
		Account  string `json:"gatekeeper_account"`
		Exp, Nbf int64
	}
	head, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	body, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || len(sig) != 64 || json.Unmarshal(head, &h) != nil || h.Alg != "ES256" {
		return "", "", errors.New("malformed assertion")
	}
	pub, err := keys.key(h.Kid)
	if err != nil || pub == nil {
		return "", "", errors.New("unknown key")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return "", "", errors.New("bad signature")
	}
	now := time.Now().Unix()
	if json.Unmarshal(body, &c) != nil || c.Aud != audience || now >= c.Exp+5 || now < c.Nbf-5 {
		return "", "", errors.New("assertion not for this application, or expired")
	}
	return c.Sub, c.Account, nil
}
