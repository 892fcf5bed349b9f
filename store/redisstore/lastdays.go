package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// The index of pending last days (policy.LastDays) is an index (index.go),
// gk:{gk:NN}:lastdays: member account+"\x00"+username, score the user's
// AccessUntil, for the users with LastDayPending. commit writes it in the
// MULTI/EXEC that writes the users; it is built from every account's users.
const lastDaysField = "lastdays"

func lastDaysKey(shard int) string { return shardPrefix(shard) + "lastdays" }

func lastDayMember(account, username string) string { return account + "\x00" + username }

func (s *Store) lastDaysIndex() index {
	return index{what: "last days", field: lastDaysField, name: "lastdays", built: &s.lastDaysBuilt,
		read: func(ctx context.Context, c redis.Cmdable, k keys) func() ([]string, error) {
			return c.HVals(ctx, k.users).Result
		},
		want:  wantedLastDays,
		watch: func(k keys) string { return k.users },
	}
}

// indexUsers adds to p, inside the transaction's MULTI, the index writes
// for the users it puts.
func indexUsers(ctx context.Context, p redis.Pipeliner, k keys, users map[string]policy.User) {
	var rem []any
	var add []redis.Z
	for name, u := range users {
		if u.LastDayPending() {
			add = append(add, redis.Z{Member: lastDayMember(k.id, name), Score: indexScore(u.AccessUntil)})
		} else {
			rem = append(rem, lastDayMember(k.id, name))
		}
	}
	if len(rem) > 0 {
		p.ZRem(ctx, k.lastDays, rem...)
	}
	if len(add) > 0 {
		p.ZAdd(ctx, k.lastDays, add...)
	}
}

// LastDays implements policy.LastDays.
func (s *Store) LastDays(ctx context.Context, until time.Time) ([]policy.LastDay, error) {
	zs, err := s.rangeIndex(ctx, s.lastDaysIndex(), until)
	if err != nil {
		return nil, err
	}
	var out []policy.LastDay
	for _, z := range zs {
		m, _ := z.Member.(string)
		account, username, ok := strings.Cut(m, "\x00")
		if !ok {
			return nil, fmt.Errorf("read last days: a malformed member %q", m)
		}
		out = append(out, policy.LastDay{Account: account, Username: username, Due: indexDue(z.Score)})
	}
	slices.SortFunc(out, func(a, b policy.LastDay) int {
		if c := a.Due.Compare(b.Due); c != 0 {
			return c
		}
		if c := strings.Compare(a.Account, b.Account); c != 0 {
			return c
		}
		return strings.Compare(a.Username, b.Username)
	})
	return out, nil
}

// wantedLastDays is the index entries of an account's users.
func wantedLastDays(account string, users []string) (map[string]float64, error) {
	want := map[string]float64{}
	for _, v := range users {
		var u policy.User
		if err := json.Unmarshal([]byte(v), &u); err != nil {
			return nil, fmt.Errorf("index last days: decode a user of %s: %w", account, err)
		}
		if u.LastDayPending() {
			want[lastDayMember(account, u.Username)] = indexScore(u.AccessUntil)
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	return want, nil
}
