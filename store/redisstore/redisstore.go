// Package redisstore is the policy.Store for a fleet: every gatekeeper
// instance reads and writes one Redis, and follows its change feed.
//
// # URLs
//
// Open takes a redis:// or rediss:// (TLS) URL and builds one of the three
// clients go-redis's universal client chooses between:
//
//	redis://user:pass@host:6379/0                standalone
//	rediss://host:6380/0?dial_timeout=3s         standalone over TLS
//	redis://h1:6379,h2:6379,h3:6379/0            Cluster (two or more hosts)
//	redis://h1:6379/0?cluster=true               Cluster, one seed host
//	redis://s1:26379,s2:26379/0?master_name=gk   Sentinel (hosts are sentinels)
//
// Other query parameters are go-redis's own (redis.ParseURL,
// redis.ParseClusterURL, redis.ParseFailoverURL): dial_timeout,
// read_timeout, pool_size, max_retries and so on. With Sentinel, the URL's
// user and password are the sentinels'; the master's go in the username
// and password parameters. A Cluster has only database 0. Context deadlines
// always apply to commands.
//
// Two parameters are the store's own:
//
//	wait_replicas=N   a write is acknowledged only once N replicas have it
//	                  (Redis WAIT); default 1 with Sentinel, else 0
//	wait_timeout=D    how long a write waits for them; default 2s
//
// Redis replicates asynchronously: a replica promoted by a failover lacks
// the writes its primary acknowledged in the last moments, and the old
// primary goes on acknowledging writes until Sentinel demotes it (up to
// seconds later), all of which are lost. A rule deleted and then lost
// would silently let its address in again, so with Sentinel a write waits
// for one replica by default. A write that does not reach them in time is
// reported as unavailable and policy.ErrUnconfirmed (the admin API answers
// 503 store_unconfirmed): it may or may not survive, and retrying it is
// safe. wait_replicas=0 turns the wait off, trading those writes for
// availability while every replica is down.
//
// It needs Redis 7.0 or newer (SET NX GET, PEXPIRETIME, exclusive ranges).
//
// # Layout and transactions
//
// Keys are described in keys.go. An account's keys share the hash tag of
// one of 16 shards, as does that shard's change feed, so every write runs
// as one MULTI/EXEC on one slot, Cluster or not: the data, its audit
// entries and, when the policy changed, a feed entry (a Lua script inside
// the MULTI increments the shard's sequence number and appends the entry
// with it). Update is optimistic: it WATCHes the account's keys, runs fn
// with reads going to Redis and writes buffered, and retries fn when
// another writer got in first.
//
// # Change feed
//
// Each shard's feed is a stream trimmed to about Options.FeedMaxLen
// entries. A cursor records, per shard, the last stream ID and sequence
// number seen. Follow blocks on XREAD (one over the 16 streams, or one per
// shard on a Cluster, where a command cannot span slots) on connections of
// its own, outside the shared pool, and is woken with CLIENT UNBLOCK when
// its context ends. It reports policy.ErrFeedGap when a sequence number is
// skipped (the feed was trimmed past the cursor) or goes backwards (Redis
// lost data), and policy.ErrUnavailable when Redis stops answering: a hung
// server is noticed within about three seconds. Changes of one account
// arrive in commit order; changes of accounts in different shards have no
// defined order between them. On a Cluster, a shard whose node cannot be
// reached is retried on its own while the others are followed, and is
// reported (gatekeeper_store_feed_shards_down, FeedHealth); Follow ends
// only when none can be read. The client re-reads the slot map every
// second while it is used, so a promoted replica is found within one.
//
// # Generation
//
// The gk:meta key holds the store's generation, a random ID written when
// the first account is created on a store that never held one. A Redis
// that restarted without persistence or was flushed has none: LoadPolicy
// reports Generation "" and Update refuses to write (ErrNoData, wrapped
// with policy.ErrUnavailable) until the store is seeded again, so a fleet
// never mistakes an empty Redis for an empty policy; CreateAccount refuses
// too once the store is known to have held a generation (policy.Lineage:
// from the snapshot, or read since), so that only Reseed gives it back.
// On a Cluster, gk:meta lives on one node: while that node is unreachable,
// Update takes the generation the store is known to hold, so that accounts
// on the other nodes can still be written; a node that lost its data on
// its own is not detected by the generation.
//
// LoadPolicy reads 16 feed positions, then every account and its rules in
// pipelines, several at once; rules are stored in a compact binary form
// (codec.go) because decoding a million JSON rules alone takes seconds.
// LoadPolicy and LoadAccountPolicy leave rule usage (LastUsed, Hits) zero:
// the matcher does not need it, and Tx.Rules reports it.
//
// # Sentinel
//
// go-redis's failover client asks the Sentinels for the primary and moves
// its pool when they announce a new one. Follow's reader holds a
// connection of its own, so once a second it asks the Sentinels too, and
// when the primary has moved it ends with policy.ErrFeedGap: the engine
// reloads from the new primary, which may lack changes the old one had.
// TestSentinel runs the conformance suite and a failover under writes.
//
// It does not cache anything, re-seed a store or migrate data from another
// backend.
package redisstore

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/internal/rawsock"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Options configure a Store. The zero value works.
type Options struct {
	// Logger; if nil, nothing is logged.
	Logger *zap.Logger
	// FeedMaxLen is about how many entries each of the 16 feed streams
	// keeps; a follower further behind reloads in full. If zero, 100000.
	FeedMaxLen int64
	// AuditMaxLen is about how many audit entries each account keeps; the
	// oldest go. If zero, 100000.
	AuditMaxLen int64
	// Now returns the current time, for audit entries and session checks.
	// If nil, time.Now. Feed entries carry Redis's own clock.
	Now func() time.Time
	// Lineage knows the generation the store held, from this machine's
	// snapshot; a Redis found without one is then not given a new one
	// (policy.Lineage). If nil, nothing is known yet: a first start.
	Lineage *policy.Lineage
	// Registerer receives gatekeeper_store_feed_shards_down. If nil, the
	// gauge is kept but not exported.
	Registerer prometheus.Registerer
	// FeedGap is the least time between two reads of the change feed
	// that return changes: under a steady stream of changes, those that
	// come within it are handed over together, one load from Redis for
	// all, at the price of up to FeedGap more to reach the engine. A
	// change that comes after a quiet spell is read at once. If zero,
	// DefaultFeedGap; negative: none, every read goes on at once.
	FeedGap time.Duration
}

