package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// maxAttempts bounds how often Update runs fn when other writers keep
// getting in first; then it gives up with policy.ErrConflict. With the
// jittered back-off between attempts, 20 writers on one account all
// succeed well within it.
const maxAttempts = 20

// CreateAccount implements policy.Store. On a store with no generation it
// first mints one, if the Lineage allows (a first start), or refuses with
// ErrNoData (the store lost its data).
func (s *Store) CreateAccount(ctx context.Context, a policy.Account, audit policy.AuditEntry) error {
	if !policy.ValidAccountID(a.ID) {
		return fmt.Errorf("create account %q: invalid account number", a.ID)
	}
	// The generation comes first so that no account ever exists without
	// one; it cannot share the account's MULTI, which is on another slot
	// on a Cluster.
	if err := s.ensureGeneration(ctx); err != nil {
		return fmt.Errorf("create account %s: %w", a.ID, err)
	}
	return s.createAccount(ctx, a, nil, audit)
}

// createAccount stores a new account with its rules, audit entry and feed
// entry in one MULTI/EXEC; ErrExists if the account is there already.
func (s *Store) createAccount(ctx context.Context, a policy.Account, rules []policy.Rule, audit policy.AuditEntry) error {
	k := keysFor(a.ID)
	acct, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("create account %s: encode: %w", a.ID, err)
	}
	audit = s.auditEntry(a.ID, audit)
	entry, err := json.Marshal(audit)
	if err != nil {
		return fmt.Errorf("create account %s: encode audit entry: %w", a.ID, err)
	}
	fields := make([]any, 0, 2*len(rules))
	var maxID policy.RuleID
	for _, r := range rules {
		if r.ID == 0 {
			return fmt.Errorf("create account %s: a rule without an ID", a.ID)
		}
		r.Account = a.ID
		fields = append(fields, ruleField(r.ID), encodeRule(r))
		maxID = max(maxID, r.ID)
	}
	for attempt := 1; ; attempt++ {
		var exists bool
		err := s.client.Watch(ctx, func(rtx *redis.Tx) error {
			n, err := rtx.Exists(ctx, k.acct).Result()
			if err != nil || n > 0 {
				exists = n > 0
				return err
			}
			_, err = rtx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, k.acct, acct, 0)
				p.SAdd(ctx, k.accounts, a.ID)
				indexAccount(ctx, p, k, a)
				if len(fields) > 0 {
					p.HSet(ctx, k.rules, fields...)
					p.Eval(ctx, raiseScript, []string{k.ruleID}, uint64(maxID))
				}
				p.XAdd(ctx, s.auditArgs(k, entry))
				p.Eval(ctx, feedScript, []string{k.seq, k.feed}, a.ID, s.feedMax)
				return nil
			})
			if unknownOutcome(err) {
				return fmt.Errorf("create account %s: %w: %w: %w", a.ID, policy.ErrUnavailable, errUnconfirmed, err)
			}
			if err != nil {
				return err
			}
			return s.confirm(ctx, rtx, "create account "+a.ID)
		}, k.acct)
		switch {
		case exists:
			return fmt.Errorf("create account %s: %w", a.ID, policy.ErrExists)
		case errors.Is(err, errUnconfirmed):
			return err
		case errors.Is(err, redis.TxFailedErr) && attempt < maxAttempts:
			continue // someone else created it: the next attempt says so
		case errors.Is(err, redis.TxFailedErr):
			return fmt.Errorf("create account %s: %w", a.ID, policy.ErrConflict)
		}
		return wrap("create account "+a.ID, err)
	}
}

