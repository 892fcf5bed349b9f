package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// position is where a follower is in one shard's feed.
type position struct {
	id  string // last stream ID seen; "0-0" before the first
	seq int64  // its sequence number
}

// cursor is a position in every shard's feed. Its text form is
// "r1:" and, per shard, "ID/SEQ", comma-separated.
type cursor [shards]position

const cursorVersion = "r1:"

func (c *cursor) String() string {
	var b strings.Builder
	b.Grow(len(cursorVersion) + shards*24)
	b.WriteString(cursorVersion)
	for i, p := range c {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.id)
		b.WriteByte('/')
		b.WriteString(strconv.FormatInt(p.seq, 10))
	}
	return b.String()
}

func parseCursor(s string) (cursor, error) {
	var c cursor
	body, ok := strings.CutPrefix(s, cursorVersion)
	if !ok {
		return c, errors.New("not a Redis store cursor")
	}
	parts := strings.Split(body, ",")
	if len(parts) != shards {
		return c, fmt.Errorf("%d shard positions, want %d", len(parts), shards)
	}
	for i, p := range parts {
		id, seq, ok := strings.Cut(p, "/")
		n, err := strconv.ParseInt(seq, 10, 64)
		if !ok || err != nil || n < 0 || !validStreamID(id) {
			return c, fmt.Errorf("bad position %q of shard %d", p, i)
		}
		c[i] = position{id: id, seq: n}
	}
	return c, nil
}

// positions reads every shard's current feed position.
func (s *Store) positions(ctx context.Context) (cursor, error) {
	var c cursor
	var cmds [shards]*redis.Cmd
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range shards {
			cmds[i] = p.Eval(ctx, positionScript, []string{seqKey(i), feedKey(i)})
		}
		return nil
	})
	if err != nil {
		return c, wrap("read change feed position", err)
	}
	for i, cmd := range cmds {
		v, _ := cmd.Slice()
		if len(v) != 2 {
			return c, fmt.Errorf("read change feed position of shard %d: unexpected reply %v", i, cmd.Val())
		}
		id, _ := v[0].(string)
		seqStr, _ := v[1].(string)
		seq, err := strconv.ParseInt(seqStr, 10, 64)
		if err != nil || !validStreamID(id) {
			return c, fmt.Errorf("read change feed position of shard %d: unexpected reply %v", i, v)
		}
		c[i] = position{id: id, seq: seq}
	}
	return c, nil
}

// feedEntry is one change read from a shard's feed.
type feedEntry struct {
	shard   int
	id      string
	seq     int64
	account string
	ms      int64 // commit time, unix ms
}

// feedBatch is what one read of the feed returned, or why reading
// stopped.
type feedBatch struct {
	entries []feedEntry
	// policies, when not nil, are the policies of the accounts the
	// entries name, read with them (tailScript); nil for one that is gone.
	policies map[string]*policy.AccountPolicy
	err      error
}