// DefaultFeedGap is Options.FeedGap's default. Each read and load wakes
// the receiver, and on a busy machine a wake-up costs more than the
// change: at a steady 1,000 changes a second, 2 ms halves the receiver's
// CPU per change (BenchmarkReceive in the policy package) and adds at
// most 2 ms to a change's way to enforcement.
const DefaultFeedGap = 2 * time.Millisecond

// ErrNoData means Redis holds no store generation: it lost its data, or was
// never seeded. Writes are refused until an account is created again. It is
// policy.ErrNoData, named here for callers of this package.
var ErrNoData = policy.ErrNoData

// Store is a policy.Store on Redis. It is safe for concurrent use.
type Store struct {
	client  redis.UniversalClient
	single  *redis.Client        // the client, when not a Cluster
	cluster *redis.ClusterClient // the client, on a Cluster
	log     *zap.Logger
	now     func() time.Time
	lineage *policy.Lineage
	feedMax int64
	audMax  int64

	// followBlock is how long one XREAD blocks; between two, Follow checks
	// that the feed did not go backwards. followGrace is how much longer
	// than that an XREAD may take before Redis counts as unreachable.
	followBlock time.Duration
	feedGap     time.Duration // Options.FeedGap
	followGrace time.Duration
	// noTail turns tailScript off for good once a node could not run it.
	noTail atomic.Bool
	// tailLua is tailScript; tests put one here that the node refuses.
	tailLua string
	// readerPerShard makes Follow read each shard on its own connection, as
	// it must on a Cluster; tests set it to exercise that path.
	readerPerShard bool
	// feedDown is which shards Follow cannot read (per-shard readers).
	feedDown *shardsDown

	// waitReplicas and waitTimeout: a write waits for that many replicas
	// (see the package comment).
	waitReplicas int
	waitTimeout  time.Duration
	// sentinels, with Sentinel, answer where the primary is; master is
	// the name they know it by.
	sentinels []*redis.SentinelClient
	master    string

	// lastDaysBuilt: this Store built the index of last days (lastdays.go).
	lastDaysBuilt atomic.Bool
	// reviewsBuilt: this Store built the index of reviews (reviews.go).
	reviewsBuilt atomic.Bool
}