// Reseed implements policy.Store. The generation is set last, so that
// instances waiting for it accept the store only once every account is
// back.
func (s *Store) Reseed(ctx context.Context, d *policy.Data, audit policy.AuditEntry) (policy.ReseedResult, error) {
	var res policy.ReseedResult
	if d.Generation == "" {
		return res, errors.New("reseed: the snapshot has no store generation")
	}
	gen, err := s.generation(ctx)
	if err != nil {
		return res, err
	}
	if gen != "" && gen != d.Generation {
		return res, fmt.Errorf("reseed: %w: the store holds generation %q, the snapshot %q", policy.ErrGenerationMismatch, gen, d.Generation)
	}
	for _, ap := range d.Accounts {
		err := s.createAccount(ctx, ap.Account, ap.Rules, audit)
		switch {
		case errors.Is(err, policy.ErrExists):
			res.Skipped++
		case err != nil:
			return res, err
		default:
			res.Restored++
			res.Rules += len(ap.Rules)
		}
	}
	_, err = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSetNX(ctx, metaKey, genField, d.Generation)
		p.HSetNX(ctx, metaKey, "created_at", s.now().UTC().Format(time.RFC3339))
		return nil
	})
	if err != nil {
		return res, wrap("set store generation", err)
	}
	if gen, err = s.generation(ctx); err != nil || gen != d.Generation {
		return res, fmt.Errorf("reseed: %w: another generation %q was set meanwhile", policy.ErrGenerationMismatch, gen)
	}
	return res, nil
}

// ensureGeneration gives the store a generation if it has none and the
// Lineage lets it mint one.
func (s *Store) ensureGeneration(ctx context.Context) error {
	gen, err := s.generation(ctx)
	if err != nil || gen != "" {
		return err
	}
	if gen, err = s.lineage.Mint(); err != nil {
		return err
	}
	var created *redis.BoolCmd
	_, err = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		created = p.HSetNX(ctx, metaKey, genField, gen)
		p.HSetNX(ctx, metaKey, "created_at", s.now().UTC().Format(time.RFC3339))
		return nil
	})
	if err != nil {
		return wrap("set store generation", err)
	}
	if created.Val() {
		s.log.Info("new store generation: this Redis held no gatekeeper data", zap.String("generation", gen))
	}
	_, err = s.generation(ctx) // another instance's, if it got there first
	return err
}

// generation returns the store's generation, "" if it has none, and
// records it in the Lineage.
func (s *Store) generation(ctx context.Context) (string, error) {
	gen, err := s.client.HGet(ctx, metaKey, genField).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	s.lineage.Saw(gen)
	return gen, wrap("read store generation", err)
}

// Update implements policy.Store.
// watchBroken reports whether a key rtx watches changed since the watch
// began: an EXEC of nothing fails then, and does nothing otherwise. Reads
// inside an optimistic transaction are not a snapshot, so only this says
// whether an error fn met came from a concurrent commit.
func watchBroken(ctx context.Context, rtx *redis.Tx) bool {
	_, err := rtx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Ping(ctx)
		return nil
	})
	return errors.Is(err, redis.TxFailedErr)
}

func (s *Store) Update(ctx context.Context, account string, fn func(policy.Tx) error) error {
	k := keysFor(account)
	backoff := time.Millisecond
	for attempt := 1; ; attempt++ {
		// stop is an error that ends Update as it is: fn's own, or one the
		// transaction already wrapped. Anything else Watch returns came
		// from go-redis.
		var stop error
		var gen string // read ahead on a Cluster, see begin
		if s.cluster != nil {
			var err error
			if gen, err = s.generation(ctx); err != nil {
				// gk:meta's node is unreachable (a lost Cluster node):
				// the generation the store is known to hold stands in,
				// so that accounts on the other nodes can still be
				// written. That node emptied would answer "" instead,
				// and an emptied account node has no account to write.
				if gen = s.lineage.Known(); gen == "" || !errors.Is(err, policy.ErrUnavailable) {
					return fmt.Errorf("update account %s: %w", account, err)
				}
			}
		}
		err := s.client.Watch(ctx, func(rtx *redis.Tx) error {
			t, err := s.begin(ctx, rtx, k, gen, true)
			if err != nil {
				stop = err
				return err
			}
			if err := fn(t); err != nil {
				if watchBroken(ctx, rtx) {
					// fn read a state torn by a concurrent commit (a rule
					// it listed was gone when it read it): its error says
					// nothing of the store as it is. Tried again, as a
					// conflict at EXEC would be.
					return redis.TxFailedErr
				}
				stop = err
				return err
			}
			w, err := t.encode()
			if err != nil {
				stop = err
				return err
			}
			if err := t.commit(w); err != nil {
				if errors.Is(err, errUnconfirmed) {
					stop = err
				}
				return err
			}
			if w.policy || len(w.users) > 0 || len(w.sessions) > 0 || len(t.sessDels) > 0 || len(t.setDels) > 0 ||
				t.devices.changed() || t.enrol.changed() || t.requests.changed() {
				if err := s.confirm(ctx, rtx, "update account "+account); err != nil {
					stop = err
					return err
				}
			}
			return nil
		}, k.acct, k.rules, k.users, k.devices, k.enrol, k.requests)
		switch {
		case stop != nil:
			return stop
		case errors.Is(err, redis.TxFailedErr) && attempt < maxAttempts:
			// Jitter spreads the writers that collided over time.
			d := backoff/2 + rand.N(backoff)
			backoff = min(2*backoff, 50*time.Millisecond)
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return wrap("update account "+account, ctx.Err())
			}
			continue
		case errors.Is(err, redis.TxFailedErr):
			return fmt.Errorf("update account %s after %d attempts: %w", account, attempt, policy.ErrConflict)
		}
		return wrap("update account "+account, err)
	}
}