// Follow implements policy.Source.
func (s *Store) Follow(ctx context.Context, cur string, fn func([]policy.Change)) error {
	c, err := parseCursor(cur)
	if err != nil {
		return fmt.Errorf("follow from cursor: %w: %v", policy.ErrFeedGap, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // runs after cancel: deferred calls run last-in first-out
	defer cancel()

	batches := make(chan feedBatch)
	var groups [][]int
	if s.readerPerShard {
		for i := range shards {
			groups = append(groups, []int{i})
		}
	} else {
		all := make([]int, shards)
		for i := range all {
			all[i] = i
		}
		groups = [][]int{all}
	}
	// With a reader per shard, a shard whose node is lost (a Cluster
	// primary) is retried on its own while the others go on: their
	// accounts' changes keep reaching the engine. Only when every shard
	// is unreachable does Follow end, as the store is then down.
	var down *shardsDown
	if len(groups) > 1 {
		down = s.feedDown
		defer down.reset()
	}
	deliver := func(b feedBatch) {
		changes := make([]policy.Change, len(b.entries))
		for i, e := range b.entries {
			c[e.shard] = position{id: e.id, seq: e.seq}
			changes[i] = policy.Change{Account: e.account, Cursor: c.String(), Time: time.UnixMilli(e.ms)}
			if b.policies != nil {
				changes[i].Loaded, changes[i].Policy = true, b.policies[e.account]
			}
		}
		fn(changes)
	}
	readers := make([]*feedReader, len(groups))
	for j, g := range groups {
		r := &feedReader{s: s, shards: g, pos: make([]position, len(g)), down: down}
		for i, sh := range g {
			r.pos[i] = c[sh]
		}
		readers[j] = r
	}
	if len(readers) == 1 {
		// One reader hands its batches to fn itself: a hand-over to
		// another goroutine would cost every batch a wake-up, which at a
		// steady trickle of changes is much of what a change costs.
		var failed error
		readers[0].run(ctx, func(b feedBatch) bool {
			if b.err != nil {
				failed = b.err
				return false
			}
			deliver(b)
			return ctx.Err() == nil
		})
		if failed != nil {
			return failed
		}
		return ctx.Err()
	}
	for _, r := range readers {
		wg.Go(func() {
			r.run(ctx, func(b feedBatch) bool {
				select {
				case batches <- b:
					return true
				case <-ctx.Done():
					return false
				}
			})
		})
	}

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b := <-batches:
			if b.err != nil {
				return b.err
			}
			deliver(b)
		}
	}
}

// feedReader tails some shards' feeds on one connection of its own, so that
// it can block on XREAD and be woken with CLIENT UNBLOCK.
type feedReader struct {
	s      *Store
	shards []int
	pos    []position // of each of shards
	// down, with a reader per shard, records this reader's shard as
	// unreachable while it retries; nil: any failure ends Follow.
	down *shardsDown

	remote atomic.Pointer[string] // the address the connection went to
}

// run reads until ctx ends or out refuses a batch (returns false). An
// error that ends reading is handed to out as a batch.
func (r *feedReader) run(ctx context.Context, out func(feedBatch) bool) {
	for {
		err := r.read(ctx, out)
		if err == nil || ctx.Err() != nil {
			return
		}
		if r.down != nil && errors.Is(err, policy.ErrUnavailable) && !errors.Is(err, policy.ErrFeedGap) &&
			!r.down.mark(r.shards[0], err) {
			// Others still answer: retry this shard alone.
			select {
			case <-time.After(r.s.followBlock):
				continue
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() == nil {
			out(feedBatch{err: err})
		}
		return
	}
}

func (r *feedReader) read(ctx context.Context, out func(feedBatch) bool) error {
	node, conn, err := r.s.feedConn(ctx, r.shards[0], &r.remote)
	if err != nil {
		return err
	}
	defer conn.Close()
	ictx, cancel := context.WithTimeout(ctx, r.s.followGrace)
	id, err := conn.ClientID(ictx).Result()
	cancel()
	if err != nil {
		return wrap("follow change feed", err)
	}
	done := make(chan struct{})
	unblocked := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(unblocked)
		unblockReader(ctx, node, id, done)
	})
	defer func() {
		close(done)
		if !stop() {
			<-unblocked
		}
	}()

	args := &redis.XReadArgs{Streams: make([]string, 2*len(r.shards)), Count: 1000, Block: r.s.followBlock}
	for i, sh := range r.shards {
		args.Streams[i] = feedKey(sh)
	}
	// On a single node, what XREAD returns only says that changes came:
	// tail reads them and their accounts together.
	tailing := r.s.cluster == nil && len(r.shards) == shards && !r.s.noTail.Load()
	if tailing {
		args.Count = 1
	}
	lastMasterCheck := time.Now()
	for {
		if r.s.sentinels != nil && time.Since(lastMasterCheck) >= r.s.followBlock {
			lastMasterCheck = time.Now()
			if err := r.checkMaster(ctx); err != nil {
				return err
			}
		}
		for i, p := range r.pos {
			args.Streams[len(r.shards)+i] = p.id
		}
		// The deadline tells a hung server from an idle feed.
		rctx, cancel := context.WithTimeout(ctx, r.s.followBlock+r.s.followGrace)
		streams, err := conn.XRead(rctx, args).Result()
		returned := time.Now()
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, redis.Nil):
			if err := r.checkSeqs(ctx, conn); err != nil {
				return err
			}
			r.down.clear(r.shards[0])
			continue
		case err != nil:
			return wrap("follow change feed", err)
		}
		r.down.clear(r.shards[0])
		if tailing {
			stop, err := r.tail(ctx, conn, out)
			if err != nil || stop {
				return err
			}
			if tailing = !r.s.noTail.Load(); !tailing {
				args.Count = 1000
			}
			continue
		}
		entries, err := r.entries(streams)
		if err != nil {
			return err
		}
		if !out(feedBatch{entries: entries}) {
			return nil
		}
		if !r.pause(ctx, returned) {
			return nil
		}
	}
}

