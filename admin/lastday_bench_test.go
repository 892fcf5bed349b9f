package admin

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// BenchmarkLastDayPass measures one pass of the last-day runner over
// 10,000 accounts holding 10 last days between them, none due yet (the
// steady state: the pass only learns when the next one is), on the
// embedded store and on a real redis-server. It reports the store calls
// of a pass and, on Redis, the commands the server processed for it.
//
//	go test ./admin -run '^$' -bench LastDayPass -benchtime 20x -count 3
func BenchmarkLastDayPass(b *testing.B) {
	const accounts, lastDays = 10_000, 10
	seed := func(b *testing.B, st policy.Store) {
		ctx := context.Background()
		d := &policy.Data{Generation: "bench"}
		for i := range accounts {
			// Created now: no review is overdue, so a pass writes nothing.
			d.Accounts = append(d.Accounts, policy.AccountPolicy{Account: policy.Account{ID: strconv.Itoa(100000 + i),
				Mode: policy.ModeOn, CreatedAt: time.Now()}})
		}
		if _, err := st.Reseed(ctx, d, policy.AuditEntry{Action: "bench"}); err != nil {
			b.Fatal(err)
		}
		due := time.Now().Add(30 * 24 * time.Hour)
		for i := range lastDays {
			id := strconv.Itoa(100000 + i*accounts/lastDays)
			err := st.Update(ctx, id, func(tx policy.Tx) error {
				return tx.PutUser(policy.User{Username: "anna", Active: true, DesktopAccess: true, AccessUntil: due})
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	run := func(b *testing.B, st policy.Store, commands func() int64) {
		seed(b, st)
		cs := &countingStore{Store: st}
		s, err := New(Options{Store: cs, PasswordParams: cheap})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		start := time.Now()
		if _, err := s.lastDayPass(ctx); err != nil { // Redis builds its index on an instance's first pass
			b.Fatal(err)
		}
		b.Logf("first pass: %v (on Redis it builds the index)", time.Since(start))
		cs.views.Store(0)
		cs.updates.Store(0)
		var cmds int64
		if commands != nil {
			cmds = commands()
		}
		b.ResetTimer()
		for b.Loop() {
			next, err := s.lastDayPass(ctx)
			if err != nil || next.IsZero() {
				b.Fatalf("pass: next %v, %v", next, err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(cs.views.Load()+cs.updates.Load())/float64(b.N), "store-txs/op")
		if commands != nil {
			b.ReportMetric(float64(commands()-cmds-1)/float64(b.N), "redis-cmds/op")
		}
	}
	onStores(b, run)
}

// onStores runs run on the embedded store and on a real redis-server;
// commands, nil on the embedded store, reads how many commands the
// server has processed.
func onStores(b *testing.B, run func(b *testing.B, st policy.Store, commands func() int64)) {
	b.Run("store=bolt", func(b *testing.B) {
		st, err := boltstore.Open(filepath.Join(b.TempDir(), "gk.db"), boltstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		run(b, st, nil)
	})
	b.Run("store=redis", func(b *testing.B) {
		srv := redistest.Start(b)
		st, err := redisstore.Open(b.Context(), srv.URL(), redisstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		b.Cleanup(func() { c.Close() })
		run(b, st, func() int64 {
			info, err := c.Info(context.Background(), "stats").Result()
			if err != nil {
				b.Fatal(err)
			}
			for line := range strings.Lines(info) {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_commands_processed:"); ok {
					n, _ := strconv.ParseInt(v, 10, 64)
					return n
				}
			}
			b.Fatalf("no total_commands_processed in %q", info)
			return 0
		})
	})
}
