package policy

import (
	"iter"
	"maps"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"
)

// Verdict is the outcome of a check.
type Verdict uint8

const (
	// Denied: closed before anything moves. The zero value, so that a
	// forgotten assignment fails closed.
	Denied Verdict = iota
	// Allowed by a rule, or by mode off.
	Allowed
	// Monitored: would be denied, but the account is in monitor mode.
	Monitored
)

// String returns the verdict's metric label.
func (v Verdict) String() string {
	switch v {
	case Allowed:
		return "allowed"
	case Monitored:
		return "monitored"
	}
	return "denied"
}

// Decision is the answer to a check.
type Decision struct {
	Verdict Verdict
	// Rule is the matching rule, zero when none matched.
	Rule RuleID
	// Device says whether a client that passed must also present a known
	// device, on listeners that ask for one (tls).
	Device DeviceCheck
}

// DeviceCheck is what the account asks of a client's device.
type DeviceCheck uint8

const (
	// DeviceAny: no device asked for.
	DeviceAny DeviceCheck = iota
	// DeviceRequired: only a known device passes (mode on).
	DeviceRequired
	// DeviceLogged: a client without a known device passes but is logged
	// and counted (mode monitor).
	DeviceLogged
)

// entry is a matcher value: kept small because there may be millions.
type entry struct {
	rule RuleID
	// expires is the expiry in Unix seconds, 0 for never.
	expires uint32
}

// accountTable is one account's immutable compiled policy. Its header is
// kept small: with 100,000 accounts every byte here is 100 kB.
type accountTable struct {
	prefixes *bart.Table[entry] // never nil; shared with the account's earlier tables
	// nextExpiry is the earliest rule expiry in Unix seconds, 0 if none.
	nextExpiry uint32
	mode       modeCode
	// gates is what the account asks besides an address, nil when
	// nothing (see dev and web). Apart from the header, so that the header
	// stays three words: with 100,000 accounts every 8 bytes here is
	// 0.8 bytes a rule (table-bytes-per-rule, docs/benchmarks.md).
	gates *accountGates
}

// accountGates is what an account's table holds besides its networks.
// It never changes once made.
type accountGates struct {
	dev *deviceTable // set when the account requires a known device
	web *webTable    // who may sign in to web applications; nil when unknown
}

// gatesOf returns the gates of dev and web, nil when both are nil.
func gatesOf(dev *deviceTable, web *webTable) *accountGates {
	if dev == nil && web == nil {
		return nil
	}
	return &accountGates{dev: dev, web: web}
}

// dev is the account's device table, nil when it requires no known device.
func (at *accountTable) dev() *deviceTable {
	if at.gates == nil {
		return nil
	}
	return at.gates.dev
}

// web is who may sign in to the account's web applications; nil when
// unknown.
func (at *accountTable) web() *webTable {
	if at.gates == nil {
		return nil
	}
	return at.gates.web
}

// deviceTable is the device keys of an account that requires a known
// device, with their standing.
type deviceTable struct {
	keys map[[32]byte]DeviceStanding
}

// compileDevices returns the device table of p, nil if p does not require
// a known device. A key listed twice keeps its worst standing.
func compileDevices(p AccountPolicy) *deviceTable {
	if !p.Account.Settings.RequireDevice {
		return nil
	}
	dt := &deviceTable{keys: make(map[[32]byte]DeviceStanding, len(p.Devices))}
	for _, k := range p.Devices {
		if old, ok := dt.keys[k.Key]; ok && old != DeviceKnown {
			continue
		}
		dt.keys[k.Key] = k.Standing
	}
	return dt
}

func (dt *deviceTable) equal(o *deviceTable) bool {
	if dt == nil || o == nil {
		return dt == o
	}
	return maps.Equal(dt.keys, o.keys)
}

// withDevices returns at with dev as its device table: at itself if it
// has an equal one, else a new table sharing at's matcher (and not its
// snapshot record, which holds the devices).
func (at *accountTable) withDevices(dev *deviceTable) *accountTable {
	if at.dev().equal(dev) {
		return at
	}
	return &accountTable{prefixes: at.prefixes, nextExpiry: at.nextExpiry, mode: at.mode, gates: gatesOf(dev, at.web())}
}

// modeCode is Mode in one byte.
type modeCode uint8

const (
	codeOn modeCode = iota
	codeMonitor
	codeOff
)

func codeOf(m Mode) modeCode {
	switch m {
	case ModeMonitor:
		return codeMonitor
	case ModeOff:
		return codeOff
	}
	return codeOn // the default, and what an unknown mode fails closed to
}

func (c modeCode) mode() Mode {
	switch c {
	case codeMonitor:
		return ModeMonitor
	case codeOff:
		return ModeOff
	}
	return ModeOn
}

