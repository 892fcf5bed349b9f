package redisstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// An index is one sorted set per shard, in the shard's slot, that the
// transactions writing what it indexes keep in their MULTI/EXEC: the last
// days (lastdays.go) and the access reviews (reviews.go). A member is an
// account ID, optionally followed by "\x00" and more; its score a due time
// in unix ms (policy.LastDayDue). Reads take the 16 sets.
//
// An index is built from the data it indexes (build) by the first read of
// each Store, and by any read that finds its field missing from gk:meta: a
// store written before the index existed, or restored from a backup (whose
// sets were read apart from the data, so may be behind it; Restore leaves
// the fields out). Once per Store, not once per Redis, because during a
// rolling upgrade an instance of the older version still writes without
// the index: the instance started last, after the last older one stopped,
// mends what they wrote. It reads every account's data in pipelines, once
// per start. Building is safe alongside writers and other instances
// building: an account whose entries differ is fixed in a transaction
// watching its data.
type index struct {
	what  string // for errors: "last days"
	field string // gk:meta field: built
	name  string // the set's key in a shard, after its prefix
	built *atomic.Bool
	// read queues on c the read of one account's indexed data, and
	// returns how to get it once c ran (nil: nothing).
	read func(ctx context.Context, c redis.Cmdable, k keys) func() ([]string, error)
	// want is the entries that data makes, member -> score; nil if none.
	want func(account string, data []string) (map[string]float64, error)
	// watch is the key a fix of one account watches: its indexed data.
	watch func(k keys) string
}

func (ix index) key(shard int) string { return shardPrefix(shard) + ix.name }

// rangeIndex returns ix's entries due up to until (all when zero), in no
// order, after building it if needed.
func (s *Store) rangeIndex(ctx context.Context, ix index, until time.Time) ([]redis.Z, error) {
	if err := s.ensureIndex(ctx, ix); err != nil {
		return nil, err
	}
	maxScore := "+inf"
	if !until.IsZero() {
		maxScore = strconv.FormatInt(until.UnixMilli(), 10)
	}
	cmds := make([]*redis.ZSliceCmd, shards)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for sh := range shards {
			cmds[sh] = p.ZRangeByScoreWithScores(ctx, ix.key(sh), &redis.ZRangeBy{Min: "-inf", Max: maxScore})
		}
		return nil
	})
	if err != nil {
		return nil, wrap("read "+ix.what, err)
	}
	var out []redis.Z
	for _, c := range cmds {
		out = append(out, c.Val()...)
	}
	return out, nil
}

// ensureIndex builds ix unless this Store built it and gk:meta says it is
// built. A store with no generation holds no data, and is left to be
// asked again.
func (s *Store) ensureIndex(ctx context.Context, ix index) error {
	vals, err := s.client.HMGet(ctx, metaKey, genField, ix.field).Result()
	if err != nil {
		return wrap("read "+ix.what, err)
	}
	if vals[0] == nil || (vals[1] != nil && ix.built.Load()) {
		return nil
	}
	for sh := range shards {
		if err := s.buildIndex(ctx, ix, sh); err != nil {
			return err
		}
	}
	if err := s.client.HSet(ctx, metaKey, ix.field, "1").Err(); err != nil {
		return wrap("read "+ix.what, err)
	}
	ix.built.Store(true)
	return nil
}

// buildBatch is how many accounts' data buildIndex reads at once.
const buildBatch = 256

// buildIndex makes one shard's ix agree with its accounts' data.
func (s *Store) buildIndex(ctx context.Context, ix index, shard int) error {
	ids, err := s.client.SMembers(ctx, accountsKey(shard)).Result()
	if err != nil {
		return wrap("index "+ix.what, err)
	}
	cur, err := s.client.ZRangeWithScores(ctx, ix.key(shard), 0, -1).Result()
	if err != nil {
		return wrap("index "+ix.what, err)
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
		data := make([]func() ([]string, error), len(batch))
		_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range batch {
				data[i] = ix.read(ctx, p, keysFor(id))
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) { // a key missing is no data
			return wrap("index "+ix.what, err)
		}
		for i, id := range batch {
			vals, err := data[i]()
			if err != nil {
				return wrap("index "+ix.what, err)
			}
			want, err := ix.want(id, vals)
			if err != nil {
				return err
			}
			if !maps.Equal(want, have[id]) {
				if err := s.fixIndex(ctx, ix, id, have[id]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// fixIndex sets one account's entries of ix from its data, watching it;
// had is the entries the index held when the build read it. An entry
// added since by a write of the account is one its data (read after the
// watch began) wants, so only had's can be stale.
func (s *Store) fixIndex(ctx context.Context, ix index, account string, had map[string]float64) error {
	k := keysFor(account)
	key := ix.key(k.shard)
	for attempt := 1; ; attempt++ {
		err := s.client.Watch(ctx, func(rtx *redis.Tx) error {
			vals, err := ix.read(ctx, rtx, k)()
			if err != nil {
				return err
			}
			want, err := ix.want(account, vals)
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
					p.ZRem(ctx, key, rem...)
				}
				for m, score := range want {
					p.ZAdd(ctx, key, redis.Z{Member: m, Score: score})
				}
				p.Ping(ctx)
				return nil
			})
			return err
		}, ix.watch(k))
		switch {
		case errors.Is(err, redis.TxFailedErr) && attempt < maxAttempts:
			continue
		case errors.Is(err, redis.TxFailedErr):
			return fmt.Errorf("index %s of %s: %w", ix.what, account, policy.ErrConflict)
		}
		return wrap("index "+ix.what+" of "+account, err)
	}
}

// indexScore is a due time as an index holds it.
func indexScore(due time.Time) float64 { return float64(policy.LastDayDue(due).UnixMilli()) }

// indexDue is the due time of an index's score.
func indexDue(score float64) time.Time { return time.UnixMilli(int64(score)).UTC() }
