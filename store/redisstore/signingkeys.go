package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// signingKeysKey is a hash: version -> N, keys -> JSON list of keys.
const signingKeysKey = "gk:signing-keys"

// swapRingScript replaces the ring if its version is still ARGV[1].
// KEYS: the ring. ARGV: old version, keys JSON.
const swapRingScript = `
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', v + 1, 'keys', ARGV[2])
return 1`

// SigningKeys implements policy.SigningKeys.
func (s *Store) SigningKeys(ctx context.Context) (policy.KeyRing, error) {
	vals, err := s.client.HMGet(ctx, signingKeysKey, "version", "keys").Result()
	if errors.Is(err, redis.Nil) {
		return policy.KeyRing{}, nil
	}
	if err != nil {
		return policy.KeyRing{}, wrap("read signing keys", err)
	}
	ver, _ := vals[0].(string)
	raw, _ := vals[1].(string)
	if ver == "" {
		return policy.KeyRing{}, nil
	}
	var ring policy.KeyRing
	if ring.Version, err = strconv.ParseInt(ver, 10, 64); err != nil {
		return policy.KeyRing{}, fmt.Errorf("decode signing keys version: %w", err)
	}
	if err := json.Unmarshal([]byte(raw), &ring.Keys); err != nil {
		return policy.KeyRing{}, fmt.Errorf("decode signing keys: %w", err)
	}
	return ring, nil
}

// SwapSigningKeys implements policy.SigningKeys.
func (s *Store) SwapSigningKeys(ctx context.Context, old int64, keys []policy.SigningKey) (bool, error) {
	b, err := json.Marshal(keys)
	if err != nil {
		return false, fmt.Errorf("encode signing keys: %w", err)
	}
	n, err := s.client.Eval(ctx, swapRingScript, []string{signingKeysKey}, old, b).Int()
	if err != nil {
		return false, wrap("store signing keys", err)
	}
	return n == 1, nil
}