var _ policy.Store = (*Store)(nil)

// Open returns a Store for the Redis the URL names. It does not wait for
// Redis: a server that is down now is reported, wrapped in
// policy.ErrUnavailable, by the calls that need it, so that a proxy can
// start from its snapshot file and catch up later.
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.FeedMaxLen <= 0 {
		opts.FeedMaxLen = 100000
	}
	if opts.AuditMaxLen <= 0 {
		opts.AuditMaxLen = 100000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Lineage == nil {
		opts.Lineage = policy.NewLineage("", "")
	}
	co, dur, err := clientOptions(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis store URL %s: %w", redactURL(rawURL), err)
	}
	feedDown := newShardsDown(opts.Logger)
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(feedDown.gauge); err != nil {
			return nil, fmt.Errorf("redis store metrics: %w", err)
		}
	}
	s := &Store{
		log:         opts.Logger,
		now:         opts.Now,
		lineage:     opts.Lineage,
		feedDown:    feedDown,
		feedMax:     opts.FeedMaxLen,
		audMax:      opts.AuditMaxLen,
		followBlock: time.Second,
		followGrace: 2 * time.Second,
		feedGap:     cmp.Or(opts.FeedGap, DefaultFeedGap),
		tailLua:     tailScript,
		waitTimeout: dur.timeout,
	}
	switch o := co.(type) {
	case *redis.Options:
		o.Dialer = rawDialer(redis.NewDialer(o))
		s.single = redis.NewClient(o)
		s.client = s.single
	case *redis.FailoverOptions:
		o.Dialer = rawDialer(plainDialer(o.DialTimeout, o.TLSConfig))
		s.single = redis.NewFailoverClient(o)
		s.client = s.single
		s.master = o.MasterName
		for _, addr := range o.SentinelAddrs {
			s.sentinels = append(s.sentinels, redis.NewSentinelClient(&redis.Options{
				Addr: addr, Username: o.SentinelUsername, Password: o.SentinelPassword,
				TLSConfig: o.TLSConfig, DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout,
				WriteTimeout: o.WriteTimeout, PoolSize: 1, MaxRetries: -1, ContextTimeoutEnabled: true,
			}))
		}

	case *redis.ClusterOptions:
		o.Dialer = rawDialer(plainDialer(o.DialTimeout, o.TLSConfig))
		s.cluster = redis.NewClusterClient(o)
		s.client = s.cluster
		s.readerPerShard = true
	}
	s.waitReplicas = dur.replicas
	return s, nil
}

// Close releases the connections.
func (s *Store) Close() error {
	for _, c := range s.sentinels {
		c.Close()
	}
	return s.client.Close()
}

// durability is what the URL's wait_replicas and wait_timeout ask for.
type durability struct {
	replicas int
	timeout  time.Duration
}

// clientOptions parses a URL into the options of the client it selects
// and the store's own parameters (see the package comment).
func clientOptions(rawURL string) (any, durability, error) {
	dur := durability{replicas: -1, timeout: 2 * time.Second}
	o, err := parseURL(rawURL, &dur)
	if _, sentinel := o.(*redis.FailoverOptions); dur.replicas < 0 && sentinel {
		dur.replicas = 1
	}
	dur.replicas = max(dur.replicas, 0)
	return o, dur, err
}

