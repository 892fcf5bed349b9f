// Package boltstore is the embedded policy store: one bbolt file on local
// disk, for a single gatekeeper with no Redis. It is the default.
//
// Every write is one bbolt transaction, fsynced before Update returns, so
// nothing acknowledged is lost to a crash. The change feed is in-process: a
// bbolt file is locked by the one process that opens it, so there is no
// other instance to tell. It does not share a file between processes; use
// the Redis store for a fleet.
package boltstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Bucket layout: meta holds the generation; accounts maps ID to the JSON
// account; acct holds a bucket per account with its rules, users, usage,
// sessions and audit trail.
var (
	bMeta     = []byte("meta")
	bAccounts = []byte("accounts")
	bAcct     = []byte("acct")
	bRules    = []byte("rules")
	bUsers    = []byte("users")
	bUsage    = []byte("usage")
	bSessions = []byte("sessions")
	bAudit    = []byte("audit")
	// Made on first use: accounts created before devices existed lack them.
	bDevices     = []byte("devices")
	bEnrollments = []byte("enrollments")
	bRequests    = []byte("access-requests")
	kGen         = []byte("generation")
)

// Options configure a Store. The zero value works.
type Options struct {
	// LockTimeout is how long Open waits for another process to release the
	// file. If zero, 1s.
	LockTimeout time.Duration
	// AuditMax bounds each account's audit trail; the oldest entries go.
	// If zero, 100000.
	AuditMax uint64
	// FeedKeep is how many recent changes Follow can replay. If zero, 4096.
	FeedKeep int
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
	// Lineage knows the generation the file held, from this machine's
	// snapshot; a file found without one is then not given a new one
	// (policy.Lineage). If nil, nothing is known: a first start.
	Lineage *policy.Lineage
}

// Store is a policy.Store in a bbolt file.
type Store struct {
	db   *bbolt.DB
	opts Options
	boot string // distinguishes this process's feed cursors from older ones

	// writeMu orders commits and their feed entries: a token, so that a
	// caller waiting for it gives up when its context ends.
	writeMu chan struct{}
	feedMu  sync.Mutex
	seq     uint64
	recent  []policy.Change // the last FeedKeep changes, oldest first
	wake    chan struct{}   // closed and replaced on every change
}

var _ policy.Store = (*Store)(nil)

// ErrLocked means another process has the file open.
var ErrLocked = errors.New("store file is in use by another process (a running gatekeeper?)")

// Open opens or creates the file at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.AuditMax == 0 {
		opts.AuditMax = 100000
	}
	if opts.FeedKeep <= 0 {
		opts.FeedKeep = 4096
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Lineage == nil {
		opts.Lineage = policy.NewLineage("", "")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create store directory: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bMeta, bAccounts, bAcct} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		opts.Lineage.Saw(string(tx.Bucket(bMeta).Get(kGen)))
		if err := buildLastDays(tx); err != nil {
			return err
		}
		return buildReviews(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise %s: %w", path, err)
	}
	var boot [6]byte
	rand.Read(boot[:])
	return &Store{db: db, opts: opts, boot: hex.EncodeToString(boot[:]), writeMu: make(chan struct{}, 1),
		wake: make(chan struct{})}, nil
}

// lock takes writeMu, or gives up when ctx ends first.
func (s *Store) lock(ctx context.Context) error {
	select {
	case s.writeMu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the store's writer: %w: %w", policy.ErrUnavailable, ctx.Err())
	}
}

func (s *Store) unlock() { <-s.writeMu }

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// unavailable marks an I/O failure of the file so the admin API answers 503.
func unavailable(what string, err error) error {
	if err == nil || errors.Is(err, policy.ErrNotFound) || errors.Is(err, policy.ErrExists) {
		return err
	}
	return fmt.Errorf("%s: %w: %w", what, policy.ErrUnavailable, err)
}

