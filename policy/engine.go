package policy

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// UsageRecorder is where the engine flushes rule usage.
type UsageRecorder interface {
	RecordUsage(ctx context.Context, u []Usage) error
}

// Options configure an Engine. Only Source is required.
type Options struct {
	// Source is the store the policy comes from.
	Source Source
	// Usage receives aggregated rule usage. If nil, usage is not recorded.
	Usage UsageRecorder
	// SnapshotPath is the last-good-policy file. If empty, none is kept.
	SnapshotPath string
	// Logger; if nil, nothing is logged.
	Logger *zap.Logger
	// Registerer receives the engine's metrics. If nil, none are registered.
	Registerer prometheus.Registerer
	// LoadTimeout bounds the initial load from the store. If zero, 10s.
	LoadTimeout time.Duration
	// SnapshotInterval is the least time between two writes of the
	// snapshot file or its journal. If zero, 250ms.
	SnapshotInterval time.Duration
	// UsageInterval is how often rule usage is flushed. If zero, 30s.
	UsageInterval time.Duration
	// RetryMax caps the back-off between reconnection attempts. If zero, 5s.
	RetryMax time.Duration
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
	// AccountSeries is how many accounts a fleet may hold and still get
	// per-account series of gatekeeper_policy_rules and
	// gatekeeper_account_mode; above it, those of this many accounts
	// only (see rulesCollector, modeCollector). If zero,
	// DefaultAccountSeries; negative: none.
	AccountSeries int
}

// DefaultAccountSeries is Options.AccountSeries's default: a vendor's
// 100,000 accounts would be 200,000 series on every instance.
const DefaultAccountSeries = 1000

// ChangeFunc is told about every change the engine publishes, with the
// engine's table. accounts lists the accounts whose policy changed; nil
// means any may have.
type ChangeFunc func(t *Table, accounts []string)

// Engine keeps the published Table in step with a Source.
type Engine struct {
	opts Options
	log  *zap.Logger
	now  func() time.Time

	table *Table // one for the engine's life: changes go into it

	mu sync.Mutex // serialises publication; readers never take it
	// beforePublish, when set by a test, runs just before a publication
	// takes mu: where another publication can slip in.
	beforePublish func()
	listeners     []ChangeFunc
	expiries      expiryHeap
	wakeup        chan struct{} // expiry schedule changed
	// armed is when runExpiries' timer fires, under mu: only an expiry
	// earlier than that needs to wake it. A wake-up per change was a
	// goroutine and a thread woken for nothing on every feed batch.
	armed time.Time

	ready       atomic.Bool
	storeUp     atomic.Bool
	fromStore   atomic.Bool // the table reflects the store, not just a snapshot file
	mismatch    atomic.Bool // the store's generation is not the table's
	problem     atomic.Pointer[string]
	snapshotDue chan struct{}

	// The accounts changed since the last snapshot write, for its
	// journal, or that the whole table was replaced.
	snapMu      sync.Mutex
	snapChanged map[string]struct{}
	snapAll     bool

	usageMu sync.Mutex
	usage   map[usageKey]*usageCount

	metrics engineMetrics
}

type usageKey struct {
	account string
	rule    RuleID
}

type usageCount struct {
	last time.Time
	hits uint64
}

// maxUsageEntries bounds the usage kept between flushes when the store is
// unreachable.
const maxUsageEntries = 1 << 18