func parseURL(rawURL string, dur *durability) (any, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok || (scheme != "redis" && scheme != "rediss") {
		return nil, errors.New("want a redis:// or rediss:// URL")
	}
	// net/url does not accept "h1:6379,h2:6379" as a host: keep the first
	// and pass the others as go-redis's addr parameters.
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hostlist := "", authority
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		userinfo, hostlist = authority[:at+1], authority[at+1:]
	}
	hosts := strings.Split(hostlist, ",")
	u, err := url.Parse(scheme + "://" + userinfo + hosts[0] + tail)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	for _, h := range hosts[1:] {
		if h == "" {
			return nil, errors.New("empty host in host list")
		}
		q.Add("addr", h)
	}
	cluster := len(hosts) > 1
	if v := q.Get("cluster"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("cluster=%q: want true or false", v)
		}
		cluster = b || cluster
		q.Del("cluster")
	}
	if v := q.Get("wait_replicas"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("wait_replicas=%q: want a number of replicas, 0 or more", v)
		}
		dur.replicas = n
		q.Del("wait_replicas")
	}
	if v := q.Get("wait_timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("wait_timeout=%q: want a duration such as 2s", v)
		}
		dur.timeout = d
		q.Del("wait_timeout")
	}
	sentinel := q.Get("master_name") != ""
	u.RawQuery = q.Encode()

	switch {
	case sentinel:
		o, err := redis.ParseFailoverURL(u.String())
		if err != nil {
			return nil, err
		}
		o.ContextTimeoutEnabled = true
		return o, nil
	case cluster:
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return nil, fmt.Errorf("database %q: a Cluster has only database 0", p)
		}
		u.Path = ""
		o, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, err
		}
		o.ContextTimeoutEnabled = true
		// go-redis learns a new slot map only from MOVED or READONLY
		// answers, or once a minute: a primary that died answers
		// nothing, so its promoted replica would go unused for up to a
		// minute. Asking again every second (only while commands run)
		// picks it up within one.
		o.ClusterStateReloadInterval = clusterReload
		return o, nil
	default:
		o, err := redis.ParseURL(u.String())
		if err != nil {
			return nil, err
		}
		o.ContextTimeoutEnabled = true
		return o, nil
	}
}

// rawDialer makes dial's plain TCP connections read and write with raw
// system calls (rawsock): an instance following the change feed is idle
// between two batches, and every read and write of a go-redis connection
// otherwise woke the runtime's monitor thread, which then polled every
// 20 µs: a fifth of what a change cost a receiving instance
// (docs/benchmarks.md, "What a change costs the instance that receives
// it"). TLS and unix-socket connections are left as they are.
func rawDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return rawsock.Wrap(c), nil
	}
}

// plainDialer is go-redis's own dialer for a node of a Cluster or a
// Sentinel setup, whose options hold no Dialer of their own.
func plainDialer(timeout time.Duration, tc *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return redis.NewDialer(&redis.Options{DialTimeout: cmp.Or(timeout, defaultDialTimeout), TLSConfig: tc})
}

// defaultDialTimeout is go-redis's default.
const defaultDialTimeout = 5 * time.Second

// clusterReload is how often a Cluster client re-reads the slot map.
const clusterReload = time.Second

// redactURL drops the password from a URL for error messages.
func redactURL(rawURL string) string {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return "(unparseable URL)"
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
		user, _, _ := strings.Cut(rest[:at], ":")
		rest = user + ":xxxxx" + rest[at:]
	}
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		rest = rest[:q] + "?…" // parameters may hold the master password
	}
	return scheme + "://" + rest
}

// wrap names the action that failed and, when Redis could not be reached or
// could not serve (network, timeouts, loading, failover), marks the error
// as policy.ErrUnavailable so the admin API answers 503. Both the redis
// error and the sentinel stay reachable with errors.Is.
func wrap(action string, err error) error {
	if err == nil {
		return nil
	}
	if unavailable(err) {
		return fmt.Errorf("%s: %w: %w", action, policy.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", action, err)
}

func unavailable(err error) bool {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, redis.Nil), errors.Is(err, redis.TxFailedErr):
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "NOREPLICAS", "MOVED", "ASK"} {
			if redis.HasErrorPrefix(err, p) {
				return true
			}
		}
		return false // a command Redis refused: our bug or bad data, not an outage
	}
	// Network errors, timeouts, a closed or exhausted pool.
	return true
}