// View implements policy.Store: the account's keys are read on one
// connection, as in Update, with nothing watched for a commit and nothing
// written. A store that lost its data has no accounts to view, so the
// generation is not checked.
func (s *Store) View(ctx context.Context, account string, fn func(policy.Tx) error) error {
	k := keysFor(account)
	var stop error
	// Watch only to get a connection of the account's node: a Cluster
	// client needs a key to choose it. Nothing is committed, so the WATCH
	// is dropped with the connection's UNWATCH.
	err := s.client.Watch(ctx, func(rtx *redis.Tx) error {
		t, err := s.begin(ctx, rtx, k, "", false)
		if err == nil {
			t.readOnly = true
			err = fn(t)
		}
		stop = err
		return err
	}, k.acct)
	if stop != nil {
		return stop
	}
	return wrap("view account "+account, err)
}

// errUnconfirmed marks a write that Redis applied on the primary but that
// fewer replicas than asked for confirmed in time.
var errUnconfirmed = policy.ErrUnconfirmed

// confirm waits, on the connection that wrote, until the replicas the
// store asks for (wait_replicas) have what it wrote. A write they did not
// confirm in time is unavailable, not acknowledged: a failover now would
// lose it.
func (s *Store) confirm(ctx context.Context, rtx *redis.Tx, what string) error {
	if s.waitReplicas == 0 {
		return nil
	}
	n, err := rtx.Wait(ctx, s.waitReplicas, s.waitTimeout).Result()
	if err != nil {
		return fmt.Errorf("%s: %w: %w: %w", what, policy.ErrUnavailable, errUnconfirmed, wrap("wait for replicas", err))
	}
	if int(n) < s.waitReplicas {
		return fmt.Errorf("%s: %w: %w: %d of %d replicas had it after %v; it may be lost in a failover",
			what, policy.ErrUnavailable, errUnconfirmed, n, s.waitReplicas, s.waitTimeout)
	}
	return nil
}

// begin checks that the account exists and, for a write, that the store
// has its data, and starts a transaction on it.
//
// The generation is read on the watching connection, after WATCH: if the
// data goes after this read, the watched keys go with it and EXEC fails.
// Reading it on another connection would also deadlock once every pooled
// connection is held by a Watch waiting for one more. On a Cluster gk:meta
// is on another slot, so the caller reads it just before WATCH and passes
// it in.
func (s *Store) begin(ctx context.Context, rtx *redis.Tx, k keys, gen string, write bool) (*tx, error) {
	var acct *redis.StringCmd
	var meta *redis.StringCmd
	_, err := rtx.Pipelined(ctx, func(p redis.Pipeliner) error {
		if s.cluster == nil && write {
			meta = p.HGet(ctx, metaKey, genField)
		}
		acct = p.Get(ctx, k.acct)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, wrap("read account "+k.id, err)
	}
	if meta != nil {
		gen = meta.Val()
		s.lineage.Saw(gen)
	}
	if write && gen == "" {
		return nil, fmt.Errorf("update account %s: %w: %w", k.id, policy.ErrUnavailable, ErrNoData)
	}
	raw, err := acct.Result()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("account %s: %w", k.id, policy.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("read account "+k.id, err)
	}
	var a policy.Account
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		return nil, fmt.Errorf("decode account %s: %w", k.id, err)
	}
	return &tx{
		ctx: ctx, s: s, rtx: rtx, k: k,
		account: a, accountRaw: raw,
		rulePuts:  map[policy.RuleID]policy.Rule{},
		ruleDels:  map[policy.RuleID]bool{},
		usageDrop: map[policy.RuleID]bool{},
		userPuts:  map[string]policy.User{},
		sessPuts:  map[string]policy.Session{},
		sessDels:  map[string]string{},
		setDels:   map[string]bool{},
		devices:   newJSONHash(k.devices, "device", func(d policy.Device) string { return d.ID }),
		enrol:     newJSONHash(k.enrol, "enrolment code", func(e policy.Enrollment) string { return e.CodeHash }),
		requests:  newJSONHash(k.requests, "access request", func(r policy.AccessRequest) string { return r.ID }),
	}, nil
}

