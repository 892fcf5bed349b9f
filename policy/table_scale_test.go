package policy

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// fleet returns n accounts sharing one compiled table of 10 rules, and
// an address it allows.
func fleet(t testing.TB, n int) (map[string]*accountTable, netip.Addr) {
	t.Helper()
	rules := randomRules(rand.New(rand.NewPCG(7, 7)), 10)
	shared := compileAccount(AccountPolicy{Account: Account{ID: "x"}, Rules: rules}, time.Now())
	out := make(map[string]*accountTable, n)
	for i := range n {
		out[strconv.Itoa(100000+i)] = shared
	}
	return out, rules[0].Prefix.Addr()
}

// Accounts come, change and go; the counts and verdicts follow, and an
// account that went is denied even through the part of the index a
// reader may still hold.
func TestTableSet(t *testing.T) {
	accts, allowed := fleet(t, 3000)
	tab := &Table{}
	tab.replaceAll(accts, "g", "c1")
	if tab.Accounts() != 3000 || tab.Rules() != 30000 || tab.generation() != "g" || tab.cursor() != "c1" {
		t.Fatalf("after replaceAll: %d accounts, %d rules, %q %q", tab.Accounts(), tab.Rules(), tab.generation(), tab.cursor())
	}
	one := compileAccount(AccountPolicy{Account: Account{ID: "new", Mode: ModeOn}, Rules: []Rule{
		{ID: 1, Prefix: netip.MustParsePrefix("192.0.2.0/24")},
	}}, time.Now())
	gone := tab.slot("100001")
	old := tab.shards[shardOf("100001")].load()
	tab.set(map[string]*accountTable{"new": one, "100000": one, "100001": nil, "missing": nil})
	if tab.Accounts() != 3000 || tab.Rules() != 30000-10+1-10+1 {
		t.Fatalf("after set: %d accounts, %d rules", tab.Accounts(), tab.Rules())
	}
	for _, tc := range []struct {
		account string
		addr    netip.Addr
		want    Verdict
	}{
		{"new", netip.MustParseAddr("192.0.2.9"), Allowed},
		{"100000", netip.MustParseAddr("192.0.2.9"), Allowed},
		{"100000", allowed, Denied},
		{"100002", allowed, Allowed},
		{"100001", allowed, Denied},
		{"missing", allowed, Denied},
	} {
		if d := tab.Check(tc.account, tc.addr); d.Verdict != tc.want {
			t.Errorf("Check(%s, %v) = %v, want %v", tc.account, tc.addr, d.Verdict, tc.want)
		}
	}
	if gone.at.Load() != nil || old["100001"].at.Load() != nil {
		t.Error("the removed account's slot still holds a table")
	}
	if tab.Version() != 2 {
		t.Errorf("Version() = %d, want 2", tab.Version())
	}
}

// A full reload keeps the slot of every account it keeps, so no reader
// sees such an account missing, and empties the slots of the others.
func TestTableReplaceAllKeepsSlots(t *testing.T) {
	accts, allowed := fleet(t, 100)
	tab := &Table{}
	tab.replaceAll(accts, "g", "c1")
	kept, dropped := tab.slot("100000"), tab.slot("100001")
	delete(accts, "100001")
	tab.replaceAll(accts, "g", "c2")
	if tab.slot("100000") != kept || kept.at.Load() == nil {
		t.Error("a kept account got a new slot")
	}
	if dropped.at.Load() != nil || tab.Check("100001", allowed).Verdict != Denied {
		t.Error("a dropped account is still allowed")
	}
	if tab.Accounts() != 99 || tab.Rules() != 990 || tab.cursor() != "c2" {
		t.Errorf("%d accounts, %d rules, cursor %q", tab.Accounts(), tab.Rules(), tab.cursor())
	}
}

// A lookup allocates nothing, with the account found or not.
func TestCheckDoesNotAllocate(t *testing.T) {
	accts, allowed := fleet(t, 1000)
	tab := &Table{}
	tab.replaceAll(accts, "g", "c")
	for _, account := range []string{"100500", "unknown"} {
		if n := testing.AllocsPerRun(1000, func() { tab.Check(account, allowed) }); n != 0 {
			t.Errorf("Check(%s) allocates %v times", account, n)
		}
	}
}

// Publishing a change to one account costs the same whatever the size of
// the fleet: measured in bytes allocated, not time.
func TestPublishCostIndependentOfFleet(t *testing.T) {
	perChange := func(n int) uint64 {
		accts, _ := fleet(t, n)
		e, err := NewEngine(Options{Source: &memSource{}})
		if err != nil {
			t.Fatal(err)
		}
		e.publishAll(&Data{Generation: "g", Cursor: "0"}, accts)
		at := compileAccount(AccountPolicy{Account: Account{ID: "100042"}}, time.Now())
		const rounds = 1000
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range rounds {
			e.publish(map[string]*accountTable{"100042": at}, "c")
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / rounds
	}
	small, large := perChange(100), perChange(100_000)
	t.Logf("bytes allocated per change: %d with 100 accounts, %d with 100,000", small, large)
	if large > 1024 || large > 2*small+64 {
		t.Errorf("a change allocates %d bytes among 100,000 accounts, %d among 100", large, small)
	}
}
