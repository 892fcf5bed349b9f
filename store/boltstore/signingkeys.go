package boltstore

import (
	"context"
	"encoding/json"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// The signing key ring lives, made on first use, in the root bucket
// signing-keys under "ring": {"version": N, "keys": [...]}.
var (
	bSigningKeys = []byte("signing-keys")
	kRing        = []byte("ring")
)

type ringRecord struct {
	Version int64               `json:"version"`
	Keys    []policy.SigningKey `json:"keys"`
}

func readRing(tx *bbolt.Tx) (policy.KeyRing, error) {
	b := tx.Bucket(bSigningKeys)
	if b == nil {
		return policy.KeyRing{}, nil
	}
	v := b.Get(kRing)
	if v == nil {
		return policy.KeyRing{}, nil
	}
	var rec ringRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return policy.KeyRing{}, fmt.Errorf("decode signing keys: %w", err)
	}
	return policy.KeyRing{Keys: rec.Keys, Version: rec.Version}, nil
}

// SigningKeys implements policy.SigningKeys.
func (s *Store) SigningKeys(ctx context.Context) (policy.KeyRing, error) {
	var ring policy.KeyRing
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		ring, err = readRing(tx)
		return err
	})
	return ring, unavailable("read signing keys", err)
}

// SwapSigningKeys implements policy.SigningKeys.
func (s *Store) SwapSigningKeys(ctx context.Context, old int64, keys []policy.SigningKey) (bool, error) {
	if err := s.lock(ctx); err != nil {
		return false, err
	}
	defer s.unlock()
	var ok bool
	err := s.db.Update(func(tx *bbolt.Tx) error {
		ring, err := readRing(tx)
		if err != nil {
			return err
		}
		if ring.Version != old {
			return nil
		}
		b, err := tx.CreateBucketIfNotExists(bSigningKeys)
		if err != nil {
			return err
		}
		ok = true
		return putJSON(b, kRing, ringRecord{Version: old + 1, Keys: keys})
	})
	return ok, unavailable("store signing keys", err)
}
