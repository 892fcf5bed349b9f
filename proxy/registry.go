package proxy

import (
	"net/netip"
	"sync"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// registry knows every connection the proxy holds: all of them, for
// closing at shutdown, and the admitted ones by account, for re-checking
// when an account's policy changes.
type registry struct {
	mu        sync.Mutex
	all       map[*conn]struct{}
	byAccount map[string]map[*conn]struct{}
}

func (r *registry) init() {
	r.all = make(map[*conn]struct{})
	r.byAccount = make(map[string]map[*conn]struct{})
}

func (r *registry) track(c *conn) {
	r.mu.Lock()
	r.all[c] = struct{}{}
	r.mu.Unlock()
}

// admit files c under its account; from then on policy changes reach it.
func (r *registry) admit(c *conn) {
	r.mu.Lock()
	set := r.byAccount[c.route.account]
	if set == nil {
		set = make(map[*conn]struct{})
		r.byAccount[c.route.account] = set
	}
	set[c] = struct{}{}
	r.mu.Unlock()
}

func (r *registry) forget(c *conn, admitted bool) {
	r.mu.Lock()
	delete(r.all, c)
	if admitted {
		if set := r.byAccount[c.route.account]; set != nil {
			delete(set, c)
			if len(set) == 0 {
				delete(r.byAccount, c.route.account)
			}
		}
	}
	r.mu.Unlock()
}

func (r *registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.all)
}

// countFrom counts the admitted connections of account whose client is
// one of addrs.
func (r *registry) countFrom(account string, closes func(netip.Addr) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for c := range r.byAccount[account] {
		if closes(c.client.Addr()) {
			n++
		}
	}
	return n
}

// holding returns those of accounts that have admitted connections.
func (r *registry) holding(accounts []string) []string {
	var out []string
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range accounts {
		if len(r.byAccount[a]) > 0 {
			out = append(out, a)
		}
	}
	return out
}

// disallowed returns the admitted connections of the given accounts (of
// every account if all) that t denies.
func (r *registry) disallowed(t *policy.Table, all bool, accounts map[string]struct{}) []*conn {
	var out []*conn
	check := func(account string, set map[*conn]struct{}) {
		for c := range set {
			if c.route.checkAddr {
				if d := t.Check(account, c.client.Addr()); d.Verdict == policy.Denied || c.deviceDisallowed(t, d) {
					out = append(out, c)
					continue
				}
			}
			if c.route.web != nil && c.webRevoked(t) {
				out = append(out, c)
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if all {
		for a, set := range r.byAccount {
			check(a, set)
		}
		return out
	}
	for a := range accounts {
		check(a, r.byAccount[a])
	}
	return out
}

// sweepIdle closes the piping connections that moved no byte either way
// for their listener's idle timeout.
func (r *registry) sweepIdle(now time.Time) {
	var idle []*conn
	r.mu.Lock()
	for _, set := range r.byAccount {
		for c := range set {
			if c.idleSince(now) >= c.lc.t.Idle && c.at() == phasePiping {
				idle = append(idle, c)
			}
		}
	}
	r.mu.Unlock()
	for _, c := range idle {
		c.idleOut()
	}
}

// killAll closes every connection and says how many there were.
func (r *registry) killAll() int {
	r.mu.Lock()
	cs := make([]*conn, 0, len(r.all))
	for c := range r.all {
		cs = append(cs, c)
	}
	r.mu.Unlock()
	for _, c := range cs {
		c.kill()
	}
	return len(cs)
}

// closeIdleHTTP closes the connections of l that the HTTP/1.1 fast path
// holds between requests.
func (r *registry) closeIdleHTTP(l *listener) {
	var idle []*conn
	r.mu.Lock()
	for c := range r.all {
		if c.ln == l && c.at() == phaseIdle {
			idle = append(idle, c)
		}
	}
	r.mu.Unlock()
	for _, c := range idle {
		c.kill()
	}
}
