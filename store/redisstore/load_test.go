package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// TestLoadMillionRules loads 1,000,000 rules over 100,000 accounts, the
// size the product promises to load "in a few seconds", and reports the
// time:
//
//	go test -run LoadMillionRules -v ./store/redisstore/
//
// It is skipped with -short, and under the race detector, which slows the
// decoding tenfold and measures nothing useful.
func TestLoadMillionRules(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("loads 1M rules: skipped with -short and under -race")
	}
	const accounts, perAccount = 100_000, 10
	srv := redistest.Start(t)
	s := openStore(t, srv)
	ctx := t.Context()

	start := time.Now()
	seed(t, ctx, rawClient(t, srv), accounts, perAccount)
	mem, _ := rawClient(t, srv).MemoryUsage(ctx, keysFor("acct-000042").rules).Result()
	info, _ := rawClient(t, srv).Info(ctx, "memory").Result()
	t.Logf("seeded %d rules over %d accounts in %v; Redis %s, %d bytes for one account's rules hash",
		accounts*perAccount, accounts, time.Since(start), infoField(info, "used_memory_human"), mem)

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start = time.Now()
	d, err := s.LoadPolicy(ctx)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	runtime.ReadMemStats(&after)
	rules := 0
	for _, p := range d.Accounts {
		rules += len(p.Rules)
	}
	if len(d.Accounts) != accounts || rules != accounts*perAccount || d.Generation == "" {
		t.Fatalf("loaded %d accounts, %d rules, generation %q; want %d, %d and one",
			len(d.Accounts), rules, d.Generation, accounts, accounts*perAccount)
	}
	runtime.GC()
	var live runtime.MemStats
	runtime.ReadMemStats(&live)
	t.Logf("LoadPolicy: %d rules over %d accounts in %v (GOMAXPROCS %d); allocated %d MiB, %d MiB live after",
		rules, len(d.Accounts), took, runtime.GOMAXPROCS(0),
		(after.TotalAlloc-before.TotalAlloc)>>20, (live.HeapAlloc-before.HeapAlloc)>>20)
	runtime.KeepAlive(d)
	if took > 30*time.Second {
		t.Errorf("LoadPolicy of 1M rules took %v; the product promises a few seconds", took)
	}
}

// seed writes accounts directly, in the store's layout, far faster than
// CreateAccount and Update one by one would.
func seed(t testing.TB, ctx context.Context, c *redis.Client, accounts, perAccount int) {
	t.Helper()
	if err := c.HSet(ctx, metaKey, genField, "load-test").Err(); err != nil {
		t.Fatal(err)
	}
	const batch = 1000
	created := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	var wg sync.WaitGroup
	errs := make(chan error, accounts/batch+1)
	starts := make(chan int)
	for range 2 {
		wg.Go(func() {
			for first := range starts {
				_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
					for i := first; i < min(first+batch, accounts); i++ {
						id := fmt.Sprintf("acct-%06d", i)
						k := keysFor(id)
						a, _ := json.Marshal(policy.Account{ID: id, Name: "Studio " + id, Mode: policy.ModeOn, CreatedAt: created})
						p.Set(ctx, k.acct, a, 0)
						p.SAdd(ctx, k.accounts, id)
						vals := make([]any, 0, 2*perAccount)
						for j := range perAccount {
							r := policy.Rule{
								ID:        policy.RuleID(j + 1),
								Prefix:    netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(j)}), 32),
								Note:      "front desk",
								Source:    policy.SourceManual,
								CreatedBy: "master",
								CreatedAt: created,
							}
							vals = append(vals, ruleField(r.ID), encodeRule(r))
						}
						p.HSet(ctx, k.rules, vals...)
						p.Set(ctx, k.ruleID, perAccount, 0)
					}
					return nil
				})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	for first := 0; first < accounts; first += batch {
		starts <- first
	}
	close(starts)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("seed: %v", err)
	}
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// BenchmarkLoadChangedAccounts loads the accounts a feed batch names, as
// the engine does: one by one, 16 at a time (what it does with a store
// that cannot load a batch), against LoadAccountPolicies in one round
// trip. 10,000 accounts of 10 rules are stored; a batch names 32.
//
//	go test ./store/redisstore -run '^$' -bench LoadChangedAccounts -benchmem
func BenchmarkLoadChangedAccounts(b *testing.B) {
	const accounts, perAccount, batch = 10_000, 10, 32
	srv := redistest.Start(b)
	s := openStore(b, srv)
	ctx := b.Context()
	seed(b, ctx, rawClient(b, srv), accounts, perAccount)
	ids := make([]string, batch)
	for i := range ids {
		ids[i] = fmt.Sprintf("acct-%06d", i*accounts/batch)
	}
	check := func(b *testing.B, ps []*policy.AccountPolicy) {
		for i, p := range ps {
			if p == nil || len(p.Rules) != perAccount {
				b.Fatalf("account %s: %+v", ids[i], p)
			}
		}
	}
	b.Run("one-by-one", func(b *testing.B) {
		for b.Loop() {
			out := make([]*policy.AccountPolicy, batch)
			var wg sync.WaitGroup
			next := make(chan int)
			for range 16 {
				wg.Go(func() {
					for i := range next {
						p, err := s.LoadAccountPolicy(ctx, ids[i])
						if err != nil {
							b.Error(err)
							continue
						}
						out[i] = &p
					}
				})
			}
			for i := range ids {
				next <- i
			}
			close(next)
			wg.Wait()
			check(b, out)
		}
	})
	b.Run("batch", func(b *testing.B) {
		for b.Loop() {
			out, err := s.LoadAccountPolicies(ctx, ids)
			if err != nil {
				b.Fatal(err)
			}
			check(b, out)
		}
	})
}
