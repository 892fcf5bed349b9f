// Package assertion signs the assertions an http listener sends the
// application behind it in the Gatekeeper-Assertion header: a short-lived
// JWT (ES256) naming the user, the account and the route, and publishes
// the keys that verify it as a JWKS (/.well-known/gatekeeper/jwks.json).
//
// The keys are a ring in the store, their private halves sealed with the
// operator's secrets key, so that every instance of a fleet signs with
// and publishes the same keys. A new key is published Overlap before it
// becomes the one that signs, every Rotation; an old key stays published
// until every assertion it signed has expired. Verify is the reference
// check an application makes (see the README and Example).
//
//	s, err := assertion.New(ctx, assertion.Options{Store: st, SecretsKey: key})
//	go s.Run(ctx)
//	tok, err := s.Assert(ctx, "10042", "alice", "https://app.example.com")
//	mux.Handle(assertion.JWKSPath, s.JWKS())
package assertion

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/internal/seal"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Header is the request header that carries the assertion upstream.
const Header = "Gatekeeper-Assertion"

// JWKSPath is where a listener publishes the verification keys.
const JWKSPath = "/.well-known/gatekeeper/jwks.json"

// Options configure a Signer. Store and SecretsKey are required; every
// other zero value means the default.
type Options struct {
	// Store holds the key ring (policy.Store satisfies it).
	Store KeyStore
	// SecretsKey (32 bytes, admin.SecretsKey) seals the private keys.
	SecretsKey []byte
	// Issuer is the iss claim. If empty, "gatekeeper".
	Issuer string
	// TTL is how long an assertion holds. If zero, 60 s.
	TTL time.Duration
	// Rotation is how long a key signs before the next takes over. If
	// zero, 24 h.
	Rotation time.Duration
	// Overlap is how long a key is published before it signs, so that
	// verifiers that cached the JWKS know it. If zero, 1 h; at most half
	// of Rotation.
	Overlap time.Duration
	// Retain is how long a key stays published after its last assertion
	// expired. If zero, 10 min.
	Retain time.Duration
	// Reload is how often Run reloads the ring and rotates it when due.
	// If zero, 1 min.
	Reload time.Duration
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// Logger; if nil, nothing is logged.
	Logger *zap.Logger
}

// Signer signs assertions with the fleet's current key. It is safe for
// concurrent use.
type Signer struct {
	o      Options
	sealer *seal.Sealer
	ring   atomic.Pointer[ring]

	mu    sync.Mutex
	cache map[cacheKey]cached
}

type cacheKey struct{ account, user, audience string }

type cached struct {
	token   string
	kid     string
	renewAt time.Time
}

// maxCached bounds the token cache; past it the cache starts afresh.
const maxCached = 10000

