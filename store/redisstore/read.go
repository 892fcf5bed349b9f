package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Account implements policy.Store.
func (s *Store) Account(ctx context.Context, id string) (policy.Account, error) {
	var a policy.Account
	raw, err := s.client.Get(ctx, keysFor(id).acct).Result()
	if errors.Is(err, redis.Nil) {
		return a, fmt.Errorf("account %s: %w", id, policy.ErrNotFound)
	}
	if err != nil {
		return a, wrap("read account "+id, err)
	}
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		return a, fmt.Errorf("decode account %s: %w", id, err)
	}
	return a, nil
}

// Accounts implements policy.Store.
func (s *Store) Accounts(ctx context.Context) ([]policy.Account, error) {
	ids, err := s.accountIDs(ctx)
	if err != nil {
		return nil, err
	}
	gets := make([]*redis.StringCmd, len(ids))
	_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			gets[i] = p.Get(ctx, keysFor(id).acct)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, wrap("list accounts", err)
	}
	out := make([]policy.Account, 0, len(ids))
	for i, g := range gets {
		if errors.Is(g.Err(), redis.Nil) {
			continue
		}
		var a policy.Account
		if err := json.Unmarshal([]byte(g.Val()), &a); err != nil {
			return nil, fmt.Errorf("decode account %s: %w", ids[i], err)
		}
		out = append(out, a)
	}
	return out, nil
}

// accountIDs lists every account, sorted.
func (s *Store) accountIDs(ctx context.Context) ([]string, error) {
	var members [shards]*redis.StringSliceCmd
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range shards {
			members[i] = p.SMembers(ctx, accountsKey(i))
		}
		return nil
	})
	if err != nil {
		return nil, wrap("list accounts", err)
	}
	var ids []string
	for _, m := range members {
		ids = append(ids, m.Val()...)
	}
	slices.Sort(ids)
	return ids, nil
}

// Session implements policy.Store.
func (s *Store) Session(ctx context.Context, account, tokenHash string) (policy.Session, error) {
	var ses policy.Session
	raw, err := s.client.Get(ctx, keysFor(account).session(tokenHash)).Result()
	if errors.Is(err, redis.Nil) {
		return ses, fmt.Errorf("session of %s: %w", account, policy.ErrNotFound)
	}
	if err != nil {
		return ses, wrap("read session of "+account, err)
	}
	if err := json.Unmarshal([]byte(raw), &ses); err != nil {
		return ses, fmt.Errorf("decode session of %s: %w", account, err)
	}
	// Redis expires the key on its own clock; ours decides too.
	if !s.now().Before(ses.ExpiresAt) || ses.Account != account {
		return policy.Session{}, fmt.Errorf("session of %s: %w", account, policy.ErrNotFound)
	}
	return ses, nil
}

// Audit limits.
const (
	defaultAuditLimit = 50
	maxAuditLimit     = 1000
)

// Audit implements policy.Store. Entry IDs are stream IDs.
func (s *Store) Audit(ctx context.Context, account string, q policy.AuditQuery) ([]policy.AuditEntry, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = defaultAuditLimit
	}
	limit = min(limit, maxAuditLimit)
	end := "+"
	if q.Before != "" {
		if !validStreamID(q.Before) {
			return nil, nil // an ID never issued: nothing is before it
		}
		end = "(" + q.Before
	}
	k := keysFor(account)
	var exists *redis.IntCmd
	var entries *redis.XMessageSliceCmd
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		exists = p.Exists(ctx, k.acct)
		entries = p.XRevRangeN(ctx, k.audit, end, "-", int64(limit))
		return nil
	})
	if err != nil {
		return nil, wrap("read audit of "+account, err)
	}
	if exists.Val() == 0 {
		return nil, fmt.Errorf("account %s: %w", account, policy.ErrNotFound)
	}
	out := make([]policy.AuditEntry, 0, len(entries.Val()))
	for _, m := range entries.Val() {
		raw, _ := m.Values["e"].(string)
		var e policy.AuditEntry
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			return nil, fmt.Errorf("decode audit entry %s of %s: %w", m.ID, account, err)
		}
		e.ID = m.ID
		out = append(out, e)
	}
	return out, nil
}

// validStreamID reports whether id looks like "ms-seq".
func validStreamID(id string) bool {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return err1 == nil && err2 == nil
}