// CreateAccount implements policy.Store.
func (s *Store) CreateAccount(ctx context.Context, a policy.Account, audit policy.AuditEntry) error {
	if !policy.ValidAccountID(a.ID) {
		return fmt.Errorf("create account %q: invalid account number", a.ID)
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.unlock()
	var gen string
	err := s.db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if gen = string(meta.Get(kGen)); gen == "" {
			var err error
			if gen, err = s.opts.Lineage.Mint(); err != nil {
				return err
			}
			if err := meta.Put(kGen, []byte(gen)); err != nil {
				return err
			}
		}
		return s.createAccount(tx, a, nil, audit)
	})
	if errors.Is(err, policy.ErrNoData) {
		return fmt.Errorf("create account %s: %w", a.ID, err)
	}
	if err != nil {
		return unavailable("create account "+a.ID, err)
	}
	s.opts.Lineage.Saw(gen)
	s.publish(a.ID)
	return nil
}

// createAccount stores a new account with its rules and audit entry inside
// tx; ErrExists if it is there already.
func (s *Store) createAccount(tx *bbolt.Tx, a policy.Account, rules []policy.Rule, audit policy.AuditEntry) error {
	accts := tx.Bucket(bAccounts)
	if accts.Get([]byte(a.ID)) != nil {
		return fmt.Errorf("account %s: %w", a.ID, policy.ErrExists)
	}
	if err := putJSON(accts, []byte(a.ID), a); err != nil {
		return err
	}
	if err := indexAccount(tx, nil, a); err != nil {
		return err
	}
	ab, err := tx.Bucket(bAcct).CreateBucketIfNotExists([]byte(a.ID))
	if err != nil {
		return err
	}
	for _, b := range [][]byte{bRules, bUsers, bUsage, bSessions, bAudit} {
		if _, err := ab.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	t := &txn{s: s, id: a.ID, tx: tx, b: ab}
	for _, r := range rules {
		if r.ID == 0 {
			return fmt.Errorf("account %s: a rule without an ID", a.ID)
		}
		if _, err := t.PutRule(r); err != nil {
			return err
		}
	}
	return t.Audit(audit)
}

// Reseed implements policy.Store.
func (s *Store) Reseed(ctx context.Context, d *policy.Data, audit policy.AuditEntry) (policy.ReseedResult, error) {
	var res policy.ReseedResult
	if d.Generation == "" {
		return res, errors.New("reseed: the snapshot has no store generation")
	}
	if err := s.lock(ctx); err != nil {
		return policy.ReseedResult{}, err
	}
	defer s.unlock()
	var restored []string
	err := s.db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if gen := string(meta.Get(kGen)); gen != "" && gen != d.Generation {
			return fmt.Errorf("reseed: %w: the store holds generation %q, the snapshot %q", policy.ErrGenerationMismatch, gen, d.Generation)
		}
		for _, ap := range d.Accounts {
			err := s.createAccount(tx, ap.Account, ap.Rules, audit)
			if errors.Is(err, policy.ErrExists) {
				res.Skipped++
				continue
			}
			if err != nil {
				return err
			}
			res.Restored++
			res.Rules += len(ap.Rules)
			restored = append(restored, ap.Account.ID)
		}
		return meta.Put(kGen, []byte(d.Generation))
	})
	if err != nil {
		if errors.Is(err, policy.ErrGenerationMismatch) {
			return policy.ReseedResult{}, err
		}
		return policy.ReseedResult{}, unavailable("reseed", err)
	}
	s.opts.Lineage.Saw(d.Generation)
	for _, id := range restored {
		s.publish(id)
	}
	return res, nil
}

// Account implements policy.Store.
func (s *Store) Account(ctx context.Context, id string) (policy.Account, error) {
	var a policy.Account
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bAccounts).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("account %s: %w", id, policy.ErrNotFound)
		}
		return json.Unmarshal(v, &a)
	})
	return a, unavailable("read account "+id, err)
}

