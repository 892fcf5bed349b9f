package assertion

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// KeyStore is what the Signer needs of the store: the fleet's key ring.
type KeyStore interface {
	SigningKeys(ctx context.Context) (policy.KeyRing, error)
	SwapSigningKeys(ctx context.Context, old int64, keys []policy.SigningKey) (bool, error)
}

// ring is one loaded, opened key ring: immutable once built.
type ring struct {
	version int64
	keys    []openKey // sorted by ActiveAt
	jwks    []byte    // the JWKS document
	loaded  time.Time
}

type openKey struct {
	policy.SigningKey
	priv *ecdsa.PrivateKey
}

// current is the key that signs at now: the latest active one.
func (r *ring) current(now time.Time) *openKey {
	var cur *openKey
	if r == nil {
		return nil
	}
	for i := range r.keys {
		if !r.keys[i].ActiveAt.After(now) {
			cur = &r.keys[i]
		}
	}
	return cur
}

func keyOwner(id string) string { return "assertion-key/" + id }

// open opens a stored ring with the sealer.
func (s *Signer) open(st policy.KeyRing, now time.Time) (*ring, error) {
	r := &ring{version: st.Version, loaded: now}
	var set JWKS
	for _, k := range st.Keys {
		der, err := s.sealer.Open(k.Sealed, keyOwner(k.ID))
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", k.ID, err)
		}
		pk, err := x509.ParsePKCS8PrivateKey([]byte(der))
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", k.ID, err)
		}
		priv, ok := pk.(*ecdsa.PrivateKey)
		if !ok || priv.Curve != elliptic.P256() {
			return nil, fmt.Errorf("signing key %s: not a P-256 key", k.ID)
		}
		j, err := publicJWK(k.ID, &priv.PublicKey)
		if err != nil {
			return nil, err
		}
		set.Keys = append(set.Keys, j)
		r.keys = append(r.keys, openKey{SigningKey: k, priv: priv})
	}
	slices.SortStableFunc(r.keys, func(a, b openKey) int { return a.ActiveAt.Compare(b.ActiveAt) })
	var err error
	if r.jwks, err = marshalJWKS(set); err != nil {
		return nil, err
	}
	return r, nil
}

// plan is the ring that should be stored at now, and whether it differs
// from keys: a first key when there is none; the next key, published
// Overlap before it becomes current, once the current one has signed for
// Rotation-Overlap; keys whose successor became current more than
// TTL+Retain ago dropped.
func (s *Signer) plan(keys []policy.SigningKey, now time.Time) ([]policy.SigningKey, bool, error) {
	keys = slices.Clone(keys)
	slices.SortStableFunc(keys, func(a, b policy.SigningKey) int { return a.ActiveAt.Compare(b.ActiveAt) })
	changed := false
	// Drop keys that no longer sign and whose tokens have all expired.
	for len(keys) > 1 && !keys[1].ActiveAt.After(now.Add(-s.o.TTL-s.o.Retain)) {
		keys = keys[1:]
		changed = true
	}
	if len(keys) == 0 || keys[0].ActiveAt.After(now) {
		// No key signs yet (first start, or a ring from a fast clock).
		k, err := s.newKey(now, now)
		if err != nil {
			return nil, false, err
		}
		return append([]policy.SigningKey{k}, keys...), true, nil
	}
	last := keys[len(keys)-1]
	if !last.ActiveAt.After(now) && !now.Before(last.ActiveAt.Add(s.o.Rotation-s.o.Overlap)) {
		at := last.ActiveAt.Add(s.o.Rotation)
		if at.Before(now.Add(s.o.Overlap)) {
			at = now.Add(s.o.Overlap)
		}
		k, err := s.newKey(now, at)
		if err != nil {
			return nil, false, err
		}
		keys = append(keys, k)
		changed = true
	}
	return keys, changed, nil
}

func (s *Signer) newKey(now, active time.Time) (policy.SigningKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return policy.SigningKey{}, fmt.Errorf("make a signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return policy.SigningKey{}, fmt.Errorf("encode a signing key: %w", err)
	}
	id := make([]byte, 12)
	rand.Read(id)
	kid := base64.RawURLEncoding.EncodeToString(id)
	return policy.SigningKey{ID: kid, Sealed: s.sealer.Seal(string(der), keyOwner(kid)), PublishedAt: now, ActiveAt: active}, nil
}

// Refresh reloads the ring from the store and, when it is due, rotates
// it: a compare-and-set on the ring's version, so that of instances
// rotating at once one wins and the others load the winner's ring. Run
// calls it every Reload; New calls it once.
func (s *Signer) Refresh(ctx context.Context) error {
	for range 5 {
		now := s.o.Now()
		st, err := s.o.Store.SigningKeys(ctx)
		if err != nil {
			return fmt.Errorf("load signing keys: %w", err)
		}
		// Open the stored ring before changing it: an instance with
		// another secrets key must not add a key the fleet cannot open.
		r := s.ring.Load()
		if r == nil || r.version != st.Version {
			if r, err = s.open(st, now); err != nil {
				return err
			}
		}
		keys, changed, err := s.plan(st.Keys, now)
		if err != nil {
			return err
		}
		if changed {
			ok, err := s.o.Store.SwapSigningKeys(ctx, st.Version, keys)
			if err != nil {
				return fmt.Errorf("rotate signing keys: %w", err)
			}
			if !ok {
				continue // another instance rotated: load its ring
			}
			if r, err = s.open(policy.KeyRing{Keys: keys, Version: st.Version + 1}, now); err != nil {
				return err
			}
			s.o.Logger.Info("rotated the assertion signing keys", zap.Int64("version", r.version), zap.Int("keys", len(keys)))
		}
		s.publish(r)
		return nil
	}
	return errors.New("rotate signing keys: the ring kept changing under us")
}

// publish makes r the loaded ring unless a concurrent Refresh already
// loaded a later version.
func (s *Signer) publish(r *ring) {
	for {
		cur := s.ring.Load()
		if cur != nil && cur.version > r.version {
			return
		}
		if s.ring.CompareAndSwap(cur, r) {
			return
		}
	}
}