// pause waits until the feed gap since returned has passed, so that the
// changes that come meanwhile are read together, and reports false if ctx
// ended first.
func (r *feedReader) pause(ctx context.Context, returned time.Time) bool {
	wait := r.s.feedGap - time.Since(returned)
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// tailCount is the most entries tail reads of each shard's feed at once:
// a script runs alone on its node, and up to 16 × 32 accounts' policies
// keep it short.
const tailCount = 32

// tail reads the feed on from the reader's positions together with the
// policies of the accounts it names (tailScript) and hands them to out,
// one round trip a batch instead of a read and a load. Reads are the
// feed gap apart, as XREAD's are. While batches come with more than one
// change it goes on without waiting in XREAD first: at a steady stream of
// changes that wait would return at once and cost a round trip for
// nothing. It returns (false, nil) after a lone change or none, when the
// next one is best waited for in XREAD, and stop if ctx ended or out
// refused a batch.
// A node that refuses the script (a server that wants every key a script
// touches named, as policyScript does and tailScript cannot) turns it off
// for the store, with a warning; the reader then reads and loads as on a
// Cluster.
func (r *feedReader) tail(ctx context.Context, conn *redis.Client, out func(feedBatch) bool) (stop bool, err error) {
	keys := make([]string, len(r.shards))
	argv := make([]any, 1+2*len(r.shards))
	argv[0] = tailCount
	for i, sh := range r.shards {
		keys[i], argv[2+2*i] = feedKey(sh), shardPrefix(sh)
	}
	for first := true; ; {
		for i := range r.shards {
			argv[1+2*i] = r.pos[i].id
		}
		rctx, cancel := context.WithTimeout(ctx, r.s.followGrace)
		v, err := conn.EvalRO(rctx, r.s.tailLua, keys, argv...).Slice()
		returned := time.Now()
		cancel()
		switch {
		case ctx.Err() != nil:
			return true, nil
		case err != nil && !unavailable(err):
			r.turnOffTail(err)
			return false, nil
		case err != nil:
			return false, wrap("follow change feed", err)
		}
		b, err := r.tailReply(v)
		if err != nil {
			return false, err
		}
		if len(b.entries) == 0 {
			if first {
				// XREAD saw a change past the positions the script
				// found nothing after: reading on this way would spin.
				r.turnOffTail(errors.New("the tail script found no change where XREAD found one"))
			}
			return false, nil
		}
		first = false
		if !out(b) {
			return true, nil
		}
		// A lone change: the feed is not busy, the next one is waited
		// for in XREAD, after the gap as with every read.
		if !r.pause(ctx, returned) {
			return true, nil
		}
		if len(b.entries) < 2 {
			return false, nil
		}
	}
}

// turnOffTail turns the tail script off for the store, saying why once.
func (r *feedReader) turnOffTail(err error) {
	if !r.s.noTail.Swap(true) {
		r.s.log.Warn("reading the change feed with its policies in one round trip failed; reading and loading apart from now on",
			zap.Error(err))
	}
}

// tailReply takes apart tailScript's answer: the entries as XREAD's, and
// the named accounts' policies. An answer it cannot read, or one that
// leaves an entry's account out, is a gap: the engine reloads.
func (r *feedReader) tailReply(v []any) (feedBatch, error) {
	bad := func(what string) (feedBatch, error) {
		return feedBatch{}, fmt.Errorf("follow change feed: %w: unexpected reply of the tail script (%s)", policy.ErrFeedGap, what)
	}
	if len(v) != len(r.shards)+1 {
		return bad("length")
	}
	per := make([][]feedEntry, len(r.shards))
	for i, sh := range r.shards {
		list, ok := v[i].([]any)
		if !ok {
			return bad("entries")
		}
		if len(list) > 0 {
			per[i] = make([]feedEntry, len(list))
		}
		for j, e := range list {
			pair, ok := e.([]any)
			if !ok || len(pair) != 2 {
				return bad("entry")
			}
			id, ok1 := pair[0].(string)
			fields, ok2 := pair[1].([]any)
			if !ok1 || !ok2 || len(fields)%2 != 0 {
				return bad("entry")
			}
			var a, seq, ms string
			for k := 0; k < len(fields); k += 2 {
				name, _ := fields[k].(string)
				value, _ := fields[k+1].(string)
				switch name {
				case "a":
					a = value
				case "s":
					seq = value
				case "t":
					ms = value
				}
			}
			var err error
			if per[i][j], err = newEntry(sh, id, a, seq, ms); err != nil {
				return feedBatch{}, err
			}
		}
	}
	named, ok := v[len(r.shards)].([]any)
	if !ok {
		return bad("policies")
	}
	policies := make(map[string]*policy.AccountPolicy, len(named))
	ps := make([]policy.AccountPolicy, len(named))
	for i, n := range named {
		pv, ok := n.([]any)
		if !ok || len(pv) == 0 {
			return bad("policy")
		}
		id, ok := pv[0].(string)
		if !ok {
			return bad("policy")
		}
		if len(pv) == 1 {
			policies[id] = nil // gone
			continue
		}
		if err := r.s.decodePolicy(&ps[i], id, pv[1:]); err != nil {
			return feedBatch{}, fmt.Errorf("follow change feed: %w: %v", policy.ErrFeedGap, err)
		}
		policies[id] = &ps[i]
	}
	for _, list := range per {
		for _, e := range list {
			if _, ok := policies[e.account]; !ok {
				return bad("an account left out")
			}
		}
	}
	// The entries are checked and taken in order only now: a reply
	// refused above leaves the positions as they were.
	entries, err := r.take(per)
	if err != nil {
		return feedBatch{}, err
	}
	return feedBatch{entries: entries, policies: policies}, nil
}

// feedConn returns a client of one connection to the node serving a shard,
// and that node's pooled client. A reader blocks its connection for as long
// as it follows, so it does not take it from the pool other calls share:
// on a Cluster, one follower holds 16. The address the connection goes to
// is stored in remote, with Sentinel.
func (s *Store) feedConn(ctx context.Context, shard int, remote *atomic.Pointer[string]) (node, conn *redis.Client, err error) {
	node = s.single
	if s.cluster != nil {
		node, err = s.cluster.MasterForKey(ctx, feedKey(shard))
		if err != nil {
			return nil, nil, wrap("follow change feed", err)
		}
	}
	o := *node.Options()
	o.PoolSize, o.MinIdleConns, o.MaxIdleConns, o.MaxActiveConns, o.MaxConcurrentDials = 1, 0, 1, 1, 1
	o.PipelinePoolSize = -1
	// A failed read ends Follow at once; the caller decides when to retry.
	o.MaxRetries = -1
	o.ClientSideCacheConfig, o.ClientSideCache, o.AutoPipelineOptions = nil, nil, nil
	if dial := o.Dialer; s.sentinels != nil && dial != nil {
		// The failover client's dialer asks the Sentinels where to go.
		o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err == nil {
				a := c.RemoteAddr().String()
				remote.Store(&a)
			}
			return c, err
		}
	}
	return node, redis.NewClient(&o), nil
}

