package main

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/config"
	"github.com/gatekeeper-dev/gatekeeper/ops"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store"
	"github.com/gatekeeper-dev/gatekeeper/store/backup"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
)

// storeCare is what serve runs to keep the store's data safe, beside the
// policy engine: the embedded store's backup socket, scheduled backups,
// and the watch on whether Redis persists what it acknowledges.
type storeCare struct {
	runs   []func(ctx context.Context) error
	checks map[string]ops.Check
}

// refused reports whether this instance refuses the store (it lost its
// data): scheduled backups pause meanwhile.
func newStoreCare(c *config.Config, st policy.Store, refused func() bool, reg prometheus.Registerer, log *zap.Logger) (*storeCare, error) {
	care := &storeCare{checks: map[string]ops.Check{}}
	ex, canExport := st.(backup.Exporter)
	if file, ok := store.FilePath(c.Store.URL); ok && canExport {
		// bbolt locks the file against every other process, a read-only
		// open included: `gatekeeper store backup` asks this process.
		// Without it the gate works as ever; only online backups do not.
		ln, err := backup.Listen(backup.SocketPath(file))
		if err != nil {
			log.Error("no online backups of the embedded store: `gatekeeper store backup` needs serve stopped", zap.Error(err))
		} else {
			log.Info("answering backups of the embedded store on a unix socket", zap.String("path", ln.Addr().String()))
			care.runs = append(care.runs, func(ctx context.Context) error {
				defer os.Remove(ln.Addr().String())
				return backup.Serve(ctx, ln, ex, log.Named("backup"))
			})
		}
	}
	if b := c.Store.Backup; b != nil && canExport {
		var key []byte
		if b.KeyFile != "" {
			var err error
			if key, err = backup.ReadKeyFile(b.KeyFile); err != nil {
				return nil, fmt.Errorf("store.backup.key_file: %w", err)
			}
		}
		host, _ := os.Hostname()
		sch := &backup.Schedule{Source: ex, Holder: fmt.Sprintf("%s/%d", host, os.Getpid()), Every: b.Every,
			Dir: b.Dir, Keep: b.Keep, Key: key, Version: buildVersion(), Logger: log.Named("backup"), Paused: refused}
		if turn, ok := st.(backup.Turn); ok {
			sch.Turn = turn
		}
		sch.Register(reg)
		care.runs = append(care.runs, sch.Run)
	}
	if rs, ok := st.(*redisstore.Store); ok {
		w := newDurabilityWatch(rs, reg, log)
		care.runs = append(care.runs, w.run)
		care.checks["store_durability"] = w.check
	}
	return care, nil
}

// durabilityWatch reads Redis's persistence settings at start and every
// minute: a gauge, a warning in the log when it is not durable, and a
// /readyz detail (never a readiness failure: the gate works either way).
type durabilityWatch struct {
	rs      *redisstore.Store
	log     *zap.Logger
	durable prometheus.Gauge
	known   prometheus.Gauge
	detail  atomic.Pointer[string]
}

func newDurabilityWatch(rs *redisstore.Store, reg prometheus.Registerer, log *zap.Logger) *durabilityWatch {
	w := &durabilityWatch{rs: rs, log: log,
		durable: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatekeeper_store_durable",
			Help: "1 when every Redis primary writes an append-only file, so a restart keeps acknowledged writes; else 0."}),
		known: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatekeeper_store_durability_known",
			Help: "1 when Redis answered CONFIG GET, so gatekeeper_store_durable is known; 0 when it is refused."}),
	}
	notYet := "not checked yet"
	w.detail.Store(&notYet)
	reg.MustRegister(w.durable, w.known)
	return w
}

func (w *durabilityWatch) run(ctx context.Context) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	was := -1 // what the log last said: -1 nothing, 0 not durable, 1 durable, 2 unknown
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		d, err := w.rs.Durability(cctx)
		cancel()
		if err == nil {
			now := 0
			switch {
			case !d.Known:
				now = 2
			case d.Durable:
				now = 1
			}
			w.set(d)
			if now != was {
				switch now {
				case 0:
					w.log.Warn("the Redis store is not durable: a restart of Redis loses acknowledged writes (turn on appendonly; see the README)", zap.String("detail", d.Detail))
				case 1:
					w.log.Info("the Redis store is durable", zap.String("detail", d.Detail))
				case 2:
					w.log.Warn("cannot tell whether the Redis store is durable", zap.String("detail", d.Detail))
				}
				was = now
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (w *durabilityWatch) set(d redisstore.Durability) {
	w.durable.Set(b2f(d.Durable))
	w.known.Set(b2f(d.Known))
	w.detail.Store(&d.Detail)
}

func (w *durabilityWatch) check() (bool, string) {
	return true, *w.detail.Load()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