// Accounts implements policy.Store.
func (s *Store) Accounts(ctx context.Context) ([]policy.Account, error) {
	var out []policy.Account
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bAccounts).ForEach(func(k, v []byte) error {
			var a policy.Account
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decode account %s: %w", k, err)
			}
			out = append(out, a)
			return nil
		})
	})
	return out, unavailable("list accounts", err)
}

// Update implements policy.Store.
func (s *Store) Update(ctx context.Context, account string, fn func(policy.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.unlock()
	var changed bool
	var fnErr error
	err := s.db.Update(func(tx *bbolt.Tx) error {
		ab := tx.Bucket(bAcct).Bucket([]byte(account))
		if ab == nil && tx.Bucket(bMeta).Get(kGen) == nil {
			// As on Redis: a store without its data says so.
			return fmt.Errorf("update account %s: %w: %w", account, policy.ErrUnavailable, policy.ErrNoData)
		}
		if ab == nil {
			return fmt.Errorf("account %s: %w", account, policy.ErrNotFound)
		}
		t := &txn{s: s, id: account, tx: tx, b: ab}
		if fnErr = fn(t); fnErr != nil {
			return fnErr
		}
		changed = t.policyChanged
		return nil
	})
	if fnErr != nil {
		return fnErr // the caller's own error, untouched
	}
	if errors.Is(err, policy.ErrNoData) {
		return err
	}
	if err != nil {
		return unavailable("update account "+account, err)
	}
	if changed {
		s.publish(account)
	}
	return nil
}

// View implements policy.Store. A bbolt read transaction runs alongside
// the writer, so it neither takes writeMu nor waits for an fsync.
func (s *Store) View(ctx context.Context, account string, fn func(policy.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var fnErr error
	err := s.db.View(func(tx *bbolt.Tx) error {
		ab := tx.Bucket(bAcct).Bucket([]byte(account))
		if ab == nil {
			return fmt.Errorf("account %s: %w", account, policy.ErrNotFound)
		}
		fnErr = fn(&txn{s: s, id: account, tx: tx, b: ab, readOnly: true})
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	return unavailable("read account "+account, err)
}

// Session implements policy.Store.
func (s *Store) Session(ctx context.Context, account, tokenHash string) (policy.Session, error) {
	var ses policy.Session
	err := s.db.View(func(tx *bbolt.Tx) error {
		ab := tx.Bucket(bAcct).Bucket([]byte(account))
		if ab == nil {
			return policy.ErrNotFound
		}
		v := ab.Bucket(bSessions).Get([]byte(tokenHash))
		if v == nil {
			return policy.ErrNotFound
		}
		return json.Unmarshal(v, &ses)
	})
	if err != nil {
		return policy.Session{}, unavailable("read session", err)
	}
	if !s.opts.Now().Before(ses.ExpiresAt) {
		return policy.Session{}, policy.ErrNotFound
	}
	return ses, nil
}

// Audit implements policy.Store.
func (s *Store) Audit(ctx context.Context, account string, q policy.AuditQuery) ([]policy.AuditEntry, error) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	q.Limit = min(q.Limit, 1000)
	var out []policy.AuditEntry
	err := s.db.View(func(tx *bbolt.Tx) error {
		ab := tx.Bucket(bAcct).Bucket([]byte(account))
		if ab == nil {
			return fmt.Errorf("account %s: %w", account, policy.ErrNotFound)
		}
		c := ab.Bucket(bAudit).Cursor()
		var k, v []byte
		if q.Before != "" {
			n, err := strconv.ParseUint(q.Before, 10, 64)
			if err != nil {
				return nil // an ID we never issued: nothing is before it
			}
			k, v = c.Seek(u64(n))
			if k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		} else {
			k, v = c.Last()
		}
		for ; k != nil && len(out) < q.Limit; k, v = c.Prev() {
			var e policy.AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode audit entry: %w", err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, unavailable("read audit of "+account, err)
}

type usageRecord struct {
	LastUsed time.Time `json:"last_used"`
	Hits     uint64    `json:"hits"`
}

// RecordUsage implements policy.Store.
func (s *Store) RecordUsage(ctx context.Context, us []policy.Usage) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.unlock()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for _, u := range us {
			ab := tx.Bucket(bAcct).Bucket([]byte(u.Account))
			if ab == nil {
				continue // the account went away meanwhile
			}
			ub := ab.Bucket(bUsage)
			k := u32(uint32(u.Rule))
			var rec usageRecord
			if v := ub.Get(k); v != nil {
				json.Unmarshal(v, &rec)
			}
			rec.Hits += u.Hits
			if u.LastUsed.After(rec.LastUsed) {
				rec.LastUsed = u.LastUsed
			}
			if err := putJSON(ub, k, rec); err != nil {
				return err
			}
		}
		return nil
	})
	return unavailable("record usage", err)
}

// LoadPolicy implements policy.Source.
func (s *Store) LoadPolicy(ctx context.Context) (*policy.Data, error) {
	// Holding writeMu makes the cursor match the data exactly.
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.unlock()
	d := &policy.Data{Cursor: s.cursor()}
	err := s.db.View(func(tx *bbolt.Tx) error {
		d.Generation = string(tx.Bucket(bMeta).Get(kGen))
		s.opts.Lineage.Saw(d.Generation)
		return tx.Bucket(bAccounts).ForEach(func(k, v []byte) error {
			p, err := loadAccountPolicy(tx, string(k))
			if err != nil {
				return err
			}
			d.Accounts = append(d.Accounts, p)
			return nil
		})
	})
	if err != nil {
		return nil, unavailable("load policy", err)
	}
	return d, nil
}

// LoadAccountPolicy implements policy.Source.
func (s *Store) LoadAccountPolicy(ctx context.Context, account string) (policy.AccountPolicy, error) {
	var p policy.AccountPolicy
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		p, err = loadAccountPolicy(tx, account)
		return err
	})
	return p, unavailable("load policy of "+account, err)
}

func loadAccountPolicy(tx *bbolt.Tx, id string) (policy.AccountPolicy, error) {
	var p policy.AccountPolicy
	v := tx.Bucket(bAccounts).Get([]byte(id))
	ab := tx.Bucket(bAcct).Bucket([]byte(id))
	if v == nil || ab == nil {
		return p, fmt.Errorf("account %s: %w", id, policy.ErrNotFound)
	}
	if err := json.Unmarshal(v, &p.Account); err != nil {
		return p, fmt.Errorf("decode account %s: %w", id, err)
	}
	rules, err := readRules(ab, false)
	if err != nil {
		return p, fmt.Errorf("read rules of %s: %w", id, err)
	}
	p.Rules = rules
	users, err := listJSON[policy.User](ab.Bucket(bUsers), "user")
	if err != nil {
		return p, fmt.Errorf("read users of %s: %w", id, err)
	}
	p.Web, p.WebKnown = policy.WebUsers(users), true
	if p.Account.Settings.RequireDevice {
		devs, err := listJSON[policy.Device](ab.Bucket(bDevices), "device")
		if err != nil {
			return p, fmt.Errorf("read devices of %s: %w", id, err)
		}
		p.Devices = policy.DeviceKeys(devs, users)
	}
	return p, nil
}

// deviceChanged notes a change to a user or a device, which is a policy
// change when the account requires a known device: the gate's view of
// its devices must follow.
func (t *txn) deviceChanged() {
	if a, err := t.Account(); err == nil && a.Settings.RequireDevice {
		t.policyChanged = true
	}
}

func readRules(ab *bbolt.Bucket, withUsage bool) ([]policy.Rule, error) {
	var out []policy.Rule
	ub := ab.Bucket(bUsage)
	err := ab.Bucket(bRules).ForEach(func(k, v []byte) error {
		var r policy.Rule
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode rule %x: %w", k, err)
		}
		if withUsage {
			if uv := ub.Get(k); uv != nil {
				var rec usageRecord
				if json.Unmarshal(uv, &rec) == nil {
					r.LastUsed, r.Hits = rec.LastUsed, rec.Hits
				}
			}
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// Follow implements policy.Source: changes committed by this process.
func (s *Store) Follow(ctx context.Context, cursor string, fn func([]policy.Change)) error {
	boot, seqStr, _ := strings.Cut(cursor, ":")
	after, err := strconv.ParseUint(seqStr, 10, 64)
	if boot != s.boot || err != nil {
		return policy.ErrFeedGap // a cursor from an earlier process
	}
	for {
		s.feedMu.Lock()
		wake := s.wake
		var batch []policy.Change
		if s.seq > after {
			oldest := s.seq - uint64(len(s.recent)) + 1
			if after+1 < oldest {
				s.feedMu.Unlock()
				return policy.ErrFeedGap
			}
			batch = append(batch, s.recent[after+1-oldest:]...)
			after = s.seq
		}
		s.feedMu.Unlock()
		if len(batch) > 0 {
			fn(batch)
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

func (s *Store) cursor() string {
	s.feedMu.Lock()
	defer s.feedMu.Unlock()
	return s.boot + ":" + strconv.FormatUint(s.seq, 10)
}

// publish appends a change to the in-process feed; called with writeMu held
// so that feed order is commit order.
func (s *Store) publish(account string) {
	s.feedMu.Lock()
	defer s.feedMu.Unlock()
	s.seq++
	c := policy.Change{Account: account, Cursor: s.boot + ":" + strconv.FormatUint(s.seq, 10), Time: s.opts.Now()}
	if len(s.recent) >= s.opts.FeedKeep {
		s.recent = append(s.recent[:0], s.recent[1:]...)
	}
	s.recent = append(s.recent, c)
	close(s.wake)
	s.wake = make(chan struct{})
}

// txn is a policy.Tx inside one bbolt transaction: a write transaction in
// Update, a read transaction in View.
type txn struct {
	s             *Store
	id            string
	tx            *bbolt.Tx
	b             *bbolt.Bucket
	policyChanged bool
	readOnly      bool
	// notifyBefore are the account's destinations as the transaction
	// found them, kept at its first PutAccount: a notification of a
	// change to them goes to the old ones too.
	notifyBefore *policy.Notifications
}

// writable refuses a write in View with policy.ErrReadOnly, named, rather
// than bbolt's own error from deep inside a bucket.
func (t *txn) writable(what string) error {
	if t.readOnly {
		return fmt.Errorf("%s of %s: %w", what, t.id, policy.ErrReadOnly)
	}
	return nil
}

func (t *txn) Account() (policy.Account, error) {
	var a policy.Account
	v := t.tx.Bucket(bAccounts).Get([]byte(t.id))
	if v == nil {
		return a, fmt.Errorf("account %s: %w", t.id, policy.ErrNotFound)
	}
	return a, json.Unmarshal(v, &a)
}

func (t *txn) PutAccount(a policy.Account) error {
	if err := t.writable("put account"); err != nil {
		return err
	}
	if a.ID != t.id {
		return fmt.Errorf("put account: ID %q in a transaction on %q", a.ID, t.id)
	}
	old, err := t.Account()
	if err != nil {
		return err
	}
	if t.notifyBefore == nil {
		t.notifyBefore = &old.Notifications
	}
	policy.PrepareAccountPut(old, &a)
	t.policyChanged = true
	if err := indexAccount(t.tx, &old, a); err != nil {
		return err
	}
	return putJSON(t.tx.Bucket(bAccounts), []byte(a.ID), a)
}

func (t *txn) Rules() ([]policy.Rule, error) { return readRules(t.b, true) }

func (t *txn) PutRule(r policy.Rule) (policy.Rule, error) {
	if err := t.writable("put rule"); err != nil {
		return r, err
	}
	rb := t.b.Bucket(bRules)
	if r.ID == 0 {
		n, err := rb.NextSequence()
		if err != nil {
			return r, err
		}
		if n > 1<<32-1 {
			return r, fmt.Errorf("account %s has used every rule ID", t.id)
		}
		r.ID = policy.RuleID(n)
	} else if uint64(r.ID) > rb.Sequence() {
		// An ID the caller chose is never handed out again.
		if err := rb.SetSequence(uint64(r.ID)); err != nil {
			return r, err
		}
	}
	r.Account = t.id
	t.policyChanged = true
	// Usage is kept apart from the rule and merged on read.
	r.LastUsed, r.Hits = time.Time{}, 0
	return r, putJSON(rb, u32(uint32(r.ID)), r)
}

func (t *txn) DeleteRule(id policy.RuleID) error {
	if err := t.writable("delete rule"); err != nil {
		return err
	}
	rb := t.b.Bucket(bRules)
	k := u32(uint32(id))
	if rb.Get(k) == nil {
		return fmt.Errorf("rule %d of %s: %w", id, t.id, policy.ErrNotFound)
	}
	t.policyChanged = true
	if err := t.b.Bucket(bUsage).Delete(k); err != nil {
		return err
	}
	return rb.Delete(k)
}

func (t *txn) Users() ([]policy.User, error) {
	return listJSON[policy.User](t.b.Bucket(bUsers), "user")
}

func (t *txn) User(username string) (policy.User, error) {
	var u policy.User
	v := t.b.Bucket(bUsers).Get([]byte(username))
	if v == nil {
		return u, fmt.Errorf("user %s of %s: %w", username, t.id, policy.ErrNotFound)
	}
	return u, json.Unmarshal(v, &u)
}

func (t *txn) PutUser(u policy.User) error {
	if err := t.writable("put user"); err != nil {
		return err
	}
	if u.Username == "" {
		return errors.New("put user: empty username")
	}
	u.Account = t.id
	t.deviceChanged()
	before, err := t.User(u.Username)
	found := err == nil
	if err != nil && !errors.Is(err, policy.ErrNotFound) {
		return err
	}
	if policy.PrepareUserPut(before, found, &u) {
		t.policyChanged = true
	}
	var old *policy.User
	if found {
		old = &before
	}
	if err := indexUser(t.tx, t.id, old, u); err != nil {
		return err
	}
	return putJSON(t.b.Bucket(bUsers), []byte(u.Username), u)
}

func (t *txn) PutSession(ses policy.Session) error {
	if err := t.writable("put session"); err != nil {
		return err
	}
	if ses.TokenHash == "" {
		return errors.New("put session: empty token hash")
	}
	ses.Account = t.id
	sb := t.b.Bucket(bSessions)
	if err := purgeExpired(sb, t.s.opts.Now()); err != nil {
		return err
	}
	return putJSON(sb, []byte(ses.TokenHash), ses)
}

// purgeExpired drops expired sessions, so the bucket stays the size of the
// live ones without a janitor.
func purgeExpired(sb *bbolt.Bucket, now time.Time) error {
	var dead [][]byte
	sb.ForEach(func(k, v []byte) error {
		var ses policy.Session
		if json.Unmarshal(v, &ses) != nil || !now.Before(ses.ExpiresAt) {
			dead = append(dead, bytes.Clone(k))
		}
		return nil
	})
	for _, k := range dead {
		if err := sb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) DeleteSession(tokenHash string) error {
	if err := t.writable("delete session"); err != nil {
		return err
	}
	return t.b.Bucket(bSessions).Delete([]byte(tokenHash))
}

func (t *txn) DeleteSessions(username string) (int, error) {
	if err := t.writable("delete sessions"); err != nil {
		return 0, err
	}
	sb := t.b.Bucket(bSessions)
	now := t.s.opts.Now()
	var del [][]byte
	live := 0
	err := sb.ForEach(func(k, v []byte) error {
		var ses policy.Session
		if err := json.Unmarshal(v, &ses); err != nil {
			return fmt.Errorf("decode session: %w", err)
		}
		if ses.Username == username {
			del = append(del, bytes.Clone(k))
			if now.Before(ses.ExpiresAt) {
				live++
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range del {
		if err := sb.Delete(k); err != nil {
			return 0, err
		}
	}
	return live, nil
}

func (t *txn) Sessions(username string) ([]policy.Session, error) {
	now := t.s.opts.Now()
	var out []policy.Session
	err := t.b.Bucket(bSessions).ForEach(func(k, v []byte) error {
		var ses policy.Session
		if err := json.Unmarshal(v, &ses); err != nil {
			return fmt.Errorf("decode session: %w", err)
		}
		if ses.Username == username && now.Before(ses.ExpiresAt) {
			out = append(out, ses)
		}
		return nil
	})
	return out, err // ForEach goes in key order: by token hash
}

func (t *txn) Devices() ([]policy.Device, error) {
	return listJSON[policy.Device](t.b.Bucket(bDevices), "device")
}

func (t *txn) Device(id string) (policy.Device, error) {
	var d policy.Device
	b := t.b.Bucket(bDevices)
	if b == nil || b.Get([]byte(id)) == nil {
		return d, fmt.Errorf("device %s of %s: %w", id, t.id, policy.ErrNotFound)
	}
	return d, json.Unmarshal(b.Get([]byte(id)), &d)
}

func (t *txn) PutDevice(d policy.Device) error {
	if err := t.writable("put device"); err != nil {
		return err
	}
	if d.ID == "" {
		return errors.New("put device: empty ID")
	}
	d.Account = t.id
	b, err := t.b.CreateBucketIfNotExists(bDevices)
	if err != nil {
		return err
	}
	t.deviceChanged()
	return putJSON(b, []byte(d.ID), d)
}

func (t *txn) Enrollments() ([]policy.Enrollment, error) {
	return listJSON[policy.Enrollment](t.b.Bucket(bEnrollments), "enrolment code")
}

func (t *txn) PutEnrollment(e policy.Enrollment) error {
	if err := t.writable("put enrolment code"); err != nil {
		return err
	}
	if e.CodeHash == "" {
		return errors.New("put enrolment code: empty hash")
	}
	e.Account = t.id
	b, err := t.b.CreateBucketIfNotExists(bEnrollments)
	if err != nil {
		return err
	}
	return putJSON(b, []byte(e.CodeHash), e)
}

func (t *txn) DeleteEnrollment(codeHash string) error {
	if err := t.writable("delete enrolment code"); err != nil {
		return err
	}
	if b := t.b.Bucket(bEnrollments); b != nil {
		return b.Delete([]byte(codeHash))
	}
	return nil
}

// listJSON decodes every value of b, in key order; a missing bucket holds
// nothing.
func listJSON[T any](b *bbolt.Bucket, what string) ([]T, error) {
	var out []T
	if b == nil {
		return out, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		var x T
		if err := json.Unmarshal(v, &x); err != nil {
			return fmt.Errorf("decode %s %s: %w", what, k, err)
		}
		out = append(out, x)
		return nil
	})
	return out, err
}

func (t *txn) Audit(e policy.AuditEntry) error {
	if err := t.writable("audit"); err != nil {
		return err
	}
	ab := t.b.Bucket(bAudit)
	n, err := ab.NextSequence()
	if err != nil {
		return err
	}
	e.ID = strconv.FormatUint(n, 10)
	e.Account = t.id
	if e.Time.IsZero() {
		e.Time = t.s.opts.Now()
	}
	if err := putJSON(ab, u64(n), e); err != nil {
		return err
	}
	if err := t.outbox(e); err != nil {
		return err
	}
	if n > t.s.opts.AuditMax {
		return ab.Delete(u64(n - t.s.opts.AuditMax))
	}
	return nil
}

func putJSON(b *bbolt.Bucket, k []byte, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, buf)
}

func u32(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }
