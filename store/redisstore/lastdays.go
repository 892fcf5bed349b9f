package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// The index of pending last days (policy.LastDays) is one sorted set per
// shard, gk:{gk:NN}:lastdays: member account+"\x00"+username, score the
// due time in unix ms (policy.LastDayDue). It is in the shard's slot, so
// that commit writes it in the MULTI/EXEC that writes the user, on a
// Cluster too; LastDays reads the 16 sets.
//
// The index is built from every account's users (buildLastDays) by the
// first LastDays call of each Store, and by any call that finds no
// lastdays field in gk:meta: a store written before the index existed, or
// restored from a backup (whose sets were read apart from the users, so
// may be behind them; Restore leaves the field out). Once per Store, not
// once per Redis, because during a rolling upgrade an instance of the
// older version still writes users without the index: the instance
// started last, after the last older one stopped, mends what they wrote.
// It reads every account's users in pipelines, once per start. Building
// is safe alongside writers and other instances building: an account
// whose entries differ is fixed in a transaction watching its users.
const lastDaysField = "lastdays"

func lastDaysKey(shard int) string { return shardPrefix(shard) + "lastdays" }

func lastDayMember(account, username string) string { return account + "\x00" + username }

func lastDayScore(u policy.User) float64 {
	return float64(policy.LastDayDue(u.AccessUntil).UnixMilli())
}

// indexUsers adds to p, inside the transaction's MULTI, the index writes
// for the users it puts.
func indexUsers(ctx context.Context, p redis.Pipeliner, k keys, users map[string]policy.User) {
	var rem []any
	var add []redis.Z
	for name, u := range users {
		if u.LastDayPending() {
			add = append(add, redis.Z{Member: lastDayMember(k.id, name), Score: lastDayScore(u)})
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
	if err := s.ensureLastDays(ctx); err != nil {
		return nil, err
	}
	maxScore := "+inf"
	if !until.IsZero() {
		maxScore = strconv.FormatInt(until.UnixMilli(), 10)
	}
	cmds := make([]*redis.ZSliceCmd, shards)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for sh := range shards {
			cmds[sh] = p.ZRangeByScoreWithScores(ctx, lastDaysKey(sh), &redis.ZRangeBy{Min: "-inf", Max: maxScore})
		}
		return nil
	})
	if err != nil {
		return nil, wrap("read last days", err)
	}
	var out []policy.LastDay
	for _, c := range cmds {
		for _, z := range c.Val() {
			m, _ := z.Member.(string)
			account, username, ok := strings.Cut(m, "\x00")
			if !ok {
				return nil, fmt.Errorf("read last days: a malformed member %q", m)
			}
			out = append(out, policy.LastDay{Account: account, Username: username, Due: time.UnixMilli(int64(z.Score)).UTC()})
		}
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

// ensureLastDays builds the index unless this Store built it and gk:meta
// says it is built. A store with no generation holds no users, and is left
// to be asked again.
func (s *Store) ensureLastDays(ctx context.Context) error {
	vals, err := s.client.HMGet(ctx, metaKey, genField, lastDaysField).Result()
	if err != nil {
		return wrap("read last days", err)
	}
	if vals[0] == nil || (vals[1] != nil && s.lastDaysBuilt.Load()) {
		return nil
	}
	for sh := range shards {
		if err := s.buildLastDays(ctx, sh); err != nil {
			return err
		}
	}
	if err := s.client.HSet(ctx, metaKey, lastDaysField, "1").Err(); err != nil {
		return wrap("read last days", err)
	}
	s.lastDaysBuilt.Store(true)
	return nil
}

// buildBatch is how many accounts' users buildLastDays reads at once.
const buildBatch = 256

// buildLastDays makes one shard's index agree with its accounts' users.
func (s *Store) buildLastDays(ctx context.Context, shard int) error {
	key := lastDaysKey(shard)
	ids, err := s.client.SMembers(ctx, accountsKey(shard)).Result()
	if err != nil {
		return wrap("index last days", err)
	}
	cur, err := s.client.ZRangeWithScores(ctx, key, 0, -1).Result()
	if err != nil {
		return wrap("index last days", err)
	}
	have := map[string]map[string]float64{} // account -> member -> score
	for _, z := range cur {
		m, _ := z.Member.(string)
		account, _, _ := strings.Cut(m, "\x00")
		if have[account] == nil {
			have[account] = map[string]float64{}
			ids = append(ids, account) // an entry of an account gone is dropped
		}
		have[account][m] = z.Score
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for batch := range slices.Chunk(ids, buildBatch) {
		cmds := make([]*redis.StringSliceCmd, len(batch))
		_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range batch {
				cmds[i] = p.HVals(ctx, keysFor(id).users)
			}
			return nil
		})
		if err != nil {
			return wrap("index last days", err)
		}
		for i, id := range batch {
			want, err := wantedLastDays(id, cmds[i].Val())
			if err != nil {
				return err
			}
			if !maps.Equal(want, have[id]) {
				if err := s.fixLastDays(ctx, id, have[id]); err != nil {
					return err
				}
			}
		}
	}
	return nil
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
			want[lastDayMember(account, u.Username)] = lastDayScore(u)
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	return want, nil
}

// fixLastDays sets one account's index entries from its users, watching
// them; had is the entries the index held when the build read it. An entry
// added since by a write of the account is one its users (read after the
// watch began) want, so only had's can be stale.
func (s *Store) fixLastDays(ctx context.Context, account string, had map[string]float64) error {
	k := keysFor(account)
	for attempt := 1; ; attempt++ {
		err := s.client.Watch(ctx, func(rtx *redis.Tx) error {
			vals, err := rtx.HVals(ctx, k.users).Result()
			if err != nil {
				return err
			}
			want, err := wantedLastDays(account, vals)
			if err != nil {
				return err
			}
			_, err = rtx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				var rem []any
				for m := range had {
					if _, ok := want[m]; !ok {
						rem = append(rem, m)
					}
				}
				if len(rem) > 0 {
					p.ZRem(ctx, k.lastDays, rem...)
				}
				for m, score := range want {
					p.ZAdd(ctx, k.lastDays, redis.Z{Member: m, Score: score})
				}
				p.Ping(ctx)
				return nil
			})
			return err
		}, k.users)
		switch {
		case errors.Is(err, redis.TxFailedErr) && attempt < maxAttempts:
			continue
		case errors.Is(err, redis.TxFailedErr):
			return fmt.Errorf("index last days of %s: %w", account, policy.ErrConflict)
		}
		return wrap("index last days of "+account, err)
	}
}