// tx is a policy.Tx: reads go to Redis on the watching connection, writes
// wait in the maps below for commit, and reads see them.
type tx struct {
	ctx context.Context // the Update's; tx lives only inside it
	s   *Store
	rtx *redis.Tx
	k   keys

	account    policy.Account // as committed
	accountRaw string
	newAccount *policy.Account

	rulePuts  map[policy.RuleID]policy.Rule
	ruleDels  map[policy.RuleID]bool // committed rules to delete
	usageDrop map[policy.RuleID]bool
	maxPutID  policy.RuleID // highest ID put by the caller, not handed out

	userPuts map[string]policy.User
	// webChanged: a user put changed who may sign in to web applications.
	webChanged bool

	sessPuts map[string]policy.Session
	sessDels map[string]string // committed session hash -> its username
	setDels  map[string]bool   // usernames whose session sets go

	devices  *jsonHash[policy.Device]
	enrol    *jsonHash[policy.Enrollment]
	requests *jsonHash[policy.AccessRequest]

	audits     [][]byte
	auditsAsIs []policy.AuditEntry // for their outbox entries, in encode

	readOnly bool // in View: every write fails with policy.ErrReadOnly
}

// writable refuses a write in View.
func (t *tx) writable(what string) error {
	if t.readOnly {
		return fmt.Errorf("%s of %s: %w", what, t.k.id, policy.ErrReadOnly)
	}
	return nil
}

var _ policy.Tx = (*tx)(nil)

func (t *tx) Account() (policy.Account, error) {
	if t.newAccount != nil {
		return *t.newAccount, nil
	}
	return t.account, nil
}

func (t *tx) PutAccount(a policy.Account) error {
	if err := t.writable("put account"); err != nil {
		return err
	}
	if a.ID != t.k.id {
		return fmt.Errorf("put account %q in a transaction on %q: an account's ID cannot change", a.ID, t.k.id)
	}
	before, err := t.Account()
	if err != nil {
		return err
	}
	policy.PrepareAccountPut(before, &a)
	t.newAccount = &a
	return nil
}

func (t *tx) Rules() ([]policy.Rule, error) {
	var vals *redis.StringSliceCmd
	var usage *redis.MapStringStringCmd
	_, err := t.rtx.Pipelined(t.ctx, func(p redis.Pipeliner) error {
		vals = p.HVals(t.ctx, t.k.rules)
		usage = p.HGetAll(t.ctx, t.k.usage)
		return nil
	})
	if err != nil {
		return nil, wrap("read rules of "+t.k.id, err)
	}
	rules := make([]policy.Rule, 0, len(vals.Val())+len(t.rulePuts))
	for _, v := range vals.Val() {
		r, err := decodeRule(t.k.id, v)
		if err != nil {
			return nil, fmt.Errorf("read rules of %s: %w", t.k.id, err)
		}
		if _, replaced := t.rulePuts[r.ID]; !replaced && !t.ruleDels[r.ID] {
			rules = append(rules, r)
		}
	}
	for _, r := range t.rulePuts {
		rules = append(rules, r)
	}
	u := usage.Val()
	for i := range rules {
		id := rules[i].ID
		if t.usageDrop[id] {
			continue
		}
		rules[i].Hits, rules[i].LastUsed = parseUsage(u, id)
	}
	slices.SortFunc(rules, func(a, b policy.Rule) int { return cmpID(a.ID, b.ID) })
	return rules, nil
}