// NewEngine returns an engine that denies everything until Start succeeds.
func NewEngine(opts Options) (*Engine, error) {
	if opts.Source == nil {
		return nil, errors.New("policy engine: no source")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.LoadTimeout <= 0 {
		opts.LoadTimeout = 10 * time.Second
	}
	if opts.SnapshotInterval <= 0 {
		opts.SnapshotInterval = 250 * time.Millisecond
	}
	if opts.UsageInterval <= 0 {
		opts.UsageInterval = 30 * time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AccountSeries == 0 {
		opts.AccountSeries = DefaultAccountSeries
	}
	e := &Engine{
		opts:        opts,
		log:         opts.Logger,
		now:         opts.Now,
		wakeup:      make(chan struct{}, 1),
		snapshotDue: make(chan struct{}, 1),
		snapChanged: make(map[string]struct{}),
		usage:       make(map[usageKey]*usageCount),
	}
	e.table = &Table{}
	e.metrics = newEngineMetrics(e)
	if opts.Registerer != nil {
		if err := e.metrics.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("register policy metrics: %w", err)
		}
	}
	return e, nil
}

// Table returns the live table. It never returns nil.
func (e *Engine) Table() *Table { return e.table }

// Check decides against the live table.
func (e *Engine) Check(account string, addr netip.Addr) Decision {
	return e.table.Check(account, addr)
}

// OnChange registers fn to be called, in publication order, after every
// change. fn runs while publication is held, so it must return quickly.
func (e *Engine) OnChange(fn ChangeFunc) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.listeners = append(e.listeners, fn)
}

// Ready reports whether the engine enforces a policy from the store or a
// snapshot file, and if not, why.
func (e *Engine) Ready() (bool, string) {
	var why string
	if p := e.problem.Load(); p != nil {
		why = *p
	}
	return e.ready.Load(), why
}

// StoreUp reports whether the store answered the last attempt.
func (e *Engine) StoreUp() bool { return e.storeUp.Load() }

// Start loads the policy: from the store if it answers within LoadTimeout,
// else from the snapshot file. With neither, the engine denies everything,
// reports not ready, and Start still returns nil: Run keeps trying the store.
// Only a snapshot file that exists but is corrupt is an error worth
// reporting here, and even then the engine stays closed rather than open.
//
// A good snapshot file is what this instance enforced last: a store that
// answers with another generation (it lost its data) is refused for it,
// with the same alarm a running engine raises, rather than enforcing an
// empty policy.
func (e *Engine) Start(ctx context.Context) error {
	var snap *Data
	var written time.Time
	serr := os.ErrNotExist
	if e.opts.SnapshotPath != "" {
		snap, written, serr = ReadSnapshotFile(e.opts.SnapshotPath)
		if serr == nil && snap.Generation != "" {
			// Not ready yet: reload decides between it and the store.
			e.publishAll(snap, compileAll(snap, e.now()))
		}
	}
	lctx, cancel := context.WithTimeout(ctx, e.opts.LoadTimeout)
	defer cancel()
	err := e.reload(lctx)
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrGenerationMismatch) {
		e.ready.Store(true)
		e.log.Warn("enforcing policy from snapshot file: the store is not the one it came from",
			zap.String("path", e.opts.SnapshotPath), zap.Time("written", written),
			zap.Int("accounts", e.Table().Accounts()), zap.Int("rules", e.Table().Rules()))
		return nil
	}
	e.log.Warn("policy store unreachable at start, trying the snapshot file", zap.Error(err))
	if e.opts.SnapshotPath == "" {
		e.setProblem("store unreachable and no snapshot file configured: denying everything")
		return nil
	}
	switch {
	case errors.Is(serr, os.ErrNotExist):
		e.setProblem("store unreachable and no snapshot file yet: denying everything")
		return nil
	case serr != nil:
		e.setProblem("store unreachable and the snapshot file is corrupt: denying everything")
		return fmt.Errorf("read snapshot %s: %w", e.opts.SnapshotPath, serr)
	}
	e.publishAll(snap, compileAll(snap, e.now()))
	t := e.Table()
	e.ready.Store(true)
	e.setProblem("store unreachable: enforcing the snapshot file")
	e.log.Warn("enforcing policy from snapshot file",
		zap.String("path", e.opts.SnapshotPath), zap.Time("written", written),
		zap.Int("accounts", t.Accounts()), zap.Int("rules", t.Rules()))
	return nil
}

// GenerationMismatch reports whether the store answered, at the last
// attempt, with another generation than the enforced policy's: it lost its
// data. Nothing should be created on it until it is re-seeded.
func (e *Engine) GenerationMismatch() bool { return e.mismatch.Load() }