// checkMaster ends the reader with policy.ErrFeedGap when the Sentinels
// name another primary than the one it reads: its connection would
// otherwise stay on the old primary, which takes no more writes, or takes
// writes that its demotion will throw away. The engine then reloads from
// the new primary. A Sentinel that does not answer proves nothing.
func (r *feedReader) checkMaster(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, r.s.followGrace)
	defer cancel()
	master, err := r.s.sentinelMaster(cctx)
	p := r.remote.Load()
	if err != nil || p == nil || sameAddr(cctx, *p, master) {
		return nil
	}
	return fmt.Errorf("follow change feed: the primary moved from %s to %s: %w", *p, master, policy.ErrFeedGap)
}

// sameAddr reports whether a connection's remote address (an IP and port)
// is the address a Sentinel names, which may be a host name (with
// announce-hostnames). When it cannot tell, it says yes: only a proven
// move ends the reader.
func sameAddr(ctx context.Context, remote, named string) bool {
	rap, err := netip.ParseAddrPort(remote)
	host, port, err2 := net.SplitHostPort(named)
	if err != nil || err2 != nil {
		return true
	}
	if strconv.Itoa(int(rap.Port())) != port {
		return false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap() == rap.Addr().Unmap()
	}
	ips, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return true
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil && a.Unmap() == rap.Addr().Unmap() {
			return true
		}
	}
	return false
}