func cmpID(a, b policy.RuleID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parseUsage reads one rule's usage from the usage hash.
func parseUsage(u map[string]string, id policy.RuleID) (uint64, time.Time) {
	f := strconv.FormatUint(uint64(id), 10)
	hits, _ := strconv.ParseUint(u[f+":h"], 10, 64)
	var last time.Time
	if ms, err := strconv.ParseInt(u[f+":l"], 10, 64); err == nil && ms > 0 {
		last = time.UnixMilli(ms).UTC()
	}
	return hits, last
}

func (t *tx) PutRule(r policy.Rule) (policy.Rule, error) {
	if err := t.writable("put rule"); err != nil {
		return r, err
	}
	if !r.Prefix.IsValid() {
		return r, fmt.Errorf("put rule in %s: invalid network %v", t.k.id, r.Prefix)
	}
	if r.ID == 0 {
		// Handed out now, outside the MULTI, so fn can use the ID; a
		// transaction that does not commit leaves a gap, which is fine.
		n, err := t.rtx.Incr(t.ctx, t.k.ruleID).Result()
		if err != nil {
			return r, wrap("new rule ID for "+t.k.id, err)
		}
		if n > 1<<32-1 {
			return r, fmt.Errorf("new rule ID for %s: every rule ID has been used", t.k.id)
		}
		r.ID = policy.RuleID(n)
	} else {
		t.maxPutID = max(t.maxPutID, r.ID)
	}
	r.Account = t.k.id
	r.LastUsed, r.Hits = time.Time{}, 0 // usage is kept apart and merged on read
	t.rulePuts[r.ID] = r
	return r, nil
}

func (t *tx) DeleteRule(id policy.RuleID) error {
	if err := t.writable("delete rule"); err != nil {
		return err
	}
	if t.ruleDels[id] {
		return fmt.Errorf("rule %d of %s: %w", id, t.k.id, policy.ErrNotFound)
	}
	_, put := t.rulePuts[id]
	committed, err := t.rtx.HExists(t.ctx, t.k.rules, ruleField(id)).Result()
	if err != nil {
		return wrap("read rules of "+t.k.id, err)
	}
	if !put && !committed {
		return fmt.Errorf("rule %d of %s: %w", id, t.k.id, policy.ErrNotFound)
	}
	delete(t.rulePuts, id)
	if committed {
		t.ruleDels[id] = true
		t.usageDrop[id] = true
	}
	return nil
}

func ruleField(id policy.RuleID) string { return strconv.FormatUint(uint64(id), 10) }

func (t *tx) Users() ([]policy.User, error) {
	vals, err := t.rtx.HVals(t.ctx, t.k.users).Result()
	if err != nil {
		return nil, wrap("read users of "+t.k.id, err)
	}
	users := make([]policy.User, 0, len(vals)+len(t.userPuts))
	for _, v := range vals {
		var u policy.User
		if err := json.Unmarshal([]byte(v), &u); err != nil {
			return nil, fmt.Errorf("decode a user of %s: %w", t.k.id, err)
		}
		if _, replaced := t.userPuts[u.Username]; !replaced {
			users = append(users, u)
		}
	}
	for _, u := range t.userPuts {
		users = append(users, u)
	}
	slices.SortFunc(users, func(a, b policy.User) int { return strings.Compare(a.Username, b.Username) })
	return users, nil
}

func (t *tx) User(username string) (policy.User, error) {
	if u, ok := t.userPuts[username]; ok {
		return u, nil
	}
	var u policy.User
	v, err := t.rtx.HGet(t.ctx, t.k.users, username).Result()
	if errors.Is(err, redis.Nil) {
		return u, fmt.Errorf("user %s of %s: %w", username, t.k.id, policy.ErrNotFound)
	}
	if err != nil {
		return u, wrap("read user "+username+" of "+t.k.id, err)
	}
	if err := json.Unmarshal([]byte(v), &u); err != nil {
		return u, fmt.Errorf("decode user %s of %s: %w", username, t.k.id, err)
	}
	return u, nil
}

func (t *tx) PutUser(u policy.User) error {
	if err := t.writable("put user"); err != nil {
		return err
	}
	if u.Username == "" {
		return fmt.Errorf("put user in %s: empty username", t.k.id)
	}
	u.Account = t.k.id
	before, err := t.User(u.Username)
	found := err == nil
	if err != nil && !errors.Is(err, policy.ErrNotFound) {
		return err
	}
	if policy.PrepareUserPut(before, found, &u) {
		t.webChanged = true
	}
	t.userPuts[u.Username] = u
	return nil
}

func (t *tx) Devices() ([]policy.Device, error) { return t.devices.list(t.ctx, t.rtx, t.k.id) }

func (t *tx) Device(id string) (policy.Device, error) { return t.devices.get(t.ctx, t.rtx, t.k.id, id) }

func (t *tx) PutDevice(d policy.Device) error {
	if err := t.writable("put device"); err != nil {
		return err
	}
	if d.ID == "" {
		return fmt.Errorf("put device in %s: empty ID", t.k.id)
	}
	d.Account = t.k.id
	t.devices.put(d)
	return nil
}

func (t *tx) Enrollments() ([]policy.Enrollment, error) { return t.enrol.list(t.ctx, t.rtx, t.k.id) }

func (t *tx) PutEnrollment(e policy.Enrollment) error {
	if err := t.writable("put enrolment code"); err != nil {
		return err
	}
	if e.CodeHash == "" {
		return fmt.Errorf("put enrolment code in %s: empty hash", t.k.id)
	}
	e.Account = t.k.id
	t.enrol.put(e)
	return nil
}

func (t *tx) DeleteEnrollment(codeHash string) error {
	if err := t.writable("delete enrolment code"); err != nil {
		return err
	}
	t.enrol.del(codeHash)
	return nil
}

func (t *tx) PutSession(ses policy.Session) error {
	if err := t.writable("put session"); err != nil {
		return err
	}
	if ses.TokenHash == "" {
		return fmt.Errorf("put session in %s: empty token hash", t.k.id)
	}
	if ses.ExpiresAt.IsZero() {
		return fmt.Errorf("put session in %s: no expiry", t.k.id)
	}
	ses.Account = t.k.id
	t.sessPuts[ses.TokenHash] = ses
	return nil
}

func (t *tx) DeleteSession(tokenHash string) error {
	if err := t.writable("delete session"); err != nil {
		return err
	}
	delete(t.sessPuts, tokenHash)
	if _, ok := t.sessDels[tokenHash]; ok {
		return nil
	}
	raw, err := t.rtx.Get(t.ctx, t.k.session(tokenHash)).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return wrap("read session of "+t.k.id, err)
	}
	var ses policy.Session
	if err := json.Unmarshal([]byte(raw), &ses); err != nil {
		return fmt.Errorf("decode session of %s: %w", t.k.id, err)
	}
	t.sessDels[tokenHash] = ses.Username
	return nil
}

