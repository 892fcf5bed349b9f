package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Turn coordinates scheduled backups between the instances of a fleet:
// the time of the fleet's last good backup, and a lease so that one
// instance at a time takes the next. The Redis store implements it.
type Turn interface {
	// LastBackup is when the fleet's last backup succeeded; zero if never.
	LastBackup(ctx context.Context) (time.Time, error)
	// TakeBackupTurn takes the lease for ttl; false if another holds it.
	TakeBackupTurn(ctx context.Context, holder string, ttl time.Duration) (bool, error)
	// EndBackupTurn records a success (when ok) and gives the lease back.
	EndBackupTurn(ctx context.Context, holder string, ok bool, at time.Time) error
}

// Schedule takes a backup every Every into Dir and keeps the Keep newest.
type Schedule struct {
	Source Exporter
	// Turn, when not nil, shares the schedule with the fleet; nil means
	// this process is the only one (the embedded store): the time of the
	// last backup is the newest file in Dir.
	Turn    Turn
	Holder  string // this instance's name in the lease
	Every   time.Duration
	Dir     string
	Keep    int
	Key     []byte // nil: not encrypted
	Version string
	Logger  *zap.Logger
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
	// Paused, when not nil and true, skips backups: serve pauses them
	// while it refuses the store (it lost its data, or is another store),
	// so that backups of an emptied store never prune the good ones.
	Paused func() bool

	lastSuccess prometheus.Gauge
	failures    prometheus.Counter
}

// filePrefix and fileSuffix name scheduled backups; pruning removes only
// files named so.
const (
	filePrefix = "gatekeeper-"
	fileSuffix = ".gkbackup"
	fileTime   = "20060102T150405.000Z"
)

// Register adds the schedule's metrics to reg.
func (s *Schedule) Register(reg prometheus.Registerer) {
	s.lastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatekeeper_backup_last_success_timestamp_seconds",
		Help: "When the last scheduled backup (of this fleet, with Redis) succeeded, unix seconds; 0 if none yet."})
	s.failures = prometheus.NewCounter(prometheus.CounterOpts{Name: "gatekeeper_backup_failures_total",
		Help: "Scheduled backups this instance started that failed."})
	every := prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatekeeper_backup_every_seconds",
		Help: "The configured time between scheduled backups (store.backup.every)."})
	every.Set(s.Every.Seconds())
	reg.MustRegister(s.lastSuccess, s.failures, every)
}

func (s *Schedule) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Run takes backups until ctx ends. It checks whether one is due at start
// and then every Every/10 (at most a minute), so that a fleet whose
// instance that took the last backup went away takes the next in time.
func (s *Schedule) Run(ctx context.Context) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("backup directory: %w", err)
	}
	t := time.NewTicker(min(s.Every/10, time.Minute))
	defer t.Stop()
	for {
		s.Tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick takes a backup if one is due and this instance gets the turn.
func (s *Schedule) Tick(ctx context.Context) {
	log := s.Logger
	if log == nil {
		log = zap.NewNop()
	}
	last, err := s.last(ctx)
	if err != nil {
		log.Warn("scheduled backup: cannot tell when the last one was taken", zap.Error(err))
		return
	}
	if s.lastSuccess != nil && !last.IsZero() {
		s.lastSuccess.Set(float64(last.Unix()))
	}
	now := s.now()
	if !last.IsZero() && now.Sub(last) < s.Every {
		return
	}
	if s.Paused != nil && s.Paused() {
		log.Warn("scheduled backup skipped: the store is not the one this instance enforces (it lost its data?); older backups are kept")
		return
	}
	if s.Turn != nil {
		ok, err := s.Turn.TakeBackupTurn(ctx, s.Holder, max(s.Every/2, time.Minute))
		if err != nil || !ok {
			if err != nil {
				log.Warn("scheduled backup: cannot take the fleet's turn", zap.Error(err))
			}
			return
		}
	}
	path, m, err := s.take(ctx, now)
	if s.Turn != nil {
		if terr := s.Turn.EndBackupTurn(context.WithoutCancel(ctx), s.Holder, err == nil, now); terr != nil {
			log.Warn("scheduled backup: cannot record it with the fleet", zap.Error(terr))
		}
	}
	if err != nil {
		if s.failures != nil {
			s.failures.Inc()
		}
		log.Error("scheduled backup failed", zap.Error(err))
		return
	}
	if s.lastSuccess != nil {
		s.lastSuccess.Set(float64(now.Unix()))
	}
	log.Info("scheduled backup taken", zap.String("path", path), zap.String("generation", m.Generation),
		zap.Int64("records", m.Records), zap.Duration("took", s.now().Sub(now)))
	if err := s.prune(); err != nil {
		log.Warn("scheduled backup: pruning old backups", zap.Error(err))
	}
}

func (s *Schedule) last(ctx context.Context) (time.Time, error) {
	if s.Turn != nil {
		return s.Turn.LastBackup(ctx)
	}
	files, err := s.files()
	if err != nil || len(files) == 0 {
		return time.Time{}, err
	}
	// A file is named for when it was taken.
	name := strings.TrimSuffix(strings.TrimPrefix(files[len(files)-1], filePrefix), fileSuffix)
	return time.Parse(fileTime, name)
}

func (s *Schedule) take(ctx context.Context, now time.Time) (string, Manifest, error) {
	path := filepath.Join(s.Dir, filePrefix+now.UTC().Format(fileTime)+fileSuffix)
	m, err := WriteFile(ctx, path, s.Source, s.Key, s.Version)
	return path, m, err
}

// files lists the scheduled backups in Dir, oldest first (their names
// sort by time).
func (s *Schedule) files() ([]string, error) {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		ts := strings.TrimSuffix(strings.TrimPrefix(n, filePrefix), fileSuffix)
		if _, err := time.Parse(fileTime, ts); err == nil && e.Type().IsRegular() && len(ts) < len(n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// prune removes all but the Keep newest backups.
func (s *Schedule) prune() error {
	files, err := s.files()
	if err != nil {
		return err
	}
	for len(files) > max(s.Keep, 1) {
		if err := os.Remove(filepath.Join(s.Dir, files[0])); err != nil {
			return err
		}
		files = files[1:]
	}
	return nil
}
