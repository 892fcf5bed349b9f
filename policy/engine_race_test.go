package policy

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// memSource is a Source held in memory, for tests that drive the engine's
// publication by hand.
type memSource struct {
	mu       sync.Mutex
	accounts map[string]AccountPolicy
}

func (m *memSource) LoadPolicy(context.Context) (*Data, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := &Data{Generation: "g", Cursor: "0"}
	for _, p := range m.accounts {
		d.Accounts = append(d.Accounts, p)
	}
	return d, nil
}

func (m *memSource) LoadAccountPolicy(_ context.Context, id string) (AccountPolicy, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.accounts[id]
	if !ok {
		return AccountPolicy{}, ErrNotFound
	}
	return p, nil
}

func (m *memSource) Follow(ctx context.Context, _ string, _ func([]Change)) error {
	<-ctx.Done()
	return ctx.Err()
}

func (m *memSource) set(p AccountPolicy) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.accounts[p.Account.ID] = p
}

// An expiry and a change from the store that land at the same time must
// both hold afterwards: the expiry may not put back what the change took
// away. The change is applied exactly where a publication can be overtaken
// (just before the expiry's publication takes the lock), so the test is
// deterministic. On an engine that computed the expired table before
// taking the lock, the deleted rule came back, and so did mode off.
func TestExpiryDoesNotUndoConcurrentChange(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	allowed := netip.MustParsePrefix("203.0.113.7/32")
	temporary := netip.MustParsePrefix("198.51.100.0/24")
	client := netip.MustParseAddr("203.0.113.7")
	stranger := netip.MustParseAddr("192.0.2.1")
	rules := []Rule{
		{ID: 1, Account: "a", Prefix: allowed},
		{ID: 2, Account: "a", Prefix: temporary, ExpiresAt: t0.Add(time.Second)},
	}

	for _, tc := range []struct {
		name   string
		before AccountPolicy
		after  AccountPolicy // what the store holds when the expiry fires
		addr   netip.Addr    // must be denied afterwards
	}{
		{
			name:   "rule deleted",
			before: AccountPolicy{Account: Account{ID: "a", Mode: ModeOn}, Rules: rules},
			after:  AccountPolicy{Account: Account{ID: "a", Mode: ModeOn}, Rules: rules[1:]},
			addr:   client,
		},
		{
			name:   "mode set back to on",
			before: AccountPolicy{Account: Account{ID: "a", Mode: ModeOff}, Rules: rules},
			after:  AccountPolicy{Account: Account{ID: "a", Mode: ModeOn}, Rules: rules},
			addr:   stranger,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var now time.Time
			src := &memSource{accounts: map[string]AccountPolicy{"a": tc.before}}
			e, err := NewEngine(Options{Source: src, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			now = t0
			if err := e.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if e.Check("a", tc.addr).Verdict != Allowed {
				t.Fatalf("%v not allowed before the change", tc.addr)
			}

			var seen [][]string
			e.OnChange(func(_ *Table, accts []string) { seen = append(seen, accts) })
			src.set(tc.after)
			interleaved := false
			e.beforePublish = func() {
				if interleaved {
					return
				}
				interleaved = true
				if err := e.apply(ctx, []Change{{Account: "a", Cursor: "1"}}); err != nil {
					t.Error(err)
				}
			}
			now = t0.Add(2 * time.Second)
			e.expireDue()
			if !interleaved {
				t.Fatal("the expiry published nothing: the test no longer interleaves")
			}
			if d := e.Check("a", tc.addr); d.Verdict != Denied {
				t.Errorf("after the change and the expiry, %v is %v (rule %d): the expiry undid the change",
					tc.addr, d.Verdict, d.Rule)
			}
			if d := e.Check("a", netip.MustParseAddr("198.51.100.9")); d.Verdict != Denied && tc.after.Account.Mode == ModeOn {
				t.Errorf("the expired rule still lets 198.51.100.9 in: %v", d.Verdict)
			}
			for _, accts := range seen {
				if len(accts) != 1 || accts[0] != "a" {
					t.Errorf("listener heard %v, want [a]", accts)
				}
			}
		})
	}
}