func (t *tx) DeleteSessions(username string) (int, error) {
	if err := t.writable("delete sessions"); err != nil {
		return 0, err
	}
	set := t.k.userSessions(username)
	// Watched so that a login committing meanwhile is not missed.
	if err := t.rtx.Watch(t.ctx, set).Err(); err != nil {
		return 0, wrap("watch sessions of "+t.k.id, err)
	}
	hashes, err := t.rtx.SMembers(t.ctx, set).Result()
	if err != nil {
		return 0, wrap("read sessions of "+t.k.id, err)
	}
	// The set may name sessions that have expired since.
	var exists []*redis.IntCmd
	if len(hashes) > 0 {
		_, err = t.rtx.Pipelined(t.ctx, func(p redis.Pipeliner) error {
			for _, h := range hashes {
				exists = append(exists, p.Exists(t.ctx, t.k.session(h)))
			}
			return nil
		})
		if err != nil {
			return 0, wrap("read sessions of "+t.k.id, err)
		}
	}
	n := 0
	for i, h := range hashes {
		if _, gone := t.sessDels[h]; gone {
			continue
		}
		if exists[i].Val() > 0 {
			t.sessDels[h] = username
			n++
		}
	}
	for h, ses := range t.sessPuts {
		if ses.Username == username {
			delete(t.sessPuts, h)
			n++
		}
	}
	t.setDels[username] = true
	return n, nil
}