// Run follows the store's change feed, applies expiries and flushes usage
// until ctx ends. It reconnects and reloads by itself after outages.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(3)
	go func() { defer wg.Done(); e.runExpiries(ctx) }()
	go func() { defer wg.Done(); e.runSnapshots(ctx) }()
	go func() { defer wg.Done(); e.runUsage(ctx) }()
	e.follow(ctx)
	return nil
}

// follow tails the feed; on any failure it backs off, reloads in full and
// tails again.
func (e *Engine) follow(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if !e.fromStore.Load() {
			if err := e.reload(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				e.log.Warn("policy reload failed", zap.Error(err), zap.Duration("retry_in", backoff))
				sleep(ctx, backoff)
				backoff = min(backoff*2, e.opts.RetryMax)
				continue
			}
		}
		backoff = 100 * time.Millisecond
		err := e.followFrom(ctx, e.Table().cursor())
		if ctx.Err() != nil {
			return
		}
		e.fromStore.Store(false)
		var af applyFailed
		switch {
		case errors.As(err, &af):
			// The feed is fine but a change could not be loaded: reload
			// in full, or that account would stay stale.
			e.log.Warn("apply policy change failed, reloading", zap.Error(af.err))
		case errors.Is(err, ErrFeedGap):
			e.log.Info("change feed has a gap, reloading in full")
		default:
			e.markDown(err)
			sleep(ctx, backoff)
		}
	}
}

// applyFailed ends a follow whose change could not be applied.
type applyFailed struct{ err error }

func (a applyFailed) Error() string { return a.err.Error() }

// followFrom follows the feed from cursor until it fails, ctx ends, or a
// change cannot be applied (applyFailed): no change is ever skipped.
func (e *Engine) followFrom(ctx context.Context, cursor string) error {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var failed error
	err := e.opts.Source.Follow(fctx, cursor, func(batch []Change) {
		if failed != nil {
			return
		}
		if err := e.apply(fctx, batch); err != nil {
			failed = err
			cancel()
		}
	})
	if failed != nil && ctx.Err() == nil {
		return applyFailed{failed}
	}
	return err
}

func (e *Engine) markDown(err error) {
	if e.storeUp.Swap(false) {
		e.log.Error("policy store unreachable, enforcing the last good policy", zap.Error(err))
	}
	e.setProblem("store unreachable: enforcing the last good policy")
}

// reload loads the whole policy and publishes it, unless the store's
// generation says it is not the store the current policy came from.
func (e *Engine) reload(ctx context.Context) error {
	start := e.now()
	d, err := e.opts.Source.LoadPolicy(ctx)
	if err != nil {
		e.markDown(err)
		return fmt.Errorf("load policy: %w", err)
	}
	cur := e.Table()
	if gen := cur.generation(); gen != "" && d.Generation != gen {
		e.storeUp.Store(true)
		e.metrics.generationMismatch.Set(1)
		e.mismatch.Store(true)
		msg := fmt.Sprintf("store generation %q differs from the enforced policy's %q: the store may have lost its data; still enforcing the last good policy (re-seed the store from the snapshot)", d.Generation, gen)
		e.setProblem(msg)
		e.log.Error("refusing to load policy from a store that lost its data",
			zap.String("store_generation", d.Generation), zap.String("enforced_generation", gen))
		return fmt.Errorf("%w: %s", ErrGenerationMismatch, msg)
	}
	e.metrics.generationMismatch.Set(0)
	e.mismatch.Store(false)
	e.publishAll(d, compileAll(d, e.now()))
	t := e.Table()
	e.storeUp.Store(true)
	e.fromStore.Store(true)
	e.ready.Store(true)
	e.problem.Store(nil)
	e.log.Info("policy loaded", zap.Int("accounts", t.Accounts()), zap.Int("rules", t.Rules()),
		zap.Duration("took", e.now().Sub(start)))
	e.requestSnapshot()
	return nil
}