// RecordUsage implements policy.Store. Usage of rules or accounts that no
// longer exist is dropped.
func (s *Store) RecordUsage(ctx context.Context, us []policy.Usage) error {
	if len(us) == 0 {
		return nil
	}
	byAccount := map[string][]any{}
	for _, u := range us {
		var last int64
		if !u.LastUsed.IsZero() {
			last = u.LastUsed.UnixMilli()
		}
		byAccount[u.Account] = append(byAccount[u.Account], ruleField(u.Rule), u.Hits, last)
	}
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for acct, args := range byAccount {
			k := keysFor(acct)
			p.Eval(ctx, usageScript, []string{k.usage, k.rules}, args...)
		}
		return nil
	})
	return wrap("record rule usage", err)
}

// LoadAccountPolicy implements policy.Source.
func (s *Store) LoadAccountPolicy(ctx context.Context, account string) (policy.AccountPolicy, error) {
	k := keysFor(account)
	var acct *redis.StringCmd
	var rules, users, devices *redis.StringSliceCmd
	// One MULTI, so the account, its rules and devices are read at one
	// instant.
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		acct = p.Get(ctx, k.acct)
		rules = p.HVals(ctx, k.rules)
		users = p.HVals(ctx, k.users)
		devices = p.HVals(ctx, k.devices)
		return nil
	})
	if errors.Is(err, redis.Nil) {
		return policy.AccountPolicy{}, fmt.Errorf("account %s: %w", account, policy.ErrNotFound)
	}
	if err != nil {
		return policy.AccountPolicy{}, wrap("load policy of "+account, err)
	}
	p, err := s.accountPolicy(account, acct.Val(), rules.Val())
	if err == nil {
		s.fillUsers(&p, users.Val(), devices.Val())
	}
	return p, err
}

// fillUsers decodes the users of p's account into the gate's view of who
// may sign in to web applications and, when the account requires a known
// device, of its devices. One that does not decode is left out and
// logged: a user left out may not sign in, a device key left out stays
// unknown, which refuses it.
func (s *Store) fillUsers(p *policy.AccountPolicy, users, devices []string) {
	account := p.Account.ID
	var us []policy.User // most accounts of a large fleet have none
	if len(users) > 0 {
		us = make([]policy.User, 0, len(users))
	}
	for _, v := range users {
		var u policy.User
		if err := json.Unmarshal([]byte(v), &u); err != nil {
			s.log.Error("skipping a user that does not decode", zap.String("account", account), zap.Error(err))
			continue
		}
		us = append(us, u)
	}
	p.Web, p.WebKnown = policy.WebUsers(us), true
	if p.Account.Settings.RequireDevice {
		p.Devices = s.deviceKeys(account, us, devices)
	}
}

// deviceKeys decodes the devices of an account that requires a known
// device into the gate's view of them.
func (s *Store) deviceKeys(account string, us []policy.User, devices []string) []policy.DeviceKey {
	ds := make([]policy.Device, 0, len(devices))
	for _, v := range devices {
		var d policy.Device
		if err := json.Unmarshal([]byte(v), &d); err != nil {
			s.log.Error("skipping a device that does not decode", zap.String("account", account), zap.Error(err))
			continue
		}
		ds = append(ds, d)
	}
	return policy.DeviceKeys(ds, us)
}

// accountPolicy decodes one account's policy. A rule that does not decode
// is left out and logged: a missing rule denies, which is the safe side,
// and one bad value must not stop the whole fleet from loading.
func (s *Store) accountPolicy(id, acct string, rules []string) (policy.AccountPolicy, error) {
	var p policy.AccountPolicy
	if err := json.Unmarshal([]byte(acct), &p.Account); err != nil {
		return p, fmt.Errorf("decode account %s: %w", id, err)
	}
	p.Rules = s.decodeRules(id, rules)
	return p, nil
}

// gatePolicy is accountPolicy for the gate (LoadAccountPolicies): of the
// account's document it decodes only what a table is compiled from. A
// full account (names, password hash, second factor, notification
// destinations and their secrets) costs several times as much to decode,
// on every change to the account, and the gate would throw it away.
func (s *Store) gatePolicy(id, acct string, rules []string) (policy.AccountPolicy, error) {
	var a gateAccount
	if err := json.Unmarshal([]byte(acct), &a); err != nil {
		return policy.AccountPolicy{}, fmt.Errorf("decode account %s: %w", id, err)
	}
	return policy.AccountPolicy{
		Account: policy.Account{ID: a.ID, Mode: a.Mode, Settings: a.Settings},
		Rules:   s.decodeRules(id, rules),
	}, nil
}

