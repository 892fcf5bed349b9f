package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// The index of access reviews (policy.ReviewsDue) is an index (index.go),
// gk:{gk:NN}:reviews: member the account ID, followed by notedSuffix when
// its review is noted (policy.Account.ReviewNoted), score its ReviewDue.
// Every account is in it once: createAccount and commit write it in the
// MULTI/EXEC that writes the account. It is built from every account.
const (
	reviewsField = "reviews"
	notedSuffix  = "\x00noted"
)

func reviewsKey(shard int) string { return shardPrefix(shard) + "reviews" }

func (s *Store) reviewsIndex() index {
	return index{what: "reviews", field: reviewsField, name: "reviews", built: &s.reviewsBuilt,
		read: func(ctx context.Context, c redis.Cmdable, k keys) func() ([]string, error) {
			cmd := c.Get(ctx, k.acct)
			return func() ([]string, error) {
				v, err := cmd.Result()
				if errors.Is(err, redis.Nil) {
					return nil, nil
				}
				return []string{v}, err
			}
		},
		want:  wantedReview,
		watch: func(k keys) string { return k.acct },
	}
}

// reviewMember is a's member of the index, and the one it replaces.
func reviewMember(a policy.Account) (member, other string) {
	if a.ReviewNoted() {
		return a.ID + notedSuffix, a.ID
	}
	return a.ID, a.ID + notedSuffix
}

// indexAccount adds to p, inside the MULTI that writes a, its index
// writes.
func indexAccount(ctx context.Context, p redis.Pipeliner, k keys, a policy.Account) {
	m, other := reviewMember(a)
	p.ZRem(ctx, k.reviews, other)
	p.ZAdd(ctx, k.reviews, redis.Z{Member: m, Score: indexScore(a.ReviewDue())})
}

// wantedReview is the index entry of an account's JSON (none if absent).
func wantedReview(account string, data []string) (map[string]float64, error) {
	if len(data) == 0 {
		return nil, nil
	}
	var a policy.Account
	if err := json.Unmarshal([]byte(data[0]), &a); err != nil {
		return nil, fmt.Errorf("index reviews: decode account %s: %w", account, err)
	}
	m, _ := reviewMember(a)
	return map[string]float64{m: indexScore(a.ReviewDue())}, nil
}

// ReviewsDue implements policy.ReviewsDue.
func (s *Store) ReviewsDue(ctx context.Context, until time.Time) ([]policy.ReviewDue, error) {
	zs, err := s.rangeIndex(ctx, s.reviewsIndex(), until)
	if err != nil {
		return nil, err
	}
	out := make([]policy.ReviewDue, 0, len(zs))
	for _, z := range zs {
		m, _ := z.Member.(string)
		account, isNoted := strings.CutSuffix(m, notedSuffix)
		if strings.Contains(account, "\x00") {
			return nil, fmt.Errorf("read reviews: a malformed member %q", m)
		}
		out = append(out, policy.ReviewDue{Account: account, Due: indexDue(z.Score), Noted: isNoted})
	}
	slices.SortFunc(out, func(a, b policy.ReviewDue) int {
		if c := a.Due.Compare(b.Due); c != 0 {
			return c
		}
		return strings.Compare(a.Account, b.Account)
	})
	return out, nil
}