// apply reloads the accounts a batch of changes names and publishes them.
func (e *Engine) apply(ctx context.Context, batch []Change) error {
	if len(batch) == 0 {
		return nil
	}
	if e.Table().generation() == "" {
		// The policy came from a store with no generation (a new one);
		// the change is likely its first account, which gave it one.
		// Only a full load says which, and without it a store that later
		// lost its data would pass for an empty policy.
		return e.reload(ctx)
	}
	now := e.now()
	var ids []string
	var loaded []*AccountPolicy
	seen := make(map[string]bool, len(batch))
	preloaded := true
	for _, c := range batch {
		preloaded = preloaded && c.Loaded
		if !seen[c.Account] {
			seen[c.Account] = true
			ids = append(ids, c.Account)
			loaded = append(loaded, c.Policy)
		}
	}
	if !preloaded {
		var err error
		if loaded, err = e.loadAccounts(ctx, ids); err != nil {
			return err
		}
	}
	changed := make(map[string]*accountTable, len(ids))
	for i, id := range ids {
		if loaded[i] == nil {
			changed[id] = nil
			continue
		}
		// The published table is only a base to share structure with: the
		// result is the store's policy, whichever table that is.
		changed[id] = recompile(e.table.account(id), *loaded[i], now)
	}
	last := batch[len(batch)-1]
	e.publish(changed, last.Cursor)
	e.storeUp.Store(true)
	if !last.Time.IsZero() {
		e.metrics.syncLag.Set(max(0, now.Sub(last.Time).Seconds()))
	}
	e.requestSnapshot()
	return nil
}

// lock takes mu for a publication.
func (e *Engine) lock() {
	if e.beforePublish != nil {
		e.beforePublish()
	}
	e.mu.Lock()
}

// publishAll makes the table hold exactly the accounts compiled from d.
// loadConcurrency bounds the account loads of one batch in flight: a
// follower behind by a thousand changes waits for round trips to the
// store in parallel rather than one after the other.
const loadConcurrency = 16

// batchSource is a Source that loads many accounts in one round trip
// (redisstore). Without it, loadAccounts asks for them concurrently one by
// one. Of each account it need fill in only what compileAccount reads:
// ID, Mode and Settings.
type batchSource interface {
	LoadAccountPolicies(ctx context.Context, ids []string) ([]*AccountPolicy, error)
}

// loadAccounts loads the policies of ids, nil for an account that is gone.
func (e *Engine) loadAccounts(ctx context.Context, ids []string) ([]*AccountPolicy, error) {
	if b, ok := e.opts.Source.(batchSource); ok {
		out, err := b.LoadAccountPolicies(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("load policies of %d accounts: %w", len(ids), err)
		}
		if len(out) != len(ids) {
			return nil, fmt.Errorf("load policies of %d accounts: the store answered %d", len(ids), len(out))
		}
		return out, nil
	}
	out := make([]*AccountPolicy, len(ids))
	errs := make([]error, len(ids))
	load := func(i int) {
		p, err := e.opts.Source.LoadAccountPolicy(ctx, ids[i])
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			errs[i] = fmt.Errorf("load policy of %s: %w", ids[i], err)
		default:
			out[i] = &p
		}
	}
	if len(ids) == 1 {
		load(0)
		return out, errs[0]
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(len(ids), loadConcurrency) {
		wg.Go(func() {
			for i := range next {
				load(i)
			}
		})
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	return out, errors.Join(errs...)
}

func (e *Engine) publishAll(d *Data, accounts map[string]*accountTable) {
	e.lock()
	defer e.mu.Unlock()
	e.table.replaceAll(accounts, d.Generation, d.Cursor)
	e.noteReplaced()
	e.expiries = e.expiries[:0]
	for id, at := range accounts {
		if at.nextExpiry != 0 {
			e.expiries = append(e.expiries, expiry{at: at.nextExpiryTime(), account: id})
		}
	}
	heap.Init(&e.expiries)
	e.notify(nil)
}

// publish swaps in a table with the changed accounts replaced. cursor, when
// not empty, is the feed position the new table reflects. The accounts come
// from the store, which is never older than the published table.
func (e *Engine) publish(changed map[string]*accountTable, cursor string) {
	e.lock()
	defer e.mu.Unlock()
	e.publishLocked(changed, cursor)
}

// publishLocked is publish with e.mu held. Its cost is that of the
// changed accounts, whatever the number of the others.
func (e *Engine) publishLocked(changed map[string]*accountTable, cursor string) {
	e.table.set(changed)
	if cursor != "" {
		e.table.setCursor(cursor)
	}
	ids := make([]string, 0, len(changed))
	for id, at := range changed {
		ids = append(ids, id)
		if at != nil && at.nextExpiry != 0 {
			heap.Push(&e.expiries, expiry{at: at.nextExpiryTime(), account: id})
		}
	}
	e.noteChanged(ids)
	e.notify(ids)
}

func (e *Engine) notify(ids []string) {
	if len(e.expiries) > 0 && e.expiries[0].at.Before(e.armed) {
		select {
		case e.wakeup <- struct{}{}:
		default:
		}
	}
	for _, fn := range e.listeners {
		fn(e.table, ids)
	}
}

// runExpiries removes rules at their expiry instant: a timer set to the
// earliest expiry, not a poll.
func (e *Engine) runExpiries(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		e.mu.Lock()
		now := e.now()
		wait := time.Hour
		if len(e.expiries) > 0 {
			wait = max(0, e.expiries[0].at.Sub(now))
		}
		// Until the timer fires and expireDue has run, an expiry at or
		// after armed is found by the next round; notify wakes this loop
		// for an earlier one.
		e.armed = now.Add(wait)
		e.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-e.wakeup:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
			e.expireDue()
		}
	}
}

// expireDue drops the rules expired by now. It derives each account's new
// table from the published one and publishes it in one critical section:
// a table computed outside it could replace a newer one (a rule deleted,
// the mode set back to on) with a stale copy, and fail open.
func (e *Engine) expireDue() {
	now := e.now()
	e.lock()
	defer e.mu.Unlock()
	changed := make(map[string]*accountTable)
	for len(e.expiries) > 0 && !e.expiries[0].at.After(now) {
		x := heap.Pop(&e.expiries).(expiry)
		at := e.table.account(x.account)
		if at == nil {
			continue
		}
		if n := at.withoutExpired(now); n != at {
			changed[x.account] = n
		}
	}
	if len(changed) > 0 {
		e.publishLocked(changed, "")
		e.log.Debug("rules expired", zap.Int("accounts", len(changed)))
	}
}

func (e *Engine) requestSnapshot() {
	if e.opts.SnapshotPath == "" {
		return
	}
	select {
	case e.snapshotDue <- struct{}{}:
	default:
	}
}

// runSnapshots keeps the snapshot file after changes, and only from a
// table that reflects the store. At most once per SnapshotInterval it
// appends the accounts changed since to the file's journal
// (snapshotjournal.go), and it writes the whole table instead when no
// journal can follow (at start, after a full reload, after a failed
// write) or the journal has outgrown half the file. A whole write is the
// whole policy, whatever changed; they take at most about 1/snapshotDuty
// of the time.
func (e *Engine) runSnapshots(ctx context.Context) {
	files := &snapshotFiles{path: e.opts.SnapshotPath}
	defer files.closeJournal()
	var wholeAfter time.Time // no whole write before
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.snapshotDue:
		}
		if e.fromStore.Load() {
			ids, all := e.takeChanged()
			switch {
			case all || files.journal == nil || (files.journalFull() && !time.Now().Before(wholeAfter)):
				sleep(ctx, time.Until(wholeAfter))
				if ctx.Err() != nil {
					return
				}
				start := time.Now()
				err := files.writeAll(e.Table(), e.now())
				wholeAfter = time.Now().Add(snapshotPause(e.opts.SnapshotInterval, time.Since(start)))
				if err != nil {
					e.log.Error("write policy snapshot", zap.Error(err))
					e.requestSnapshot() // again, whole, after the pause
				}
			case len(ids) > 0:
				if err := files.appendChanges(e.Table(), ids, e.now()); err != nil {
					e.log.Error("write policy snapshot journal", zap.Error(err))
					e.requestSnapshot() // a whole write follows
				}
			}
		}
		sleep(ctx, e.opts.SnapshotInterval)
	}
}

// noteChanged records accounts whose table changed, for the snapshot
// journal.
func (e *Engine) noteChanged(ids []string) {
	if e.opts.SnapshotPath == "" {
		return
	}
	e.snapMu.Lock()
	for _, id := range ids {
		e.snapChanged[id] = struct{}{}
	}
	e.snapMu.Unlock()
}

// noteReplaced records that the whole table was replaced: the next
// snapshot write is whole.
func (e *Engine) noteReplaced() {
	e.snapMu.Lock()
	e.snapAll = true
	clear(e.snapChanged)
	e.snapMu.Unlock()
}

// takeChanged returns and forgets the accounts changed since the last
// call, and whether the whole table was replaced meanwhile.
func (e *Engine) takeChanged() (ids []string, all bool) {
	e.snapMu.Lock()
	defer e.snapMu.Unlock()
	all, e.snapAll = e.snapAll, false
	ids = make([]string, 0, len(e.snapChanged))
	for id := range e.snapChanged {
		ids = append(ids, id)
	}
	clear(e.snapChanged)
	return ids, all
}

// snapshotDuty bounds the share of time spent writing whole snapshot
// files: at a million rules one takes a good part of a second on a busy
// machine. With the journal they are rare under churn anyway.
const snapshotDuty = 20

// snapshotPause is how long no whole write follows one that took took.
func snapshotPause(interval, took time.Duration) time.Duration {
	return max(interval, snapshotDuty*took)
}

// RecordUse notes that rule let a connection into account. It is cheap and
// never touches the store; usage is flushed periodically.
func (e *Engine) RecordUse(account string, rule RuleID) {
	if rule == 0 {
		return
	}
	now := e.now()
	e.usageMu.Lock()
	defer e.usageMu.Unlock()
	k := usageKey{account, rule}
	c := e.usage[k]
	if c == nil {
		if len(e.usage) >= maxUsageEntries {
			return
		}
		c = &usageCount{}
		e.usage[k] = c
	}
	c.hits++
	c.last = now
}

func (e *Engine) runUsage(ctx context.Context) {
	tick := time.NewTicker(e.opts.UsageInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// A last flush on the way out, bounded in time.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			e.FlushUsage(fctx)
			cancel()
			return
		case <-tick.C:
			e.FlushUsage(ctx)
		}
	}
}

// FlushUsage writes the usage gathered since the last flush to the store.
// On failure it is kept for the next attempt.
func (e *Engine) FlushUsage(ctx context.Context) error {
	if e.opts.Usage == nil {
		return nil
	}
	e.usageMu.Lock()
	pending := e.usage
	e.usage = make(map[usageKey]*usageCount)
	e.usageMu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	batch := make([]Usage, 0, len(pending))
	for k, c := range pending {
		batch = append(batch, Usage{Account: k.account, Rule: k.rule, LastUsed: c.last, Hits: c.hits})
	}
	if err := e.opts.Usage.RecordUsage(ctx, batch); err != nil {
		e.usageMu.Lock()
		for k, c := range pending {
			if n := e.usage[k]; n != nil {
				n.hits += c.hits
				if c.last.After(n.last) {
					n.last = c.last
				}
			} else if len(e.usage) < maxUsageEntries {
				e.usage[k] = c
			}
		}
		e.usageMu.Unlock()
		return fmt.Errorf("flush rule usage: %w", err)
	}
	return nil
}

func (e *Engine) setProblem(s string) { e.problem.Store(&s) }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

type expiry struct {
	at      time.Time
	account string
}

type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