// nextExpiryTime returns nextExpiry as a time, zero if none.
func (at *accountTable) nextExpiryTime() time.Time {
	if at.nextExpiry == 0 {
		return time.Time{}
	}
	return time.Unix(int64(at.nextExpiry), 0)
}

// Table is the live policy of every account. Each account's compiled
// table is immutable and sits behind its own atomic pointer (a slot), so a
// change to one account swaps that pointer and touches nothing else. The
// slots are found through an index split into numShards parts, each an
// immutable map replaced whole: only an account coming or going copies
// one part. The zero value and nil deny everything.
//
// Readers take no lock. Writers (the engine, under its publication lock)
// must not run concurrently. A reader sees each account either before or
// after a change, never a mix; across accounts there is no common instant,
// which nothing on the hot path needs (see appendSnapshot for the one
// place that cares).
type Table struct {
	shards   [numShards]shardRef
	meta     atomic.Pointer[tableMeta]
	version  atomic.Uint64
	accounts atomic.Int64
	rules    atomic.Int64
}

// numShards parts of the account index: adding or removing one of 100,000
// accounts copies a map of about a hundred.
const numShards = 1024

// shard is one immutable part of the account index.
type shard = map[string]*slot

// shardRef holds a shard. An atomic.Value holds the map itself (a map is
// one pointer), where an atomic.Pointer would add a load to every lookup.
type shardRef struct{ v atomic.Value }

func (r *shardRef) load() shard {
	m, _ := r.v.Load().(shard)
	return m
}

func (r *shardRef) store(m shard) { r.v.Store(m) }

// slot holds an account's current table; nil once the account is gone.
type slot struct{ at atomic.Pointer[accountTable] }

// tableMeta is what the whole table reflects of the store.
type tableMeta struct {
	generation string
	cursor     string // the feed position every account is at least as new as
}

// shardOf is FNV-1a, allocation-free; account IDs are short.
func shardOf(id string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return h % numShards
}

func (t *Table) slot(id string) *slot {
	return t.shards[shardOf(id)].load()[id]
}

// account returns an account's current table, nil if unknown.
func (t *Table) account(id string) *accountTable {
	if t == nil {
		return nil
	}
	s := t.slot(id)
	if s == nil {
		return nil
	}
	return s.at.Load()
}

// all yields every account with its current table.
func (t *Table) all() iter.Seq2[string, *accountTable] {
	return func(yield func(string, *accountTable) bool) {
		if t == nil {
			return
		}
		for i := range t.shards {
			for id, s := range t.shards[i].load() {
				if at := s.at.Load(); at != nil && !yield(id, at) {
					return
				}
			}
		}
	}
}

func (t *Table) generation() string {
	if m := t.meta.Load(); m != nil {
		return m.generation
	}
	return ""
}

func (t *Table) cursor() string {
	if m := t.meta.Load(); m != nil {
		return m.cursor
	}
	return ""
}

// setCursor records the feed position the table reflects. Called after
// the accounts of that position are in.
func (t *Table) setCursor(c string) {
	t.meta.Store(&tableMeta{generation: t.generation(), cursor: c})
}

// Check decides whether addr may reach account. It takes no lock and does
// not allocate. An unknown account or an invalid address is denied.
func (t *Table) Check(account string, addr netip.Addr) Decision {
	if t == nil || !addr.IsValid() {
		return Decision{}
	}
	at := t.account(account)
	if at == nil {
		return Decision{}
	}
	return at.check(addr.Unmap())
}

func (at *accountTable) check(addr netip.Addr) Decision {
	if at.mode == codeOff {
		e, _ := at.prefixes.Lookup(addr)
		return Decision{Verdict: Allowed, Rule: e.rule}
	}
	dev := DeviceAny
	if at.dev() != nil {
		dev = DeviceRequired
		if at.mode == codeMonitor {
			dev = DeviceLogged
		}
	}
	if e, ok := at.prefixes.Lookup(addr); ok {
		return Decision{Verdict: Allowed, Rule: e.rule, Device: dev}
	}
	if at.mode == codeMonitor {
		return Decision{Verdict: Monitored, Device: dev}
	}
	return Decision{}
}

// Device returns the standing of a device's Ed25519 public key in an
// account that requires a known device; DeviceUnknown for any other key,
// account or size.
func (t *Table) Device(account string, key []byte) DeviceStanding {
	if t == nil || len(key) != 32 {
		return DeviceUnknown
	}
	at := t.account(account)
	if at == nil || at.dev() == nil {
		return DeviceUnknown
	}
	return at.dev().keys[[32]byte(key)]
}

// Version counts the changes applied to the table since the engine started.
func (t *Table) Version() uint64 {
	if t == nil {
		return 0
	}
	return t.version.Load()
}

