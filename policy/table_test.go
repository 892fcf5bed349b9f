package policy

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

func mustPrefix(t testing.TB, s string) netip.Prefix {
	t.Helper()
	p, err := ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTableCheck(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	rule := func(id RuleID, cidr string, expires time.Time) Rule {
		return Rule{ID: id, Prefix: mustPrefix(t, cidr), ExpiresAt: expires}
	}
	d := &Data{Accounts: []AccountPolicy{
		{Account: Account{ID: "on", Mode: ModeOn}, Rules: []Rule{
			rule(1, "203.0.113.0/24", time.Time{}),
			rule(2, "203.0.113.7", time.Time{}),
			rule(3, "2001:db8::/48", time.Time{}),
			rule(4, "198.51.100.1", now.Add(-time.Second)), // already expired
			rule(5, "198.51.100.2", now.Add(time.Hour)),
		}},
		{Account: Account{ID: "monitor", Mode: ModeMonitor}, Rules: []Rule{rule(1, "203.0.113.0/24", time.Time{})}},
		{Account: Account{ID: "off", Mode: ModeOff}, Rules: []Rule{rule(9, "203.0.113.0/24", time.Time{})}},
		{Account: Account{ID: "empty-mode"}, Rules: []Rule{rule(1, "192.0.2.1", time.Time{})}},
	}}
	tab := newTable(d, now)
	cases := []struct {
		account, addr string
		want          Verdict
		rule          RuleID
	}{
		{"on", "203.0.113.9", Allowed, 1},
		{"on", "203.0.113.7", Allowed, 2}, // longest prefix wins
		{"on", "::ffff:203.0.113.9", Allowed, 1},
		{"on", "2001:db8:0:1::5", Allowed, 3},
		{"on", "2001:db8:1::5", Denied, 0},
		{"on", "198.51.100.1", Denied, 0},
		{"on", "198.51.100.2", Allowed, 5},
		{"on", "192.0.2.1", Denied, 0},
		{"monitor", "203.0.113.1", Allowed, 1},
		{"monitor", "192.0.2.1", Monitored, 0},
		{"off", "192.0.2.1", Allowed, 0},
		{"off", "203.0.113.1", Allowed, 9},
		{"empty-mode", "192.0.2.1", Allowed, 1},
		{"empty-mode", "192.0.2.2", Denied, 0},
		{"unknown", "203.0.113.9", Denied, 0},
	}
	for _, tc := range cases {
		got := tab.Check(tc.account, netip.MustParseAddr(tc.addr))
		if got.Verdict != tc.want || got.Rule != tc.rule {
			t.Errorf("Check(%s, %s) = %v rule %d; want %v rule %d", tc.account, tc.addr, got.Verdict, got.Rule, tc.want, tc.rule)
		}
	}
	if got := tab.Check("on", netip.Addr{}); got.Verdict != Denied {
		t.Errorf("invalid address: %v, want denied", got.Verdict)
	}
	var nilTable *Table
	if got := nilTable.Check("on", netip.MustParseAddr("203.0.113.9")); got.Verdict != Denied {
		t.Errorf("nil table: %v, want denied", got.Verdict)
	}
	if tab.Rules() != 4+1+1+1 {
		t.Errorf("Rules() = %d, want 7 (the expired rule left out)", tab.Rules())
	}
}

// Two rules on one network: the longer-lived one is kept, so that the
// other's expiry does not remove the network.
func TestTableSharedPrefixKeepsLongestLived(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	p := mustPrefix(t, "203.0.113.7")
	for _, order := range [][]Rule{
		{{ID: 1, Prefix: p, ExpiresAt: now.Add(time.Minute)}, {ID: 2, Prefix: p}},
		{{ID: 2, Prefix: p}, {ID: 1, Prefix: p, ExpiresAt: now.Add(time.Minute)}},
	} {
		at := compileAccount(AccountPolicy{Account: Account{ID: "a"}, Rules: order}, now)
		later := at.withoutExpired(now.Add(2 * time.Minute))
		if d := later.check(p.Addr()); d.Verdict != Allowed || d.Rule != 2 {
			t.Errorf("after the grant expired: %v rule %d; want allowed by rule 2", d.Verdict, d.Rule)
		}
	}
}

func TestWithoutExpired(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	at := compileAccount(AccountPolicy{Account: Account{ID: "a"}, Rules: []Rule{
		{ID: 1, Prefix: mustPrefix(t, "192.0.2.1"), ExpiresAt: now.Add(time.Second)},
		{ID: 2, Prefix: mustPrefix(t, "192.0.2.2"), ExpiresAt: now.Add(time.Hour)},
		{ID: 3, Prefix: mustPrefix(t, "192.0.2.3")},
	}}, now)
	if same := at.withoutExpired(now); same != at {
		t.Fatal("nothing expired yet, but a new table was built")
	}
	n := at.withoutExpired(now.Add(time.Second))
	if n.prefixes.Size() != 2 || n.check(netip.MustParseAddr("192.0.2.1")).Verdict != Denied {
		t.Fatalf("expired rule still matches: size %d", n.prefixes.Size())
	}
	if want := time.Unix(now.Add(time.Hour).Unix(), 0); !n.nextExpiryTime().Equal(want) {
		t.Errorf("nextExpiry = %v, want %v", n.nextExpiry, want)
	}
}

// TestLookupMatchesLinearScan compares the matcher with a brute-force scan
// over the same random rules the benchmarks use.
func TestLookupMatchesLinearScan(t *testing.T) {
	for _, mix := range []ruleMix{mixRealistic, mixUniform} {
		rules := randomRulesMix(rand.New(rand.NewPCG(7, 7)), 2000, mix)
		at := compileAccount(AccountPolicy{Account: Account{ID: "a", Mode: ModeOn}, Rules: rules}, time.Now())
		hits := 0
		for _, addr := range probeAddrs(rand.New(rand.NewPCG(8, 8)), rules, 5000) {
			want := false
			for _, r := range rules {
				want = want || r.Prefix.Contains(addr)
			}
			if got := at.check(addr).Verdict == Allowed; got != want {
				t.Fatalf("%v: check(%s) allowed=%v, linear scan says %v", mix, addr, got, want)
			}
			if want {
				hits++
			}
		}
		if hits < 2000 {
			t.Fatalf("%v: only %d of 5000 probes hit; the probe set should be about half hits", mix, hits)
		}
	}
}

// ruleMix says how long generated prefixes are.
type ruleMix int

const (
	// mixRealistic is what accounts hold: unblock grants are always /32 or
	// /128, offices are /24s and a few odd sizes; three rules in four IPv4.
	mixRealistic ruleMix = iota
	// mixUniform draws lengths uniformly (/16–/32, /48–/128): mostly
	// lengths between bart's 8-bit strides, its most expensive case.
	mixUniform
)

func (m ruleMix) String() string {
	if m == mixUniform {
		return "uniform"
	}
	return "realistic"
}

// randomRules returns n random rules of the given mix.
func randomRules(r *rand.Rand, n int) []Rule { return randomRulesMix(r, n, mixRealistic) }

func randomRulesMix(r *rand.Rand, n int, mix ruleMix) []Rule {
	out := make([]Rule, n)
	for i := range out {
		var p netip.Prefix
		if i%4 == 3 {
			var b [16]byte
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			b[0] = 0x20 | b[0]&0x0f // 2000::/4, where clients are
			bits := 48 + r.IntN(81)
			if mix == mixRealistic {
				bits = [...]int{128, 128, 64, 56, 48}[r.IntN(5)]
			}
			p = netip.PrefixFrom(netip.AddrFrom16(b), bits).Masked()
		} else {
			var b [4]byte
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			bits := 16 + r.IntN(17)
			if mix == mixRealistic {
				bits = [...]int{32, 32, 32, 32, 32, 32, 24, 24, 29, 28}[r.IntN(10)]
			}
			p = netip.PrefixFrom(netip.AddrFrom4(b), bits).Masked()
		}
		out[i] = Rule{ID: RuleID(i + 1), Prefix: p}
	}
	return out
}

// probeAddrs returns addresses half inside some rule (hits), half random
// (mostly misses), mixed IPv4 and IPv6.
func probeAddrs(r *rand.Rand, rules []Rule, n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		if i%2 == 0 {
			p := rules[r.IntN(len(rules))].Prefix
			b := p.Addr().AsSlice()
			b[len(b)-1] |= byte(r.Uint32()) & byte(0xff>>(min(8, max(0, p.Bits()-(len(b)-1)*8))))
			a, _ := netip.AddrFromSlice(b)
			out[i] = a
			continue
		}
		if i%4 == 1 {
			var b [16]byte
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			b[0] = 0x20
			out[i] = netip.AddrFrom16(b)
		} else {
			out[i] = netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
		}
	}
	return out
}
