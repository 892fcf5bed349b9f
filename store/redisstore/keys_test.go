package redisstore

import (
	"fmt"
	"strings"
	"testing"
)

// slot is Redis Cluster's key slot: CRC16 (XMODEM) of the hash tag, or of
// the whole key without one, modulo 16384.
func slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

func TestSlot(t *testing.T) {
	// Vectors from the Redis Cluster specification.
	for key, want := range map[string]int{
		"123456789":            0x31C3 % 16384,
		"{user1000}.following": slot("user1000"),
		"foo{}{bar}":           slot("foo{}{bar}"),
		"foo{{bar}}zap":        slot("{bar"),
	} {
		if got := slot(key); got != want {
			t.Errorf("slot(%q) = %d, want %d", key, got, want)
		}
	}
}

// TestAccountKeysShareASlot is what makes MULTI/EXEC work on a Cluster:
// every key one write touches, including its shard's feed, is in one slot.
func TestAccountKeysShareASlot(t *testing.T) {
	slots := map[int]int{}
	for i := range 500 {
		id := fmt.Sprintf("%d", 10000+i)
		if i%3 == 0 {
			id = fmt.Sprintf("studio-%d", i)
		}
		k := keysFor(id)
		all := []string{k.acct, k.rules, k.ruleID, k.users, k.usage, k.audit, k.accounts, k.feed, k.seq,
			k.session("0123abcd"), k.userSessions("alice"), k.userSessions(""),
			feedKey(k.shard), seqKey(k.shard), accountsKey(k.shard)}
		want := slot(all[0])
		for _, key := range all {
			if !strings.HasPrefix(key, fmt.Sprintf("gk:{gk:%02d}:", shardOf(id))) {
				t.Fatalf("key %q of account %s lacks its shard's hash tag", key, id)
			}
			if got := slot(key); got != want {
				t.Fatalf("key %q of account %s is in slot %d, its account key in %d", key, id, got, want)
			}
		}
		slots[want]++
	}
	// The 16 shards are 16 slots, so a Cluster can spread them.
	if len(slots) != shards {
		t.Fatalf("500 accounts landed in %d slots, want %d", len(slots), shards)
	}
}
