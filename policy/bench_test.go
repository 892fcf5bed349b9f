package policy

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/yl2chen/cidranger"
)

var benchSizes = []int{100, 10_000, 100_000, 1_000_000}

// BenchmarkLookup measures Table.Check on one account holding n rules,
// with a mix of IPv4 and IPv6 addresses, half hits and half misses. The
// mix=uniform variants are the worst case for bart (see ruleMix).
func BenchmarkLookup(b *testing.B) {
	for _, mix := range []ruleMix{mixRealistic, mixUniform} {
		for _, n := range benchSizes {
			name := "rules=" + strconv.Itoa(n)
			if mix != mixRealistic {
				name += "/mix=" + mix.String()
			}
			b.Run(name, func(b *testing.B) { benchLookup(b, n, mix) })
		}
	}
}

func benchLookup(b *testing.B, n int, mix ruleMix) {
	rules := randomRulesMix(rand.New(rand.NewPCG(1, uint64(n))), n, mix)
	tab := newTable(&Data{Accounts: []AccountPolicy{{Account: Account{ID: "10042", Mode: ModeOn}, Rules: rules}}}, time.Now())
	addrs := probeAddrs(rand.New(rand.NewPCG(2, uint64(n))), rules, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	var allowed int
	for i := 0; b.Loop(); i++ {
		if tab.Check("10042", addrs[i&4095]).Verdict == Allowed {
			allowed++
		}
	}
	if allowed == 0 {
		b.Fatal("no lookup hit: the probe set is wrong")
	}
}

// BenchmarkLookupCidranger is the baseline the matcher was chosen against:
// the same rules and probes in github.com/yl2chen/cidranger.
func BenchmarkLookupCidranger(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("rules="+strconv.Itoa(n), func(b *testing.B) {
			if n >= 1_000_000 && testing.Short() {
				b.Skip("cidranger needs about 15 s and 500 MiB for 1,000,000 rules")
			}
			rules := randomRules(rand.New(rand.NewPCG(1, uint64(n))), n)
			r := cidranger.NewPCTrieRanger()
			for _, rule := range rules {
				p := rule.Prefix
				_, ipnet, err := net.ParseCIDR(p.String())
				if err != nil {
					b.Fatal(err)
				}
				r.Insert(cidranger.NewBasicRangerEntry(*ipnet))
			}
			addrs := probeAddrs(rand.New(rand.NewPCG(2, uint64(n))), rules, 4096)
			ips := make([]net.IP, len(addrs))
			for i, a := range addrs {
				ips[i] = net.IP(a.AsSlice())
			}
			b.ReportAllocs()
			b.ResetTimer()
			var allowed int
			for i := 0; b.Loop(); i++ {
				if ok, _ := r.Contains(ips[i&4095]); ok {
					allowed++
				}
			}
			if allowed == 0 {
				b.Fatal("no lookup hit: the probe set is wrong")
			}
		})
	}
}

// BenchmarkBuild compiles 1,000,000 rules spread over 100,000 accounts and
// reports the heap each rule takes once built.
func BenchmarkBuild(b *testing.B) {
	for _, mix := range []ruleMix{mixRealistic, mixUniform} {
		b.Run("mix="+mix.String(), func(b *testing.B) { benchBuild(b, mix) })
	}
}

func benchBuild(b *testing.B, mix ruleMix) {
	const accounts, perAccount = 100_000, 10
	d := buildData(accounts, perAccount, mix)
	b.ReportAllocs()
	b.ResetTimer()
	var bytesPerRule float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		t := newTable(d, time.Now())
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		bytesPerRule = float64(after.HeapAlloc-before.HeapAlloc) / float64(t.Rules())
		if t.Rules() < accounts*perAccount*99/100 {
			b.Fatalf("built %d rules, want about %d", t.Rules(), accounts*perAccount)
		}
		runtime.KeepAlive(t)
		b.StartTimer()
	}
	b.ReportMetric(bytesPerRule, "bytes/rule")
}

func buildData(accounts, perAccount int, mix ruleMix) *Data {
	r := rand.New(rand.NewPCG(3, 3))
	all := randomRulesMix(r, accounts*perAccount, mix)
	d := &Data{Accounts: make([]AccountPolicy, accounts)}
	for i := range d.Accounts {
		d.Accounts[i] = AccountPolicy{
			Account: Account{ID: fmt.Sprintf("%d", 100000+i), Mode: ModeOn},
			Rules:   all[i*perAccount : (i+1)*perAccount],
		}
	}
	return d
}

// BenchmarkPublish measures what every change pays to be published: one
// account of 10 rules replaced, through the engine, in a fleet of n
// accounts. The fleet's accounts share one compiled table, so that a
// million of them fit in memory; publication does not look inside them.
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{1000, 100_000, 1_000_000} {
		b.Run("accounts="+strconv.Itoa(n), func(b *testing.B) {
			now := time.Now()
			shared := compileAccount(AccountPolicy{Account: Account{ID: "x"}, Rules: randomRules(rand.New(rand.NewPCG(5, 5)), 10)}, now)
			fleet := make(map[string]*accountTable, n)
			for i := range n {
				fleet[strconv.Itoa(100000+i)] = shared
			}
			e, err := NewEngine(Options{Source: &memSource{}})
			if err != nil {
				b.Fatal(err)
			}
			e.publishAll(&Data{Generation: "g", Cursor: "0"}, fleet)
			at := compileAccount(AccountPolicy{Account: Account{ID: "100042"}, Rules: randomRules(rand.New(rand.NewPCG(4, 4)), 10)}, now)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				e.publish(map[string]*accountTable{"100042": at}, "c")
			}
			if e.Table().Accounts() != n || e.Check("100042", netip.Addr{}).Verdict != Denied {
				b.Fatal("the fleet changed size")
			}
		})
	}
}