// Rules returns the number of live rules in the table.
func (t *Table) Rules() int {
	if t == nil {
		return 0
	}
	return int(t.rules.Load())
}

// Mode returns an account's mode; ok is false for an unknown account.
func (t *Table) Mode(account string) (m Mode, ok bool) {
	at := t.account(account)
	if at == nil {
		return "", false
	}
	return at.mode.mode(), true
}

// AccountRules returns the number of live rules of an account.
func (t *Table) AccountRules(account string) int {
	return t.account(account).size()
}

// Accounts returns the number of accounts in the table.
func (t *Table) Accounts() int {
	if t == nil {
		return 0
	}
	return int(t.accounts.Load())
}

// size is the number of rules of at; 0 for nil.
func (at *accountTable) size() int {
	if at == nil {
		return 0
	}
	return at.prefixes.Size()
}

// compileAccount builds one account's table from its policy, leaving out
// rules expired at now. Where two rules share a network, the one that lives
// longer wins, so that an expiry of the other changes nothing.
func compileAccount(p AccountPolicy, now time.Time) *accountTable {
	at := build(codeOf(p.Account.Mode), winners(p, now))
	at.gates = gatesOf(compileDevices(p), compileWeb(p))
	return at
}

// build makes a table of ws, networks that are all different.
func build(mode modeCode, ws []winner) *accountTable {
	at := &accountTable{prefixes: new(bart.Table[entry]), mode: mode}
	for _, w := range ws {
		at.prefixes.Insert(w.prefix, w.entry)
		at.noteExpiry(w.entry.expires)
	}
	return at
}

// recompile returns the table compileAccount(p, now) would, built from
// prev when that is cheaper: a change that only moves expiries (a lease
// or grant renewal), or adds or removes a few of many rules, copies the
// paths to the networks it touches and shares the rest of prev's matcher;
// a change that touches nothing returns prev itself. The result depends
// on p and now only, never on which earlier table prev is.
func recompile(prev *accountTable, p AccountPolicy, now time.Time) *accountTable {
	dev := compileDevices(p)
	if prev != nil && prev.dev().equal(dev) {
		dev = prev.dev()
	}
	web := compileWeb(p)
	if prev != nil && prev.web().equal(web) {
		web = prev.web()
	}
	return recompileRules(prev, p, now).withDevices(dev).withWeb(web)
}

// recompileRules is recompile for the mode and the rules; the result's
// device table is prev's, or none.
func recompileRules(prev *accountTable, p AccountPolicy, now time.Time) *accountTable {
	mode := codeOf(p.Account.Mode)
	ws := winners(p, now)
	if prev == nil || mode != prev.mode {
		return build(mode, ws)
	}
	var put []winner
	kept := 0
	for _, w := range ws {
		old, ok := prev.prefixes.Get(w.prefix)
		if ok {
			kept++
		}
		if !ok || old != w.entry {
			put = append(put, w)
		}
	}
	// Networks prev holds that p no longer has: none if p has every one of
	// them (a renewal), else a walk over prev finds them.
	var gone []netip.Prefix
	if kept != prev.prefixes.Size() {
		for pfx := range prev.prefixes.All() {
			if _, found := slices.BinarySearchFunc(ws, pfx, comparePrefixOf); !found {
				gone = append(gone, pfx)
			}
		}
	}
	switch {
	case len(put) == 0 && len(gone) == 0:
		return prev
	case 2*(len(put)+len(gone)) > len(ws):
		// Most of it changed: a fresh build is cheaper than path copies.
		return build(mode, ws)
	}
	t := prev.prefixes
	for _, pfx := range gone {
		t = t.DeletePersist(pfx)
	}
	for _, w := range put {
		t = t.InsertPersist(w.prefix, w.entry)
	}
	n := &accountTable{prefixes: t, mode: prev.mode, gates: prev.gates}
	for _, w := range ws {
		n.noteExpiry(w.entry.expires)
	}
	return n
}

// winner is the entry a network gets from an account's rules.
type winner struct {
	prefix netip.Prefix
	entry  entry
}

func comparePrefixOf(w winner, p netip.Prefix) int { return w.prefix.Compare(p) }

// winners returns the networks p's live rules allow, sorted, each with
// the entry compileAccount would give it.
func winners(p AccountPolicy, now time.Time) []winner {
	ws := make([]winner, 0, len(p.Rules))
	for _, r := range p.Rules {
		if r.Expired(now) || !r.Prefix.IsValid() || r.Prefix.Bits() == 0 {
			continue
		}
		ws = append(ws, winner{canonical(r.Prefix), entry{rule: r.ID, expires: unixSeconds(r.ExpiresAt)}})
	}
	slices.SortStableFunc(ws, func(a, b winner) int { return a.prefix.Compare(b.prefix) }) // stable: ties go to the first rule, as in compileAccount
	out := ws[:0]
	for _, w := range ws {
		if k := len(out) - 1; k >= 0 && out[k].prefix == w.prefix {
			if !outlives(out[k].entry, w.entry) {
				out[k].entry = w.entry
			}
			continue
		}
		out = append(out, w)
	}
	return out
}