// sentinelMaster asks the Sentinels, in turn, where the primary is.
func (s *Store) sentinelMaster(ctx context.Context) (string, error) {
	err := errors.New("no sentinel")
	for _, c := range s.sentinels {
		var v []string
		v, err = c.GetMasterAddrByName(ctx, s.master).Result()
		if err == nil && len(v) == 2 {
			return net.JoinHostPort(v[0], v[1]), nil
		}
	}
	return "", wrap("ask the sentinels for the primary", err)
}

// unblockReader wakes the reader's XREAD until the reader has returned: one
// CLIENT UNBLOCK can miss it between two reads.
func unblockReader(ctx context.Context, node *redis.Client, id int64, done <-chan struct{}) {
	ctx = context.WithoutCancel(ctx)
	for {
		uctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		node.ClientUnblock(uctx, id)
		cancel()
		select {
		case <-done:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// entries checks and orders what XREAD returned (take).
func (r *feedReader) entries(streams []redis.XStream) ([]feedEntry, error) {
	per := make([][]feedEntry, len(r.shards))
	for _, st := range streams {
		i := slices.IndexFunc(r.shards, func(sh int) bool { return feedKey(sh) == st.Stream })
		if i < 0 {
			return nil, fmt.Errorf("follow change feed: XREAD returned unasked stream %q", st.Stream)
		}
		for _, m := range st.Messages {
			a, _ := m.Values["a"].(string)
			seq, _ := m.Values["s"].(string)
			ms, _ := m.Values["t"].(string)
			e, err := newEntry(r.shards[i], m.ID, a, seq, ms)
			if err != nil {
				return nil, err
			}
			per[i] = append(per[i], e)
		}
	}
	return r.take(per)
}

// take checks the entries read of each of the reader's shards (per, in
// the order of r.shards) and moves the reader on past them, in commit
// order. A sequence number that is not the next one means entries were
// trimmed before this reader saw them.
func (r *feedReader) take(per [][]feedEntry) ([]feedEntry, error) {
	var out []feedEntry
	for i, list := range per {
		for _, e := range list {
			if want := r.pos[i].seq + 1; e.seq != want {
				return nil, fmt.Errorf("follow change feed of shard %d: got change %d, want %d: %w",
					e.shard, e.seq, want, policy.ErrFeedGap)
			}
			r.pos[i] = position{id: e.id, seq: e.seq}
			out = append(out, e)
		}
	}
	// Shards have no common order; commit time comes closest.
	slices.SortStableFunc(out, func(a, b feedEntry) int { return cmp.Compare(a.ms, b.ms) })
	return out, nil
}

// newEntry makes a feed entry of its fields: the account (a), its
// sequence number (s) and commit time (t). A malformed entry cannot be
// applied: the error is a gap, and reloading skips it.
func newEntry(shard int, id, acct, seq, ms string) (feedEntry, error) {
	e := feedEntry{shard: shard, id: id, account: acct}
	var err1, err2 error
	e.seq, err1 = strconv.ParseInt(seq, 10, 64)
	e.ms, err2 = strconv.ParseInt(ms, 10, 64)
	if acct == "" || err1 != nil || err2 != nil {
		return e, fmt.Errorf("follow change feed: %w: malformed feed entry %s of shard %d: a=%q s=%q t=%q",
			policy.ErrFeedGap, id, shard, acct, seq, ms)
	}
	return e, nil
}

// checkSeqs runs while the feed is idle: a sequence number below the
// reader's means Redis lost data (flushed, or restarted from an older
// copy), which no new entry might ever reveal.
func (r *feedReader) checkSeqs(ctx context.Context, conn *redis.Client) error {
	gets := make([]*redis.StringCmd, len(r.shards))
	cctx, cancel := context.WithTimeout(ctx, r.s.followGrace)
	defer cancel()
	_, err := conn.Pipelined(cctx, func(p redis.Pipeliner) error {
		for i, sh := range r.shards {
			gets[i] = p.Get(ctx, seqKey(sh))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		if ctx.Err() != nil {
			return nil
		}
		return wrap("follow change feed", err)
	}
	for i, g := range gets {
		n, _ := strconv.ParseInt(g.Val(), 10, 64) // missing: 0
		if n < r.pos[i].seq {
			return fmt.Errorf("follow change feed of shard %d: Redis is at change %d, the cursor at %d (data lost?): %w",
				r.shards[i], n, r.pos[i].seq, policy.ErrFeedGap)
		}
	}
	return nil
}

// shardsDown is which change-feed shards Follow cannot read while it
// follows the others: on a Cluster, the shards of a lost node. It is
// reported as gatekeeper_store_feed_shards_down, in the log, and by
// Store.FeedHealth for /readyz. A nil *shardsDown records nothing.
type shardsDown struct {
	log   *zap.Logger
	gauge prometheus.Gauge

	mu    sync.Mutex
	since map[int]time.Time
}

func newShardsDown(log *zap.Logger) *shardsDown {
	return &shardsDown{log: log, since: map[int]time.Time{},
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatekeeper_store_feed_shards_down",
			Help: "Change-feed shards (of 16) that cannot be read, as when a Redis Cluster node is lost: writes to their accounts fail and their changes wait; the other shards are followed.",
		})}
}

// mark records shard as unreachable and reports whether every shard now
// is, when following them one by one makes no more sense.
func (d *shardsDown) mark(shard int, err error) (all bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.since[shard]; !ok {
		d.since[shard] = time.Now()
		d.gauge.Set(float64(len(d.since)))
		d.log.Error("change feed shard unreachable (a Cluster node lost?): writes to its accounts fail and their changes wait; following the others",
			zap.Int("shard", shard), zap.Int("shards_down", len(d.since)), zap.Error(err))
	}
	return len(d.since) == shards
}

// clear records shard as read again.
func (d *shardsDown) clear(shard int) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.since[shard]; ok {
		delete(d.since, shard)
		d.gauge.Set(float64(len(d.since)))
		d.log.Info("change feed shard reachable again", zap.Int("shard", shard),
			zap.Duration("down_for", time.Since(t)), zap.Int("shards_down", len(d.since)))
	}
}

// reset forgets every shard: nobody follows them any more.
func (d *shardsDown) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.since)
	d.gauge.Set(0)
}

// FeedHealth says which change-feed shards cannot be read, for /readyz.
// It is always ok: the engine keeps enforcing, and a store down as a whole
// is the engine's to report.
func (s *Store) FeedHealth() (ok bool, detail string) {
	d := s.feedDown
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.since) == 0 {
		return true, ""
	}
	var list []int
	var first time.Time
	for sh, t := range d.since {
		list = append(list, sh)
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	slices.Sort(list)
	return true, fmt.Sprintf("change feed shards %v of %d unreachable for %v (a Cluster node lost?): writes to their accounts fail, their changes wait; enforcing the last good policy for them",
		list, shards, time.Since(first).Round(time.Second))
}
