package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekeeper-dev/gatekeeper/store/backup"
)

// A backup of Redis is a logical export of every gatekeeper key (gk:*),
// one record per key: its name, Redis type, expiry and contents, whatever
// it means. Keys a later version adds (second factors, devices, outboxes)
// are carried the same way, with no change to the format.
//
// Keys are read in groups that share a hash slot: one account's keys
// (gk:{gk:NN}:KIND:ACCOUNT…), each group in one MULTI/EXEC, so each
// account is read as one consistent state, on a Cluster too. The change
// feed streams are left out: they only tell running instances what changed
// and carry no data; the feed sequence numbers (gk:{gk:NN}:seq) are kept.
// Keys of the backup's own coordination (gk:backup:…) are left out too.

// tagRedisKey is a Redis key record: name, type, expiry (unix ms, -1 for
// none), then the contents by type:
//
//	string  value
//	hash    field, value, …
//	set     member, …
//	zset    member, score, …
//	list    element, …
//	stream  id, field count, field, value, …; id, …
const tagRedisKey = 'r'

var _ backup.Exporter = (*Store)(nil)

// keyGroup names the keys that are read and written together: one
// account's keys, or one shard's own (accounts, seq), or "" for the
// keys outside any shard (gk:meta).
func keyGroup(key string) (group, kind string, skip bool) {
	rest, ok := strings.CutPrefix(key, "gk:{gk:")
	if !ok {
		kind, _, _ = strings.Cut(strings.TrimPrefix(key, "gk:"), ":")
		return "", kind, kind == "backup"
	}
	end := strings.Index(rest, "}:")
	if end < 0 {
		return "", "other", false
	}
	kind, after, _ := strings.Cut(rest[end+2:], ":")
	account, _, _ := strings.Cut(after, ":")
	return key[:len("gk:{gk:")+end+2] + account, kind, kind == "feed"
}

// accountOfGroup splits an account's group into its shard prefix and
// account; false for the other groups.
func accountOfGroup(g string) (prefix, account string, ok bool) {
	i := strings.Index(g, "}:")
	if i < 0 || i+2 == len(g) {
		return "", "", false
	}
	return g[:i+2], g[i+2:], true
}

// slotOf is a group's shard prefix ("gk:{gk:NN}:"), whose hash tag puts
// all its keys in one slot; "" for the keys outside any shard.
func slotOf(g string) string {
	if i := strings.Index(g, "}:"); i >= 0 {
		return g[:i+2]
	}
	return ""
}