// Lua scripts. They run inside MULTI as EVAL, not EVALSHA, so that a
// script cache emptied by a restart cannot fail one command of a
// transaction while the others apply.
const (
	// feedScript appends a change to a shard's feed with the next sequence
	// number. KEYS: seq, feed. ARGV: account, max length.
	feedScript = `
local seq = redis.call('INCR', KEYS[1])
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'a', ARGV[1], 's', seq, 't', ms)`

	// positionScript returns a shard's feed position: last stream ID and
	// sequence number, read together. KEYS: seq, feed.
	positionScript = `
local e = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local seq = redis.call('GET', KEYS[1]) or '0'
if #e == 0 then return {'0-0', seq} end
return {e[1][1], seq}`

	// raiseScript raises a counter to at least ARGV[1]. KEYS: counter.
	raiseScript = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 0`

	// expireScript makes a key expire no earlier than ARGV[1] (unix ms);
	// a key with no expiry gets one. KEYS: key.
	expireScript = `
local want = tonumber(ARGV[1])
if redis.call('PEXPIRETIME', KEYS[1]) < want then redis.call('PEXPIREAT', KEYS[1], want) end
return 0`

	// policyScript reads what the gate compiles of one account at one
	// instant, nil if the account is gone: the account, its rules, users
	// and devices. KEYS: account, rules, users, devices. Each hash comes
	// back packed in one string, every value after its length in 4 bytes,
	// big-endian (unpackValues): a reply of one string per value would
	// cost the receiver two allocations a value to take apart. The
	// devices come whether or not the account requires a known device:
	// only its document says, and reading them costs less than a second
	// round trip.
	policyScript = packLua + `
local a = redis.call('GET', KEYS[1])
if not a then return false end
return {a, pack(redis.call('HVALS', KEYS[2])), pack(redis.call('HVALS', KEYS[3])), pack(redis.call('HVALS', KEYS[4]))}`

	// packLua is policyScript's packing of a hash's values, each after
	// its length in 4 bytes, big-endian.
	packLua = `
local function pack(values)
  local parts = {}
  for i, v in ipairs(values) do
    local n = #v
    parts[2*i-1] = string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
    parts[2*i] = v
  end
  return table.concat(parts)
end
`

	// tailScript reads the change feed on from a position and, at the
	// same instant, the policy of every account its entries name, as
	// policyScript reads one: a follower that is busy gets a batch of
	// changes and what they changed in one round trip instead of two
	// (feedReader.tail). It names the accounts' keys only at run time,
	// which a Cluster refuses, so only a single node runs it.
	// One XREAD reads every feed: an XRANGE per feed took the node twice
	// as long, a fifth of the whole call (docs/benchmarks.md), and a
	// script runs alone on its node: every instance waits for it.
	// KEYS: the feeds of all shards, in order. ARGV: the most entries to
	// read from each, then per feed the last ID seen and its shard's key
	// prefix. The answer: per feed the entries after that ID, as XREAD
	// gives them (none: an empty list), then one list per
	// account named: its ID, then policyScript's four values, or only
	// the ID if the account is gone.
	tailScript = packLua + `
local args = {'XREAD', 'COUNT', ARGV[1], 'STREAMS'}
for i, key in ipairs(KEYS) do
  args[4+i] = key
  args[4+#KEYS+i] = ARGV[2*i]
end
local got = {}
for _, s in ipairs(redis.call(unpack(args)) or {}) do
  got[s[1]] = s[2]
end
local out, seen, named = {}, {}, {}
for i, key in ipairs(KEYS) do
  local entries = got[key] or {}
  out[i] = entries
  for _, e in ipairs(entries) do
    local f = e[2]
    for j = 1, #f - 1, 2 do
      if f[j] == 'a' and not seen[f[j+1]] then
        seen[f[j+1]] = true
        named[#named+1] = {ARGV[2*i+1], f[j+1]}
      end
    end
  end
end
local policies = {}
for k, n in ipairs(named) do
  local pre, id = n[1], n[2]
  local a = redis.call('GET', pre .. 'acct:' .. id)
  if a then
    policies[k] = {id, a, pack(redis.call('HVALS', pre .. 'rules:' .. id)), pack(redis.call('HVALS', pre .. 'users:' .. id)), pack(redis.call('HVALS', pre .. 'devices:' .. id))}
  else
    policies[k] = {id}
  end
end
out[#KEYS+1] = policies
return out`

	// usageScript records usage of rules that exist. KEYS: usage, rules.
	// ARGV: rule ID, hits, last use (unix ms), repeated.
	usageScript = `
for i = 1, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[2], id) == 1 then
    if tonumber(ARGV[i+1]) > 0 then redis.call('HINCRBY', KEYS[1], id .. ':h', ARGV[i+1]) end
    local last = tonumber(ARGV[i+2])
    if last > 0 then
      local cur = tonumber(redis.call('HGET', KEYS[1], id .. ':l') or '0')
      if last > cur then redis.call('HSET', KEYS[1], id .. ':l', ARGV[i+2]) end
    end
  end
end
return 0`
)