// gateAccount is the part of an account's document (policy.Account's JSON)
// that the gate compiles: TestGateAccountInStep keeps the names in step.
type gateAccount struct {
	ID       string          `json:"id"`
	Mode     policy.Mode     `json:"mode"`
	Settings policy.Settings `json:"settings"`
}

// decodeRules decodes an account's stored rules, sorted by ID.
func (s *Store) decodeRules(id string, rules []string) []policy.Rule {
	out := make([]policy.Rule, 0, len(rules))
	for _, v := range rules {
		r, err := decodeRule(id, v)
		if err != nil {
			s.log.Error("skipping a rule that does not decode", zap.String("account", id), zap.Error(err))
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b policy.Rule) int { return cmpID(a.ID, b.ID) })
	return out
}

// LoadPolicy tuning: accounts per pipeline, and pipelines in flight. More
// than one in flight lets Go decode one batch while Redis serves the next.
const (
	loadBatch   = 2000
	loadWorkers = 4
)

// LoadPolicy implements policy.Source. The feed position is read first, so
// a change committed while the rest loads is delivered again by Follow
// rather than missed.
func (s *Store) LoadPolicy(ctx context.Context) (*policy.Data, error) {
	pos, err := s.positions(ctx)
	if err != nil {
		return nil, err
	}
	gen, err := s.generation(ctx)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	ids, err := s.accountIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	loaded := make([]policy.AccountPolicy, len(ids))
	found := make([]bool, len(ids))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan int)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	for range loadWorkers {
		wg.Go(func() {
			for start := range batches {
				end := min(start+loadBatch, len(ids))
				if err := s.loadBatch(ctx, ids[start:end], loaded[start:end], found[start:end]); err != nil {
					fail(err)
				}
			}
		})
	}
feed:
	for start := 0; start < len(ids); start += loadBatch {
		select {
		case batches <- start:
		case <-ctx.Done():
			break feed
		}
	}
	close(batches)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	d := &policy.Data{Cursor: pos.String(), Generation: gen, Accounts: loaded[:0]}
	for i, ok := range found {
		if ok {
			d.Accounts = append(d.Accounts, loaded[i])
		}
	}
	return d, nil
}

// LoadAccountPolicies loads the policies of ids for the gate, nil for an
// account that is gone, in one round trip per Redis node rather than one
// per account: a feed batch that names a thousand accounts costs the
// receiver one exchange with Redis, not a thousand. Each account, with its
// rules, users and devices, is read at one instant, as LoadAccountPolicy
// reads it, by a script: a MULTI spanning accounts would span slots,
// which a Cluster refuses. Of each account it returns what the gate
// compiles (ID, Mode and Settings); the rules are whole.
func (s *Store) LoadAccountPolicies(ctx context.Context, ids []string) ([]*policy.AccountPolicy, error) {
	out := make([]*policy.AccountPolicy, len(ids))
	ps := make([]policy.AccountPolicy, len(ids))
	for start := 0; start < len(ids); start += loadBatch {
		batch := ids[start:min(start+loadBatch, len(ids))]
		reads := make([]*redis.Cmd, len(batch))
		_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range batch {
				// Only the keys read, not keysFor's every key.
				pre := shardPrefix(shardOf(id))
				reads[i] = p.EvalRO(ctx, policyScript, []string{
					pre + "acct:" + id, pre + "rules:" + id, pre + "users:" + id, pre + "devices:" + id})
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, wrap("load policies", err)
		}
		for i, id := range batch {
			v, err := reads[i].Slice()
			if errors.Is(err, redis.Nil) {
				continue // gone
			}
			if err != nil {
				return nil, fmt.Errorf("load policy of %s: %w", id, err)
			}
			if err := s.decodePolicy(&ps[start+i], id, v); err != nil {
				return nil, err
			}
			out[start+i] = &ps[start+i]
		}
	}
	return out, nil
}