// scanKeys lists every key matching pattern, on every primary of a Cluster.
func (s *Store) scanKeys(ctx context.Context, pattern string) ([]string, error) {
	var mu sync.Mutex
	var out []string
	scan := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			mu.Lock()
			out = append(out, it.Val())
			mu.Unlock()
		}
		return it.Err()
	}
	var err error
	if s.cluster != nil {
		err = s.cluster.ForEachMaster(ctx, scan)
	} else {
		err = scan(ctx, s.single)
	}
	if err != nil {
		return nil, wrap("list keys", err)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Export implements backup.Exporter.
func (s *Store) Export(ctx context.Context, w backup.RecordWriter) (backup.Manifest, error) {
	m := backup.Manifest{Backend: "redis", Counts: map[string]int64{}, Feed: map[string]uint64{}, Created: s.now().UTC()}
	keys, err := s.scanKeys(ctx, "gk:*")
	if err != nil {
		return m, err
	}
	groups := map[string][]string{}
	var order []string
	// perAccount are the kinds of key named KIND:ACCOUNT exactly (acct,
	// rules, users, audit, …). An account whose first key the scan saw is
	// read with every such key, listed or not: an account created during
	// the scan is then read whole or not at all, never half.
	perAccount := map[string]bool{}
	for _, k := range keys {
		g, kind, skip := keyGroup(k)
		if skip {
			continue
		}
		if _, seen := groups[g]; !seen {
			order = append(order, g)
		}
		groups[g] = append(groups[g], k)
		if prefix, account, ok := accountOfGroup(g); ok && k == prefix+kind+":"+account {
			perAccount[kind] = true
		}
	}
	for _, g := range order {
		prefix, account, ok := accountOfGroup(g)
		if !ok {
			continue
		}
		for kind := range perAccount {
			if k := prefix + kind + ":" + account; !slices.Contains(groups[g], k) {
				groups[g] = append(groups[g], k)
			}
		}
		slices.Sort(groups[g])
	}
	for _, batch := range batches(order, groups) {
		g, _, _ := keyGroup(batch[0][0])
		recs, err := s.readBatch(ctx, batch, g != "" || s.cluster == nil)
		if err != nil {
			return m, err
		}
		for _, r := range recs {
			name, typ := string(r.Fields[0]), string(r.Fields[1])
			_, kind, _ := keyGroup(name)
			m.Counts[kind] += items(typ, r.Fields[3:])
			switch {
			case name == metaKey:
				for i := 3; i+1 < len(r.Fields); i += 2 {
					if string(r.Fields[i]) == genField {
						m.Generation = string(r.Fields[i+1])
					}
				}
			case kind == "seq" && typ == "string":
				n, _ := strconv.ParseUint(string(r.Fields[3]), 10, 64)
				m.Feed[strings.TrimSuffix(strings.TrimPrefix(name, "gk:{gk:"), "}:seq")] = n
			}
			if err := w.Write(r); err != nil {
				return m, err
			}
		}
	}
	return m, nil
}

// batchKeys is about how many keys one MULTI/EXEC reads or writes.
const batchKeys = 2000

// batches joins consecutive groups of one shard (one hash slot) into
// batches of about batchKeys keys, each read or written as one MULTI/EXEC:
// a round trip per batch rather than per account. A group is never split.
func batches(order []string, groups map[string][]string) [][][]string {
	var out [][][]string
	var cur [][]string
	n, curShard := 0, ""
	for _, g := range order {
		shard := slotOf(g)
		if len(cur) > 0 && (shard != curShard || g == "" || n+len(groups[g]) > batchKeys) {
			out = append(out, cur)
			cur, n = nil, 0
		}
		cur, curShard = append(cur, groups[g]), shard
		n += len(groups[g])
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// items is how many items a key record holds, for the manifest's counts.
func items(typ string, f [][]byte) int64 {
	switch typ {
	case "hash", "zset":
		return int64(len(f) / 2)
	case "stream":
		var n int64
		for i := 0; i+1 < len(f); {
			c, _ := strconv.Atoi(string(f[i+1]))
			i += 2 + 2*c
			n++
		}
		return n
	case "string":
		return 1
	}
	return int64(len(f))
}

// batchItems is about how many items (hash fields, stream entries, …) one
// MULTI/EXEC reads or writes, so that a batch of accounts with long audit
// trails is not read in one reply.
const batchItems = 100_000

// readBatch reads a batch of groups of one slot: their types and sizes
// first, then as many whole groups per MULTI/EXEC as batchItems allows.
func (s *Store) readBatch(ctx context.Context, groups [][]string, atomic bool) ([]backup.Record, error) {
	var keys []string
	for _, g := range groups {
		keys = append(keys, g...)
	}
	types := make([]*redis.StatusCmd, len(keys))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			types[i] = p.Type(ctx, k)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("read key types", err)
	}
	typ := make([]string, len(keys))
	sizes := make([]*redis.IntCmd, len(keys))
	_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			typ[i] = types[i].Val()
			switch typ[i] {
			case "hash":
				sizes[i] = p.HLen(ctx, k)
			case "set":
				sizes[i] = p.SCard(ctx, k)
			case "zset":
				sizes[i] = p.ZCard(ctx, k)
			case "list":
				sizes[i] = p.LLen(ctx, k)
			case "stream":
				sizes[i] = p.XLen(ctx, k)
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("read key sizes", err)
	}
	var out []backup.Record
	from, items := 0, int64(0)
	flush := func(to int) error {
		if to == from {
			return nil
		}
		recs, err := s.readGroup(ctx, keys[from:to], typ[from:to], atomic)
		out = append(out, recs...)
		from, items = to, 0
		return err
	}
	at := 0
	for _, g := range groups {
		var n int64
		for i := at; i < at+len(g); i++ {
			n++
			if sizes[i] != nil {
				n += sizes[i].Val()
			}
		}
		if items > 0 && items+n > batchItems {
			if err := flush(at); err != nil {
				return nil, err
			}
		}
		items += n
		at += len(g)
	}
	if err := flush(at); err != nil {
		return nil, err
	}
	return out, nil
}

// readGroup reads keys that share a slot; atomic makes it one MULTI/EXEC
// (the keys outside any shard are on different slots of a Cluster).
func (s *Store) readGroup(ctx context.Context, keys, types []string, atomic bool) ([]backup.Record, error) {
	type read struct {
		key, typ string
		val      redis.Cmder
		exp      *redis.Cmd
	}
	reads := make([]read, 0, len(keys))
	fn := func(p redis.Pipeliner) error {
		for i, k := range keys {
			r := read{key: k, typ: types[i]}
			switch r.typ {
			case "string":
				r.val = p.Get(ctx, k)
			case "hash":
				r.val = p.HGetAll(ctx, k)
			case "set":
				r.val = p.SMembers(ctx, k)
			case "zset":
				r.val = p.ZRangeWithScores(ctx, k, 0, -1)
			case "list":
				r.val = p.LRange(ctx, k, 0, -1)
			case "stream":
				r.val = p.XRange(ctx, k, "-", "+")
			case "none":
				continue // gone meanwhile
			default:
				return fmt.Errorf("key %s: Redis type %q is not one gatekeeper uses", k, r.typ)
			}
			r.exp = p.Do(ctx, "PEXPIRETIME", k)
			reads = append(reads, r)
		}
		return nil
	}
	var err error
	if atomic {
		_, err = s.client.TxPipelined(ctx, fn)
	} else {
		_, err = s.client.Pipelined(ctx, fn)
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, wrap("read keys", err)
	}
	out := make([]backup.Record, 0, len(reads))
	for _, r := range reads {
		exp, err := r.exp.Int64()
		if err != nil {
			return nil, wrap("read expiry of "+r.key, err)
		}
		if exp == -2 {
			continue // its type changed or it went between TYPE and MULTI
		}
		f := [][]byte{[]byte(r.key), []byte(r.typ), strconv.AppendInt(nil, exp, 10)}
		switch c := r.val.(type) {
		case *redis.StringCmd:
			v, err := c.Bytes()
			if errors.Is(err, redis.Nil) {
				continue
			}
			f = append(f, v)
		case *redis.MapStringStringCmd:
			kv := c.Val()
			for _, k := range slices.Sorted(mapKeys(kv)) {
				f = append(f, []byte(k), []byte(kv[k]))
			}
		case *redis.StringSliceCmd:
			v := c.Val()
			if r.typ == "set" {
				slices.Sort(v)
			}
			for _, m := range v {
				f = append(f, []byte(m))
			}
		case *redis.ZSliceCmd:
			for _, z := range c.Val() {
				f = append(f, []byte(fmt.Sprint(z.Member)), strconv.AppendFloat(nil, z.Score, 'g', -1, 64))
			}
		case *redis.XMessageSliceCmd:
			for _, e := range c.Val() {
				f = append(f, []byte(e.ID), strconv.AppendInt(nil, int64(len(e.Values)), 10))
				for _, k := range slices.Sorted(mapKeys(e.Values)) {
					f = append(f, []byte(k), []byte(fmt.Sprint(e.Values[k])))
				}
			}
		}
		if err := r.val.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return nil, wrap("read "+r.key, err)
		}
		out = append(out, backup.Record{Tag: tagRedisKey, Fields: f})
	}
	return out, nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// redisKey is a validated key record.
type redisKey struct {
	name, typ string
	expire    int64 // unix ms, -1 for none
	items     [][]byte
}

func parseKeyRecord(r backup.Record) (redisKey, error) {
	if r.Tag != tagRedisKey {
		return redisKey{}, fmt.Errorf("unknown record tag %q", r.Tag)
	}
	if len(r.Fields) < 3 {
		return redisKey{}, errors.New("key record with too few fields")
	}
	k := redisKey{name: string(r.Fields[0]), typ: string(r.Fields[1]), items: r.Fields[3:]}
	if !strings.HasPrefix(k.name, "gk:") {
		return k, fmt.Errorf("key %q is not gatekeeper's", k.name)
	}
	exp, err := strconv.ParseInt(string(r.Fields[2]), 10, 64)
	if err != nil || exp < -1 {
		return k, fmt.Errorf("key %s: bad expiry", k.name)
	}
	k.expire = exp
	n := len(k.items)
	switch k.typ {
	case "string":
		if n != 1 {
			return k, fmt.Errorf("string key %s with %d values", k.name, n)
		}
	case "hash", "zset":
		if n%2 != 0 {
			return k, fmt.Errorf("%s key %s with an odd number of items", k.typ, k.name)
		}
		if k.typ == "zset" {
			for i := 1; i < n; i += 2 {
				if _, err := strconv.ParseFloat(string(k.items[i]), 64); err != nil {
					return k, fmt.Errorf("zset key %s: bad score", k.name)
				}
			}
		}
	case "set", "list":
	case "stream":
		for i := 0; i < n; {
			if i+1 >= n {
				return k, fmt.Errorf("stream key %s: entry cut short", k.name)
			}
			c, err := strconv.Atoi(string(k.items[i+1]))
			if err != nil || c < 1 || c > (n-i-2)/2 {
				return k, fmt.Errorf("stream key %s: bad entry", k.name)
			}
			i += 2 + 2*c
		}
	default:
		return k, fmt.Errorf("key %s: unknown type %q", k.name, k.typ)
	}
	return k, nil
}

// Restore writes a backup into Redis. Redis must hold no account; one
// holding another generation than the backup is refused unless force.
// Every record is checked before anything is written; each account's keys
// are written in one MULTI/EXEC, and the generation last, so that an
// instance waiting for it (after Redis lost its data) takes the store back
// only once every account is there. Keys whose expiry has passed (ended
// sessions, grants and leases that expire with their key) are dropped.
//
// Until then the store holds a provisional generation (backup.Provisional): writes work (Update needs a generation) but no instance
// takes the store for its own. then, when not nil, runs at that point with
// the provisional generation, so that a caller can bring the policy
// forward before any instance enforces the backup's older one. If then
// fails, the provisional generation stays: the fleet goes on enforcing
// what it had, and the same restore may run again over it.
func (s *Store) Restore(ctx context.Context, b *backup.Backup, force bool, then func(ctx context.Context, gen string) error) (dropped int, err error) {
	if b.Manifest.Backend != "redis" {
		return 0, fmt.Errorf("restore: a %s backup does not restore into Redis", b.Manifest.Backend)
	}
	if b.Manifest.Generation == "" {
		return 0, errors.New("restore: the backup holds no store generation")
	}
	keys := make([]redisKey, 0, len(b.Records))
	for i, r := range b.Records {
		k, err := parseKeyRecord(r)
		if err != nil {
			return 0, fmt.Errorf("restore: record %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	gen, err := s.generation(ctx)
	if err != nil {
		return 0, err
	}
	// A restore of this backup that stopped half-way may run again.
	resume := gen == backup.Provisional(b.Manifest.Generation)
	for shard := 0; shard < shards && !resume; shard++ {
		n, err := s.client.SCard(ctx, accountsKey(shard)).Result()
		if err != nil {
			return 0, wrap("restore: check the store is empty", err)
		}
		if n > 0 {
			return 0, fmt.Errorf("restore: %w (%d accounts in shard %d)", backup.ErrPopulated, n, shard)
		}
	}
	if gen != "" && gen != b.Manifest.Generation && !resume && !force {
		return 0, fmt.Errorf("restore: %w: the store's is %q, the backup's %q (-force to restore over an empty store anyway)",
			backup.ErrOtherGeneration, gen, b.Manifest.Generation)
	}
	now := s.now().UnixMilli()
	var meta *redisKey
	var batch []redisKey
	batchShard := ""
	batchN := 0 // items in batch, about
	flush := func() error {
		err := s.writeKeys(ctx, batch)
		batch, batchN = batch[:0], 0
		return err
	}
	for i := 0; i < len(keys); {
		g, _, _ := keyGroup(keys[i].name)
		j := i
		for j < len(keys) {
			if gj, _, _ := keyGroup(keys[j].name); gj != g {
				break
			}
			j++
		}
		// As Export: one MULTI/EXEC per batch of whole groups of one
		// slot; the keys outside any shard one by one on a Cluster.
		shard := slotOf(g)
		var n int
		for _, k := range keys[i:j] {
			n += 1 + len(k.items)/2
		}
		if len(batch) > 0 && (shard != batchShard || g == "" || len(batch)+(j-i) > batchKeys || batchN+n > batchItems) {
			if err := flush(); err != nil {
				return dropped, err
			}
		}
		batchN += n
		batchShard = shard
		for _, k := range keys[i:j] {
			switch {
			case k.name == metaKey:
				meta = &k
			case k.expire >= 0 && k.expire <= now:
				dropped++
			default:
				var n int
				k, n = withoutExpiredRules(k, now)
				dropped += n
				batch = append(batch, k)
				if g == "" && s.cluster != nil {
					if err := flush(); err != nil {
						return dropped, err
					}
				}
			}
		}
		i = j
	}
	if err := flush(); err != nil {
		return dropped, err
	}
	if meta == nil {
		return dropped, errors.New("restore: the backup has no gk:meta key")
	}
	// The backup's indexes were read apart from what they index: the
	// first read of each after the restore builds it again (index.go).
	meta.items = slices.Clone(meta.items)
	for i := 0; i+1 < len(meta.items); {
		if f := string(meta.items[i]); f == lastDaysField || f == reviewsField {
			meta.items = slices.Delete(meta.items, i, i+2)
			continue
		}
		i += 2
	}
	provisional := *meta
	provisional.items = slices.Clone(meta.items)
	for i := 0; i+1 < len(provisional.items); i += 2 {
		if string(provisional.items[i]) == genField {
			provisional.items[i+1] = []byte(backup.Provisional(b.Manifest.Generation))
		}
	}
	if err := s.writeKeys(ctx, []redisKey{provisional}); err != nil {
		return dropped, err
	}
	if then != nil {
		if err := then(ctx, backup.Provisional(b.Manifest.Generation)); err != nil {
			return dropped, fmt.Errorf("restore: the data is back under the provisional generation %q, which the fleet does not take (it goes on enforcing what it had; run the same restore again to finish), but: %w", backup.Provisional(b.Manifest.Generation), err)
		}
	}
	if err := s.writeKeys(ctx, []redisKey{*meta}); err != nil {
		return dropped, err
	}
	if gen, err = s.generation(ctx); err != nil || gen != b.Manifest.Generation {
		return dropped, fmt.Errorf("restore: the store's generation is %q after the restore, not the backup's %q (%v)", gen, b.Manifest.Generation, err)
	}
	return dropped, nil
}

// withoutExpiredRules drops the expired grants and leases of an account's
// rules hash: the only kind of data that expires inside a key rather than
// with it. Rule IDs are not reused for it (ruleid is kept).
func withoutExpiredRules(k redisKey, nowMs int64) (redisKey, int) {
	account, ok := strings.CutPrefix(k.name, slotOf(k.name)+"rules:")
	if !ok || slotOf(k.name) == "" || k.typ != "hash" {
		return k, 0
	}
	now := time.UnixMilli(nowMs)
	kept := make([][]byte, 0, len(k.items))
	dropped := 0
	for i := 0; i+1 < len(k.items); i += 2 {
		if r, err := decodeRule(account, string(k.items[i+1])); err == nil && r.Expired(now) {
			dropped++
			continue
		}
		kept = append(kept, k.items[i], k.items[i+1])
	}
	k.items = kept
	return k, dropped
}

// maxArgs bounds the items of one command when writing a big key.
const maxArgs = 1000

// writeKeys replaces keys of one slot in one MULTI/EXEC.
func (s *Store) writeKeys(ctx context.Context, ks []redisKey) error {
	if len(ks) == 0 {
		return nil
	}
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range ks {
			p.Del(ctx, k.name)
			switch k.typ {
			case "string":
				p.Set(ctx, k.name, k.items[0], 0)
			case "hash":
				for c := range slices.Chunk(k.items, maxArgs) {
					p.HSet(ctx, k.name, anys(c)...)
				}
			case "set":
				for c := range slices.Chunk(k.items, maxArgs) {
					p.SAdd(ctx, k.name, anys(c)...)
				}
			case "list":
				for c := range slices.Chunk(k.items, maxArgs) {
					p.RPush(ctx, k.name, anys(c)...)
				}
			case "zset":
				for c := range slices.Chunk(k.items, maxArgs) {
					zs := make([]redis.Z, 0, len(c)/2)
					for i := 0; i+1 < len(c); i += 2 {
						score, _ := strconv.ParseFloat(string(c[i+1]), 64)
						zs = append(zs, redis.Z{Member: string(c[i]), Score: score})
					}
					p.ZAdd(ctx, k.name, zs...)
				}
			case "stream":
				for i := 0; i < len(k.items); {
					n, _ := strconv.Atoi(string(k.items[i+1]))
					args := []any{"XADD", k.name, string(k.items[i])}
					args = append(args, anys(k.items[i+2:i+2+2*n])...)
					p.Do(ctx, args...)
					i += 2 + 2*n
				}
			}
			if k.expire >= 0 {
				p.PExpireAt(ctx, k.name, time.UnixMilli(k.expire))
			}
		}
		return nil
	})
	if err != nil {
		return wrap("restore "+ks[0].name, err)
	}
	return nil
}

func anys(bs [][]byte) []any {
	out := make([]any, len(bs))
	for i, b := range bs {
		out[i] = b
	}
	return out
}

// The fleet's scheduled backups (backup.Turn): a lease and the time of the
// last success, under gk:backup:, which a backup leaves out.
const (
	backupLeaseKey = "gk:backup:lease"
	backupLastKey  = "gk:backup:last"
	// releaseScript deletes the lease only if holder still has it.
	// KEYS: lease. ARGV: holder.
	releaseScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`
)

var _ backup.Turn = (*Store)(nil)

// LastBackup implements backup.Turn.
func (s *Store) LastBackup(ctx context.Context) (time.Time, error) {
	ms, err := s.client.Get(ctx, backupLastKey).Int64()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, wrap("read the last backup time", err)
	}
	return time.UnixMilli(ms), nil
}

// TakeBackupTurn implements backup.Turn.
func (s *Store) TakeBackupTurn(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	ok, err := s.client.SetNX(ctx, backupLeaseKey, holder, ttl).Result()
	return ok, wrap("take the backup lease", err)
}

// EndBackupTurn implements backup.Turn.
func (s *Store) EndBackupTurn(ctx context.Context, holder string, ok bool, at time.Time) error {
	if ok {
		// Only ever forward: a slow instance does not move it back.
		if err := s.client.Eval(ctx, raiseScript, []string{backupLastKey}, at.UnixMilli()).Err(); err != nil {
			return wrap("record the backup", err)
		}
	}
	return wrap("release the backup lease", s.client.Eval(ctx, releaseScript, []string{backupLeaseKey}, holder).Err())
}
