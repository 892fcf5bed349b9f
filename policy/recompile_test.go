package policy

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// entries lists what an account table holds, for comparing two.
func entries(at *accountTable) []winner {
	var out []winner
	for p, e := range at.prefixes.All() {
		out = append(out, winner{p, e})
	}
	slices.SortFunc(out, func(a, b winner) int { return a.prefix.Compare(b.prefix) })
	return out
}

// Whatever the earlier table, recompile gives what compileAccount gives:
// random accounts changed at random (expiries moved, rules added,
// removed, networks shared, modes changed, rules expired).
func TestRecompileEqualsCompile(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := rand.New(rand.NewPCG(11, 11))
	for round := range 2000 {
		n := 1 + r.IntN(40)
		rules := randomRules(r, n)
		for i := range rules {
			rules[i].ID = RuleID(i + 1)
			if r.IntN(3) == 0 {
				rules[i].ExpiresAt = now.Add(time.Duration(r.IntN(7200)-600) * time.Second)
			}
			if i > 0 && r.IntN(8) == 0 {
				rules[i].Prefix = rules[r.IntN(i)].Prefix // a shared network
			}
		}
		mode := []Mode{ModeOn, ModeMonitor, ModeOff}[r.IntN(3)]
		before := AccountPolicy{Account: Account{ID: "a", Mode: mode}, Rules: rules}
		after := AccountPolicy{Account: Account{ID: "a", Mode: mode}, Rules: slices.Clone(rules)}
		for range r.IntN(4) {
			switch i := r.IntN(len(after.Rules)); r.IntN(4) {
			case 0: // renewal
				after.Rules[i].ExpiresAt = now.Add(time.Duration(r.IntN(7200)) * time.Second)
			case 1: // removal
				after.Rules = slices.Delete(after.Rules, i, i+1)
			case 2: // addition
				after.Rules = append(after.Rules, Rule{ID: RuleID(100 + round), Prefix: randomRules(r, 1)[0].Prefix})
			case 3:
				if r.IntN(4) == 0 {
					after.Account.Mode = ModeOn
				}
			}
			if len(after.Rules) == 0 {
				break
			}
		}
		prev := compileAccount(before, now)
		later := now.Add(time.Duration(r.IntN(1200)) * time.Second)
		got, want := recompile(prev, after, later), compileAccount(after, later)
		if !slices.Equal(entries(got), entries(want)) || got.mode != want.mode || got.nextExpiry != want.nextExpiry {
			t.Fatalf("round %d: recompile gave %v (mode %d, next expiry %d), compile %v (mode %d, next expiry %d)",
				round, entries(got), got.mode, got.nextExpiry, entries(want), want.mode, want.nextExpiry)
		}
		if !slices.Equal(entries(prev), entries(compileAccount(before, now))) {
			t.Fatalf("round %d: recompile changed the earlier table", round)
		}
	}
}

// A renewal that only moves one expiry does not rebuild the matcher: it
// allocates a fraction of a fresh build, and a change that touches no
// rule returns the same table.
func TestRenewalSharesTheMatcher(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	rules := randomRules(rand.New(rand.NewPCG(12, 12)), 200)
	for i := range rules {
		rules[i].ID = RuleID(i + 1)
		rules[i].ExpiresAt = now.Add(time.Hour)
	}
	p := AccountPolicy{Account: Account{ID: "a", Mode: ModeOn}, Rules: rules}
	prev := compileAccount(p, now)
	if recompile(prev, p, now) != prev {
		t.Error("an unchanged policy rebuilt the table")
	}
	renewed := AccountPolicy{Account: p.Account, Rules: slices.Clone(rules)}
	renewed.Rules[17].ExpiresAt = now.Add(2 * time.Hour)
	fresh := testing.AllocsPerRun(20, func() { compileAccount(renewed, now) })
	patched := testing.AllocsPerRun(20, func() { recompile(prev, renewed, now) })
	t.Logf("allocations for a renewal among 200 rules: %v rebuilt, %v patched", fresh, patched)
	if patched*4 > fresh {
		t.Errorf("a renewal allocates %v times, a rebuild %v: not sharing the matcher", patched, fresh)
	}
	got := recompile(prev, renewed, now)
	if e, _ := got.prefixes.Get(canonical(rules[17].Prefix)); e.expires != unixSeconds(now.Add(2*time.Hour)) {
		t.Errorf("renewed entry %+v", e)
	}
	if d := got.check(netip.MustParseAddr("192.0.2.255")); d.Verdict == Allowed && prev.check(netip.MustParseAddr("192.0.2.255")).Verdict != Allowed {
		t.Error("the renewal let in an address the earlier table did not")
	}
}