// BenchmarkRenew measures what applying one account's change costs before
// it is published: a renewal (one rule's expiry moved) compiled afresh
// and patched onto the account's current table.
func BenchmarkRenew(b *testing.B) {
	now := time.Now()
	for _, n := range []int{10, 1000} {
		rules := randomRules(rand.New(rand.NewPCG(6, uint64(n))), n)
		for i := range rules {
			rules[i].ID = RuleID(i + 1)
			rules[i].ExpiresAt = now.Add(time.Hour)
		}
		p := AccountPolicy{Account: Account{ID: "a", Mode: ModeOn}, Rules: rules}
		prev := compileAccount(p, now)
		renewed := AccountPolicy{Account: p.Account, Rules: append([]Rule(nil), rules...)}
		renewed.Rules[n/2].ExpiresAt = now.Add(2 * time.Hour)
		b.Run("rules="+strconv.Itoa(n)+"/rebuild", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				compileAccount(renewed, now)
			}
		})
		b.Run("rules="+strconv.Itoa(n)+"/patch", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				recompile(prev, renewed, now)
			}
		})
	}
}

// BenchmarkWriteSnapshot is what an instance pays each time it writes the
// whole snapshot file, at 1,000,000 rules over 100,000 accounts: encoding
// the table after 1,000 accounts changed (each changed account is encoded
// again, the rest copied from the writer's record cache) and after none,
// then writing the file (encoding, sha256, write, fsync, rename) as the
// engine's writer does.
func BenchmarkWriteSnapshot(b *testing.B) {
	now := time.Now()
	d := buildData(100_000, 10, mixRealistic)
	t := newTable(d, now)
	var cache recordCache
	var buf bytes.Buffer
	writeSnapshot(&buf, t, now, &cache)
	b.Run("encode/changed=1000", func(b *testing.B) {
		b.ReportAllocs()
		next := 0
		for b.Loop() {
			b.StopTimer()
			changed := make(map[string]*accountTable, 1000)
			for range 1000 {
				p := d.Accounts[next%len(d.Accounts)]
				changed[p.Account.ID] = compileAccount(p, now)
				next++
			}
			t.set(changed)
			b.StartTimer()
			buf.Reset()
			writeSnapshot(&buf, t, now, &cache)
		}
	})
	b.Run("encode/changed=0", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			writeSnapshot(&buf, t, now, &cache)
		}
	})
	b.Run("file", func(b *testing.B) {
		w := &snapshotFiles{path: b.TempDir() + "/policy.snapshot", records: cache}
		defer w.closeJournal()
		b.ReportAllocs()
		for b.Loop() {
			if err := w.writeAll(t, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAccountIndex is what the account index adds to a lookup:
// finding an account's table through the table's index, against a plain
// map of the same accounts.
func BenchmarkAccountIndex(b *testing.B) {
	accts := compileAll(buildData(100_000, 1, mixRealistic), time.Now())
	tab := &Table{}
	tab.replaceAll(accts, "g", "c")
	ids := make([]string, 0, 4096)
	for id := range accts {
		if ids = append(ids, id); len(ids) == cap(ids) {
			break
		}
	}
	b.Run("index", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if tab.account(ids[i&4095]) == nil {
				b.Fatal("missing")
			}
		}
	})
	b.Run("map", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if accts[ids[i&4095]] == nil {
				b.Fatal("missing")
			}
		}
	})
}

// BenchmarkJournalAppend is what the engine's snapshot writer pays per
// journal record under steady churn, at 1,000,000 rules over 100,000
// accounts: the records of the accounts changed since the last append
// (ids=2: a 2 ms feed batch at 1,000 changes a second, written every
// 250 ms it is 500 of them) appended and synced.
func BenchmarkJournalAppend(b *testing.B) {
	now := time.Now()
	d := buildData(100_000, 10, mixRealistic)
	t := newTable(d, now)
	for _, n := range []int{2, 250} {
		b.Run(fmt.Sprintf("ids=%d", n), func(b *testing.B) {
			w := &snapshotFiles{path: b.TempDir() + "/policy.snapshot"}
			defer w.closeJournal()
			if err := w.writeAll(t, now); err != nil {
				b.Fatal(err)
			}
			next := 0
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				ids := make([]string, n)
				changed := make(map[string]*accountTable, n)
				for i := range ids {
					p := d.Accounts[next%len(d.Accounts)]
					next++
					ids[i] = p.Account.ID
					changed[p.Account.ID] = compileAccount(p, now)
				}
				t.set(changed)
				b.StartTimer()
				if err := w.appendChanges(t, ids, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