// decodePolicy fills p from policyScript's answer v for account id.
func (s *Store) decodePolicy(p *policy.AccountPolicy, id string, v []any) error {
	r, ok := policyReply(v)
	if !ok {
		return fmt.Errorf("load policy of %s: unexpected reply %v", id, v)
	}
	var err error
	if *p, err = s.gatePolicy(id, r.acct, r.rules); err != nil {
		return err
	}
	s.fillUsers(p, r.users, r.devices)
	return nil
}

// policyValues is policyScript's answer taken apart. The values share the
// reply's memory.
type policyValues struct {
	acct                  string
	rules, users, devices []string
}

// policyReply takes apart policyScript's answer: the account, then its
// rules, users and devices, each hash packed in one string.
func policyReply(v []any) (policyValues, bool) {
	var r policyValues
	if len(v) != 4 {
		return r, false
	}
	var packed [3]string
	acct, ok := v[0].(string)
	for i := range packed {
		p, isString := v[i+1].(string)
		ok = ok && isString
		packed[i] = p
	}
	if !ok {
		return r, false
	}
	r.acct = acct
	var okRules, okUsers, okDevices bool
	r.rules, okRules = unpackValues(packed[0])
	r.users, okUsers = unpackValues(packed[1])
	r.devices, okDevices = unpackValues(packed[2])
	return r, okRules && okUsers && okDevices
}

// unpackValues splits one of policyScript's packed hashes, each value
// preceded by its length in 4 bytes, big-endian. The values share
// packed's memory.
func unpackValues(packed string) ([]string, bool) {
	n := 0
	for i := 0; i < len(packed); n++ {
		if len(packed)-i < 4 {
			return nil, false
		}
		l := be32(packed[i:])
		if uint64(l) > uint64(len(packed)-i-4) {
			return nil, false
		}
		i += 4 + int(l)
	}
	values := make([]string, 0, n)
	for i := 0; i < len(packed); {
		l := int(be32(packed[i:]))
		values = append(values, packed[i+4:i+4+l])
		i += 4 + l
	}
	return values, true
}

// be32 reads 4 bytes of s, big-endian.
func be32(s string) uint32 {
	return uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3])
}

// loadBatch loads the policies of ids in one pipeline.
func (s *Store) loadBatch(ctx context.Context, ids []string, out []policy.AccountPolicy, found []bool) error {
	accts := make([]*redis.StringCmd, len(ids))
	rules := make([]*redis.StringSliceCmd, len(ids))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			k := keysFor(id)
			accts[i] = p.Get(ctx, k.acct)
			rules[i] = p.HVals(ctx, k.rules)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return wrap("load policy", err)
	}
	for i, id := range ids {
		if errors.Is(accts[i].Err(), redis.Nil) {
			continue // listed but gone
		}
		p, err := s.accountPolicy(id, accts[i].Val(), rules[i].Val())
		if err != nil {
			s.log.Error("skipping an account that does not decode", zap.String("account", id), zap.Error(err))
			continue
		}
		out[i], found[i] = p, true
	}
	ps := make([]*policy.AccountPolicy, 0, len(ids))
	for i := range out {
		if found[i] {
			ps = append(ps, &out[i])
		}
	}
	return s.loadDeviceKeys(ctx, ps)
}

// loadDeviceKeys fills in, in one more pipeline, who may sign in to web
// applications for every account of ps (nil for one that is gone), and
// the devices of those that require a known device (few do: the others
// need not send them). A user or device change committed after the
// account was read is on the feed, which loads the account again.
func (s *Store) loadDeviceKeys(ctx context.Context, ps []*policy.AccountPolicy) error {
	var want []*policy.AccountPolicy
	for _, p := range ps {
		if p != nil {
			want = append(want, p)
		}
	}
	if len(want) == 0 {
		return nil
	}
	users := make([]*redis.StringSliceCmd, len(want))
	devices := make([]*redis.StringSliceCmd, len(want))
	_, err := s.client.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for j, p := range want {
			k := keysFor(p.Account.ID)
			users[j] = pl.HVals(ctx, k.users)
			if p.Account.Settings.RequireDevice {
				devices[j] = pl.HVals(ctx, k.devices)
			}
		}
		return nil
	})
	if err != nil {
		return wrap("load users and devices", err)
	}
	for j, p := range want {
		var ds []string
		if devices[j] != nil {
			ds = devices[j].Val()
		}
		s.fillUsers(p, users[j].Val(), ds)
	}
	return nil
}