func (t *tx) Sessions(username string) ([]policy.Session, error) {
	set := t.k.userSessions(username)
	// Watched so that a session ended or opened meanwhile makes the
	// transaction retry.
	if !t.readOnly {
		if err := t.rtx.Watch(t.ctx, set).Err(); err != nil {
			return nil, wrap("watch sessions of "+t.k.id, err)
		}
	}
	var out []policy.Session
	if !t.setDels[username] {
		hashes, err := t.rtx.SMembers(t.ctx, set).Result()
		if err != nil {
			return nil, wrap("read sessions of "+t.k.id, err)
		}
		var gets []*redis.StringCmd
		if len(hashes) > 0 {
			_, err = t.rtx.Pipelined(t.ctx, func(p redis.Pipeliner) error {
				for _, h := range hashes {
					gets = append(gets, p.Get(t.ctx, t.k.session(h)))
				}
				return nil
			})
			if err != nil && !errors.Is(err, redis.Nil) {
				return nil, wrap("read sessions of "+t.k.id, err)
			}
		}
		now := t.s.now()
		for i, h := range hashes {
			if _, gone := t.sessDels[h]; gone {
				continue
			}
			if _, put := t.sessPuts[h]; put {
				continue
			}
			raw, err := gets[i].Result()
			if errors.Is(err, redis.Nil) {
				continue // expired since
			}
			if err != nil {
				return nil, wrap("read session of "+t.k.id, err)
			}
			var ses policy.Session
			if err := json.Unmarshal([]byte(raw), &ses); err != nil {
				return nil, fmt.Errorf("decode session of %s: %w", t.k.id, err)
			}
			if now.Before(ses.ExpiresAt) && ses.Username == username {
				out = append(out, ses)
			}
		}
	}
	for _, ses := range t.sessPuts {
		if ses.Username == username {
			out = append(out, ses)
		}
	}
	slices.SortFunc(out, func(a, b policy.Session) int { return strings.Compare(a.TokenHash, b.TokenHash) })
	return out, nil
}

func (t *tx) Audit(e policy.AuditEntry) error {
	if err := t.writable("audit"); err != nil {
		return err
	}
	e = t.s.auditEntry(t.k.id, e)
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode audit entry of %s: %w", t.k.id, err)
	}
	t.audits = append(t.audits, b)
	t.auditsAsIs = append(t.auditsAsIs, e)
	return nil
}

// auditEntry fills in what the store sets. The ID is the stream ID,
// assigned by Redis when the entry is added.
func (s *Store) auditEntry(account string, e policy.AuditEntry) policy.AuditEntry {
	e.ID = ""
	e.Account = account
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	return e
}

func (s *Store) auditArgs(k keys, entry []byte) *redis.XAddArgs {
	return &redis.XAddArgs{Stream: k.audit, MaxLen: s.audMax, Approx: true, Values: []any{"e", entry}}
}

// writes is a transaction's writes, encoded.
type writes struct {
	account   []byte // nil if unchanged
	rules     []any  // field, value, ...
	users     []any
	sessions  [][]byte // in the order of sessOrder
	sessOrder []policy.Session
	devices   []any
	enrol     []any
	requests  []any
	outbox    [][]byte // per audit entry, its outbox entry; nil if none
	policy    bool     // a feed entry is due
}

// encode prepares the writes, so that commit has nothing left to fail on
// but Redis.
func (t *tx) encode() (*writes, error) {
	w := &writes{}
	if t.newAccount != nil {
		b, err := json.Marshal(t.newAccount)
		if err != nil {
			return nil, fmt.Errorf("encode account %s: %w", t.k.id, err)
		}
		if string(b) != t.accountRaw {
			w.account = b
		}
	}
	for id, r := range t.rulePuts {
		w.rules = append(w.rules, ruleField(id), encodeRule(r))
	}
	for name, u := range t.userPuts {
		b, err := json.Marshal(u)
		if err != nil {
			return nil, fmt.Errorf("encode user %s of %s: %w", name, t.k.id, err)
		}
		w.users = append(w.users, name, b)
	}
	for _, ses := range t.sessPuts {
		b, err := json.Marshal(ses)
		if err != nil {
			return nil, fmt.Errorf("encode session of %s: %w", t.k.id, err)
		}
		w.sessions = append(w.sessions, b)
		w.sessOrder = append(w.sessOrder, ses)
	}
	var err error
	if w.devices, err = t.devices.encode(t.k.id); err != nil {
		return nil, err
	}
	if w.enrol, err = t.enrol.encode(t.k.id); err != nil {
		return nil, err
	}
	if w.requests, err = t.requests.encode(t.k.id); err != nil {
		return nil, err
	}
	if w.outbox, err = t.encodeOutbox(); err != nil {
		return nil, err
	}
	w.policy = w.account != nil || len(t.rulePuts) > 0 || len(t.ruleDels) > 0 || t.webChanged
	// A user or a device changed is a policy change when the account
	// requires a known device: the gate's view of its devices must follow.
	if (len(t.userPuts) > 0 || t.devices.changed()) && t.account.Settings.RequireDevice {
		w.policy = true
	}
	return w, nil
}

