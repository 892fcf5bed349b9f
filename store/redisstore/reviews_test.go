package redisstore

import (
	"reflect"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TestReviewsBuilt: a store written before the index of reviews existed
// (no reviews field in gk:meta, no sets), or whose sets are behind its
// accounts, gets the index from its accounts on the first ReviewsDue; and
// so does every Store on its first, for what an older version wrote
// meanwhile. On a Cluster too, where the sets are on the shards' slots.
func TestReviewsBuilt(t *testing.T) {
	onStandaloneAndCluster(t, func(t *testing.T, url string) {
		s, err := Open(t.Context(), url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		ctx := t.Context()
		created := time.Date(2027, 3, 31, 16, 0, 0, 0, time.UTC)
		due := created.Add(policy.DefaultReviewEvery)
		var want []policy.ReviewDue
		// Accounts on several shards; one review noted.
		for i, id := range []string{"10042", "10043", "10044", "10045"} {
			a := policy.Account{ID: id, Mode: policy.ModeOn, CreatedAt: created}
			if i == 1 {
				a.ReviewOverdueFor = a.ReviewDue()
			}
			if err := s.CreateAccount(ctx, a, policy.AuditEntry{Action: "account.create"}); err != nil {
				t.Fatal(err)
			}
			want = append(want, policy.ReviewDue{Account: id, Due: due, Noted: i == 1})
		}
		// As a store before the index: no marker, no sets; and an
		// entry of an account that is not there, and a stale one.
		if err := s.client.HDel(ctx, metaKey, reviewsField).Err(); err != nil {
			t.Fatal(err)
		}
		for sh := range shards {
			if err := s.client.Del(ctx, reviewsKey(sh)).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.client.ZAdd(ctx, keysFor("10046").reviews, redisZ("10046", 1)).Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.client.ZAdd(ctx, keysFor("10043").reviews, redisZ("10043", 1)).Err(); err != nil {
			t.Fatal(err)
		}
		got, err := s.ReviewsDue(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("reviews built: %+v, want %+v", got, want)
		}
		if v, err := s.client.HGet(ctx, metaKey, reviewsField).Result(); err != nil || v != "1" {
			t.Fatalf("marker after the build: %q, %v", v, err)
		}

		// An instance of the older version finishes a review without
		// the index: the next instance to start mends it.
		if err := s.client.ZAdd(ctx, keysFor("10044").reviews, redisZ("10044", 1)).Err(); err != nil {
			t.Fatal(err)
		}
		next, err := Open(ctx, url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { next.Close() })
		if got, err = next.ReviewsDue(ctx, time.Time{}); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("reviews after a start: %+v (%v), want %+v", got, err, want)
		}
	})
}
