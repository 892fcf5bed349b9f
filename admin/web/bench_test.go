package web

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// BenchmarkFirewallPageUnderWrites loads a master's firewall page over
// HTTPS while writers keep changing another account on the same embedded
// store, each write an fsynced bbolt transaction. It reports the page's
// latency percentiles: a page that reads through a write transaction
// queues behind every write; one that reads through a read-only view
// does not. docs/benchmarks.md records the figures.
//
//	go test -run '^$' -bench FirewallPageUnderWrites -benchtime 400x ./admin/web
func BenchmarkFirewallPageUnderWrites(b *testing.B) {
	for _, writers := range []int{0, 4} {
		b.Run(itoa(writers)+"writers", func(b *testing.B) {
			f := newFixture(b, fixtureOptions{})
			c := f.client().mustLogin(acctA, "", pwA)
			for i := range 20 {
				f.putRule(acctA, policy.Rule{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i), 0}), 24)})
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var writes atomic.Int64
			for w := range writers {
				wg.Go(func() { burst(ctx, b, f, w, &writes) })
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				t0 := time.Now()
				if p := c.get("/accounts/" + acctA + "/firewall"); p.status != http.StatusOK {
					b.Fatalf("firewall page: %d", p.status)
				}
				lat = append(lat, time.Since(t0))
			}
			took := time.Since(start)
			b.StopTimer()
			cancel()
			wg.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(writes.Load())/took.Seconds(), "writes/s")
		})
	}
}

// burst adds and deletes a rule of account B until ctx ends: one write
// transaction after another.
func burst(ctx context.Context, b *testing.B, f *fixture, w int, writes *atomic.Int64) {
	p := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(w)}), 32)
	for ctx.Err() == nil {
		var id policy.RuleID
		err := f.bolt.Update(ctx, acctB, func(tx policy.Tx) error {
			r, err := tx.PutRule(policy.Rule{Prefix: p, Source: policy.SourceManual, CreatedBy: "bench"})
			id = r.ID
			return err
		})
		if err == nil {
			err = f.bolt.Update(ctx, acctB, func(tx policy.Tx) error { return tx.DeleteRule(id) })
		}
		if err != nil && ctx.Err() == nil {
			b.Error(err)
			return
		}
		writes.Add(2)
	}
}