func (at *accountTable) noteExpiry(expires uint32) {
	if expires != 0 && (at.nextExpiry == 0 || expires < at.nextExpiry) {
		at.nextExpiry = expires
	}
}

// outlives reports whether a lives at least as long as b.
func outlives(a, b entry) bool {
	if a.expires == 0 {
		return true
	}
	return b.expires != 0 && a.expires >= b.expires
}

// withoutExpired returns a copy of at without the entries expired at now,
// or at itself when none has.
func (at *accountTable) withoutExpired(now time.Time) *accountTable {
	if at.nextExpiry == 0 || now.Before(at.nextExpiryTime()) {
		return at
	}
	cut := unixSeconds(now)
	var ws []winner
	for p, e := range at.prefixes.All() {
		if e.expires == 0 || e.expires > cut {
			ws = append(ws, winner{p, e})
		}
	}
	n := build(at.mode, ws)
	n.gates = at.gates
	return n
}

// unixSeconds rounds an expiry up to the next whole second, so a rule
// never lives shorter than asked; zero time maps to 0 (never).
func unixSeconds(t time.Time) uint32 {
	if t.IsZero() {
		return 0
	}
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	if s <= 0 {
		return 1
	}
	if s > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(s)
}

// set replaces the given accounts (a nil table removes one). A change to
// an existing account only swaps its slot; an account that comes or goes
// copies the one part of the index that holds it. Writers must not run
// concurrently.
func (t *Table) set(changed map[string]*accountTable) {
	var reindex map[uint32][]string
	for id, at := range changed {
		s := t.slot(id)
		if s == nil && at == nil {
			continue
		}
		if s != nil {
			t.rules.Add(int64(at.size() - s.at.Load().size()))
			// A removed account's slot is emptied first, so that a reader
			// still holding the old part of the index is denied.
			s.at.Store(at)
			if at != nil {
				continue
			}
		}
		if reindex == nil {
			reindex = make(map[uint32][]string)
		}
		i := shardOf(id)
		reindex[i] = append(reindex[i], id)
	}
	for i, ids := range reindex {
		old := t.shards[i].load()
		m := make(shard, len(old)+len(ids))
		maps.Copy(m, old)
		for _, id := range ids {
			if at := changed[id]; at != nil {
				s := &slot{}
				s.at.Store(at)
				m[id] = s
				t.rules.Add(int64(at.size()))
				t.accounts.Add(1)
			} else {
				delete(m, id)
				t.accounts.Add(-1)
			}
		}
		t.shards[i].store(m)
	}
	t.version.Add(1)
}

// replaceAll makes the table hold exactly accounts, at generation and
// cursor. An account kept keeps its slot, so a reader never sees it
// missing; one that is gone has its slot emptied. Writers must not run
// concurrently.
func (t *Table) replaceAll(accounts map[string]*accountTable, generation, cursor string) {
	var parts [numShards]shard
	for id := range accounts {
		i := shardOf(id)
		if parts[i] == nil {
			parts[i] = make(shard)
		}
		parts[i][id] = nil
	}
	var rules int64
	for i := range t.shards {
		old := t.shards[i].load()
		for id, s := range old {
			if _, kept := parts[i][id]; !kept {
				s.at.Store(nil)
			}
		}
		for id := range parts[i] {
			s := old[id]
			if s == nil {
				s = &slot{}
			}
			at := accounts[id]
			s.at.Store(at)
			parts[i][id] = s
			rules += int64(at.size())
		}
		if parts[i] == nil && old == nil {
			continue
		}
		m := parts[i]
		t.shards[i].store(m)
	}
	t.accounts.Store(int64(len(accounts)))
	t.rules.Store(rules)
	t.meta.Store(&tableMeta{generation: generation, cursor: cursor})
	t.version.Add(1)
}

// compileAll compiles a whole policy.
func compileAll(d *Data, now time.Time) map[string]*accountTable {
	out := make(map[string]*accountTable, len(d.Accounts))
	for _, p := range d.Accounts {
		out[p.Account.ID] = compileAccount(p, now)
	}
	return out
}

// newTable compiles a whole policy into a new table.
func newTable(d *Data, now time.Time) *Table {
	t := &Table{}
	t.replaceAll(compileAll(d, now), d.Generation, d.Cursor)
	return t
}
