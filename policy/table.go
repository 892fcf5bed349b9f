package policy

import (
	"maps"
	"net/netip"
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
}

// entry is a matcher value: kept small because there may be millions.
type entry struct {
	rule RuleID
	// expires is the expiry in Unix seconds, 0 for never.
	expires uint32
}

// accountTable is one account's immutable compiled policy. Its header is
// kept small: with 100,000 accounts every byte here is 100 kB.
type accountTable struct {
	prefixes bart.Table[entry]
	// nextExpiry is the earliest rule expiry in Unix seconds, 0 if none.
	nextExpiry uint32
	mode       modeCode
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

// Table is an immutable snapshot of every account's policy. The zero value
// and nil deny everything.
type Table struct {
	version    uint64
	generation string
	cursor     string
	accounts   map[string]*accountTable
	rules      int
}

// Check decides whether addr may reach account. It takes no lock and does
// not allocate. An unknown account or an invalid address is denied.
func (t *Table) Check(account string, addr netip.Addr) Decision {
	if t == nil || !addr.IsValid() {
		return Decision{}
	}
	at := t.accounts[account]
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
	if e, ok := at.prefixes.Lookup(addr); ok {
		return Decision{Verdict: Allowed, Rule: e.rule}
	}
	if at.mode == codeMonitor {
		return Decision{Verdict: Monitored}
	}
	return Decision{}
}

// Version counts the changes applied to the table since the engine started.
func (t *Table) Version() uint64 {
	if t == nil {
		return 0
	}
	return t.version
}

// Rules returns the number of live rules in the table.
func (t *Table) Rules() int {
	if t == nil {
		return 0
	}
	return t.rules
}

// Mode returns an account's mode; ok is false for an unknown account.
func (t *Table) Mode(account string) (m Mode, ok bool) {
	if t == nil {
		return "", false
	}
	at := t.accounts[account]
	if at == nil {
		return "", false
	}
	return at.mode.mode(), true
}

// AccountRules returns the number of live rules of an account.
func (t *Table) AccountRules(account string) int {
	if t == nil || t.accounts[account] == nil {
		return 0
	}
	return t.accounts[account].prefixes.Size()
}

// Accounts returns the number of accounts in the table.
func (t *Table) Accounts() int {
	if t == nil {
		return 0
	}
	return len(t.accounts)
}

// compileAccount builds one account's table from its policy, leaving out
// rules expired at now. Where two rules share a network, the one that lives
// longer wins, so that an expiry of the other changes nothing.
func compileAccount(p AccountPolicy, now time.Time) *accountTable {
	at := &accountTable{mode: codeOf(p.Account.Mode)}
	for _, r := range p.Rules {
		if r.Expired(now) || !r.Prefix.IsValid() || r.Prefix.Bits() == 0 {
			continue
		}
		e := entry{rule: r.ID, expires: unixSeconds(r.ExpiresAt)}
		at.insert(canonical(r.Prefix), e)
	}
	return at
}

func (at *accountTable) insert(p netip.Prefix, e entry) {
	at.prefixes.Modify(p, func(old entry, exists bool) (entry, bool) {
		if exists && outlives(old, e) {
			return old, false
		}
		return e, false
	})
	if e.expires != 0 && (at.nextExpiry == 0 || e.expires < at.nextExpiry) {
		at.nextExpiry = e.expires
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
	n := &accountTable{mode: at.mode}
	cut := unixSeconds(now)
	for p, e := range at.prefixes.All() {
		if e.expires != 0 && e.expires <= cut {
			continue
		}
		n.insert(p, e)
	}
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

// with returns a new table in which the given accounts are replaced (a nil
// value removes the account). The receiver is not modified.
func (t *Table) with(changed map[string]*accountTable) *Table {
	n := &Table{}
	if t != nil {
		*n = *t
		n.accounts = maps.Clone(t.accounts)
	}
	if n.accounts == nil {
		n.accounts = make(map[string]*accountTable, len(changed))
	}
	for id, at := range changed {
		if old := n.accounts[id]; old != nil {
			n.rules -= old.prefixes.Size()
		}
		if at == nil {
			delete(n.accounts, id)
			continue
		}
		n.accounts[id] = at
		n.rules += at.prefixes.Size()
	}
	n.version++
	return n
}

// newTable compiles a whole policy.
func newTable(d *Data, now time.Time) *Table {
	t := &Table{
		generation: d.Generation,
		cursor:     d.Cursor,
		accounts:   make(map[string]*accountTable, len(d.Accounts)),
	}
	for _, p := range d.Accounts {
		at := compileAccount(p, now)
		t.accounts[p.Account.ID] = at
		t.rules += at.prefixes.Size()
	}
	return t
}