// commit writes everything in one MULTI/EXEC, which fails with
// redis.TxFailedErr if a watched key changed.
func (t *tx) commit(w *writes) error {
	ctx, k := t.ctx, t.k
	if !w.policy && len(w.users) == 0 && len(w.sessions) == 0 && len(t.sessDels) == 0 &&
		len(t.setDels) == 0 && len(t.audits) == 0 && !t.devices.changed() && !t.enrol.changed() &&
		!t.requests.changed() {
		return nil
	}
	_, err := t.rtx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if w.account != nil {
			p.Set(ctx, k.acct, w.account, 0)
			indexAccount(ctx, p, k, *t.newAccount)
		}
		if len(t.ruleDels) > 0 {
			fields := make([]string, 0, len(t.ruleDels))
			for id := range t.ruleDels {
				fields = append(fields, ruleField(id))
			}
			p.HDel(ctx, k.rules, fields...)
		}
		if len(t.usageDrop) > 0 {
			fields := make([]string, 0, 2*len(t.usageDrop))
			for id := range t.usageDrop {
				fields = append(fields, ruleField(id)+":h", ruleField(id)+":l")
			}
			p.HDel(ctx, k.usage, fields...)
		}
		if len(w.rules) > 0 {
			p.HSet(ctx, k.rules, w.rules...)
		}
		if t.maxPutID > 0 {
			// An ID the caller chose is never handed out again.
			p.Eval(ctx, raiseScript, []string{k.ruleID}, uint64(t.maxPutID))
		}
		if len(w.users) > 0 {
			p.HSet(ctx, k.users, w.users...)
			indexUsers(ctx, p, k, t.userPuts)
		}
		// Deletions before puts: a session put after DeleteSessions in
		// the same transaction survives it.
		for h, user := range t.sessDels {
			p.Del(ctx, k.session(h))
			p.SRem(ctx, k.userSessions(user), h)
		}
		for user := range t.setDels {
			p.Del(ctx, k.userSessions(user))
		}
		for i, ses := range w.sessOrder {
			set := k.userSessions(ses.Username)
			p.SetArgs(ctx, k.session(ses.TokenHash), w.sessions[i], redis.SetArgs{ExpireAt: ses.ExpiresAt})
			p.SAdd(ctx, set, ses.TokenHash)
			// The set lives as long as its longest session.
			p.Eval(ctx, expireScript, []string{set}, ses.ExpiresAt.UnixMilli())
		}
		t.devices.commit(ctx, p, w.devices)
		t.enrol.commit(ctx, p, w.enrol)
		t.requests.commit(ctx, p, w.requests)
		for i, e := range t.audits {
			if w.outbox[i] != nil {
				p.Eval(ctx, auditOutboxScript, []string{k.audit, k.outbox, k.outboxed}, t.s.audMax, e, w.outbox[i], k.id)
				continue
			}
			p.XAdd(ctx, t.s.auditArgs(k, e))
		}
		if w.policy {
			p.Eval(ctx, feedScript, []string{k.seq, k.feed}, k.id, t.s.feedMax)
		}
		return nil
	})
	if unknownOutcome(err) {
		return fmt.Errorf("commit to account %s: %w: %w: %w", k.id, policy.ErrUnavailable, errUnconfirmed, err)
	}
	return err
}

// unknownOutcome reports whether a failed MULTI/EXEC may still have
// applied: it was sent and no answer came back (a timeout, a lost
// connection), rather than Redis answering that it did not apply it. Such
// a write is reported as policy.ErrUnconfirmed, never as "nothing changed".
func unknownOutcome(err error) bool {
	var rerr redis.Error
	return err != nil && !errors.Is(err, redis.TxFailedErr) && !errors.As(err, &rerr)
}
