package redisstore

import (
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TestLastDaysBuilt: a store written before the index existed (no
// lastdays field in gk:meta, no sets), or whose sets are behind its
// users, gets the index from its users on the first LastDays; and so does
// every Store on its first, for what an older version wrote meanwhile. On
// a Cluster too, where the sets are on the shards' slots.
func TestLastDaysBuilt(t *testing.T) {
	onStandaloneAndCluster(t, func(t *testing.T, url string) {
		s, err := Open(t.Context(), url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		ctx := t.Context()
		due := time.Date(2027, 3, 31, 16, 0, 0, 0, time.UTC)
		var want []policy.LastDay
		// Accounts on several shards.
		for _, id := range []string{"10042", "10043", "10044", "10045"} {
			create(t, s, id)
			err := s.Update(ctx, id, func(tx policy.Tx) error {
				if err := tx.PutUser(policy.User{Username: "anna", Active: true, AccessUntil: due}); err != nil {
					return err
				}
				return tx.PutUser(policy.User{Username: "bob", Active: true})
			})
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, policy.LastDay{Account: id, Username: "anna", Due: due})
		}
		// As a store before the index: no marker, no sets; and an
		// entry for a user who is not there.
		if err := s.client.HDel(ctx, metaKey, lastDaysField).Err(); err != nil {
			t.Fatal(err)
		}
		for sh := range shards {
			if err := s.client.Del(ctx, lastDaysKey(sh)).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.client.ZAdd(ctx, keysFor("10043").lastDays, redisZ(lastDayMember("10043", "carl"), 1)).Err(); err != nil {
			t.Fatal(err)
		}
		got, err := s.LastDays(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("last days built: %+v, want %+v", got, want)
		}
		if v, err := s.client.HGet(ctx, metaKey, lastDaysField).Result(); err != nil || v != "1" {
			t.Fatalf("marker after the build: %q, %v", v, err)
		}

		// An instance of the older version sets a last day, without
		// the index: the next instance to start mends it.
		if err := s.client.ZRem(ctx, keysFor("10044").lastDays, lastDayMember("10044", "anna")).Err(); err != nil {
			t.Fatal(err)
		}
		next, err := Open(ctx, url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { next.Close() })
		if got, err = next.LastDays(ctx, time.Time{}); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("last days after a start: %+v (%v), want %+v", got, err, want)
		}
	})
}

func redisZ(member string, score float64) redis.Z { return redis.Z{Member: member, Score: score} }
