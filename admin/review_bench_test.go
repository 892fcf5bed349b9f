package admin

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// BenchmarkReviewPass measures one pass of the access-review check over
// 10,000 accounts of which 10 have an overdue review, already noted (the
// steady state: the pass writes nothing), on the embedded store and on a
// real redis-server. It reports the store calls of a pass (listings of
// every account, reads of one, transactions) and, on Redis, the commands
// the server processed for it.
//
//	go test ./admin -run '^$' -bench ReviewPass -benchtime 20x -count 3
func BenchmarkReviewPass(b *testing.B) {
	const accounts, overdue = 10_000, 10
	run := func(b *testing.B, st policy.Store, commands func() int64) {
		ctx := context.Background()
		now := time.Now()
		d := &policy.Data{Generation: "bench"}
		for i := range accounts {
			created := now
			if i%(accounts/overdue) == 0 {
				created = now.Add(-100 * 24 * time.Hour) // due 10 days ago
			}
			d.Accounts = append(d.Accounts, policy.AccountPolicy{Account: policy.Account{ID: strconv.Itoa(100000 + i),
				Mode: policy.ModeOn, CreatedAt: created}})
		}
		if _, err := st.Reseed(ctx, d, policy.AuditEntry{Action: "bench"}); err != nil {
			b.Fatal(err)
		}
		cs := &countingStore{Store: st}
		s, err := New(Options{Store: cs, PasswordParams: cheap})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := s.reviewPass(ctx); err != nil { // notes the overdue reviews
			b.Fatal(err)
		}
		b.Logf("first pass: %v (it notes the %d overdue reviews; on Redis, with the index, it builds it)", time.Since(start), overdue)
		if n := seriesOf(s.reviewOverdue); n != overdue {
			b.Fatalf("%d overdue series after the first pass, want %d", n, overdue)
		}
		cs.views.Store(0)
		cs.updates.Store(0)
		cs.lists.Store(0)
		cs.reads.Store(0)
		var cmds int64
		if commands != nil {
			cmds = commands()
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if err := s.reviewPass(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		n := float64(b.N)
		b.ReportMetric(float64(cs.lists.Load())/n, "listings/op")
		b.ReportMetric(float64(cs.reads.Load())/n, "account-reads/op")
		b.ReportMetric(float64(cs.views.Load()+cs.updates.Load())/n, "store-txs/op")
		if commands != nil {
			b.ReportMetric(float64(commands()-cmds-1)/n, "redis-cmds/op")
		}
	}
	onStores(b, run)
}