// New makes a Signer and loads the ring, making the first key if the
// store has none.
func New(ctx context.Context, o Options) (*Signer, error) {
	if o.Store == nil {
		return nil, errors.New("assertion: no store")
	}
	sl, err := seal.New(o.SecretsKey)
	if err != nil {
		return nil, fmt.Errorf("assertion: %w", err)
	}
	if o.Issuer == "" {
		o.Issuer = "gatekeeper"
	}
	if o.TTL <= 0 {
		o.TTL = time.Minute
	}
	if o.Rotation <= 0 {
		o.Rotation = 24 * time.Hour
	}
	if o.Overlap <= 0 {
		o.Overlap = time.Hour
	}
	if o.Overlap > o.Rotation/2 {
		o.Overlap = o.Rotation / 2
	}
	if o.Retain <= 0 {
		o.Retain = 10 * time.Minute
	}
	if o.Reload <= 0 {
		o.Reload = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	s := &Signer{o: o, sealer: sl, cache: make(map[cacheKey]cached)}
	if err := s.Refresh(ctx); err != nil {
		if !errors.Is(err, policy.ErrUnavailable) {
			return nil, err
		}
		// A store that is down at start must not stop the proxy: Run
		// loads the ring once it answers; until then Assert fails.
		o.Logger.Warn("the assertion signing keys cannot be loaded yet", zap.Error(err))
	}
	return s, nil
}

// Run reloads the ring every Reload, rotating it when due, until ctx
// ends; then it returns nil. A failed reload is logged and the loaded
// ring kept.
func (s *Signer) Run(ctx context.Context) error {
	for {
		wait := s.o.Reload
		if s.ring.Load() == nil {
			wait = min(wait, time.Second) // not loaded yet: try again soon
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if err := s.Refresh(ctx); err != nil && ctx.Err() == nil {
			s.o.Logger.Warn("reload the assertion signing keys", zap.Error(err))
		}
	}
}

// Assert returns an assertion that user ("" for the master, named
// MasterSubject) of account is being served by the route audience (its
// URL, e.g. "https://app.example.com"). A token is reused for the first
// half of its life, so that most requests cost a map lookup.
func (s *Signer) Assert(ctx context.Context, account, user, audience string) (string, error) {
	if account == "" || audience == "" {
		return "", errors.New("assertion: account and audience are required")
	}
	now := s.o.Now()
	cur := s.ring.Load().current(now)
	if cur == nil {
		// Not loaded yet (the store was down at start): try now.
		if err := s.Refresh(ctx); err != nil {
			return "", fmt.Errorf("assertion: no signing key: %w", err)
		}
		if cur = s.ring.Load().current(now); cur == nil {
			return "", errors.New("assertion: no signing key is current")
		}
	}
	k := cacheKey{account, user, audience}
	s.mu.Lock()
	c, ok := s.cache[k]
	s.mu.Unlock()
	if ok && now.Before(c.renewAt) && c.kid == cur.ID {
		return c.token, nil
	}
	tok, err := s.sign(cur, account, user, audience, now)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	if len(s.cache) >= maxCached {
		clear(s.cache)
	}
	s.cache[k] = cached{token: tok, kid: cur.ID, renewAt: now.Add(s.o.TTL / 2)}
	s.mu.Unlock()
	return tok, nil
}

func (s *Signer) sign(k *openKey, account, user, audience string, now time.Time) (string, error) {
	sub := user
	if sub == "" {
		sub = MasterSubject
	}
	jti := make([]byte, 12)
	rand.Read(jti)
	head, err := json.Marshal(header{Alg: "ES256", Typ: "JWT", Kid: k.ID})
	if err != nil {
		return "", fmt.Errorf("assertion header: %w", err)
	}
	body, err := json.Marshal(Claims{
		Issuer: s.o.Issuer, Subject: sub, Account: account, Audience: audience,
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expires: now.Add(s.o.TTL).Unix(),
		ID: base64.RawURLEncoding.EncodeToString(jti),
	})
	if err != nil {
		return "", fmt.Errorf("assertion claims: %w", err)
	}
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, enc.EncodedLen(len(head))+enc.EncodedLen(len(body))+enc.EncodedLen(64)+2)
	buf = enc.AppendEncode(buf, head)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, body)
	digest := sha256.Sum256(buf)
	rr, ss, err := ecdsa.Sign(rand.Reader, k.priv, digest[:])
	if err != nil {
		return "", fmt.Errorf("sign assertion: %w", err)
	}
	var sig [64]byte
	rr.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig[:])
	return string(buf), nil
}

// Keys is the published key set as loaded; empty until the ring is.
func (s *Signer) Keys() JWKS {
	var set JWKS
	if r := s.ring.Load(); r != nil {
		_ = json.Unmarshal(r.jwks, &set) // made by marshalJWKS
	}
	return set
}

// Version is the loaded ring's version in the store (0 before it is
// loaded), for tests and logs.
func (s *Signer) Version() int64 {
	if r := s.ring.Load(); r != nil {
		return r.version
	}
	return 0
}

func marshalJWKS(set JWKS) ([]byte, error) {
	if set.Keys == nil {
		set.Keys = []JWK{}
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("encode JWKS: %w", err)
	}
	return b, nil
}

// jwksMaxAge is the Cache-Control max-age of the JWKS: far shorter than
// Overlap, so that a verifier's cached copy knows the next key.
const jwksMaxAge = 5 * time.Minute

// JWKS serves the published keys (GET or HEAD) as application/json.
func (s *Signer) JWKS() http.Handler {
	maxAge := "public, max-age=" + strconv.Itoa(int(min(jwksMaxAge, s.o.Overlap/2)/time.Second))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		rg := s.ring.Load()
		if rg == nil {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "signing keys not loaded yet", http.StatusServiceUnavailable)
			return
		}
		b := rg.jwks
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", maxAge)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Length", strconv.Itoa(len(b)))
		if r.Method == http.MethodGet {
			w.Write(b)
		}
	})
}
