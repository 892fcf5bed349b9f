package backup_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/backup"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// TestSchedule drives a schedule with its own clock: a backup when one is
// due and not before, the newest Keep kept, the metric set, each file whole.
func TestSchedule(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "gk.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateAccount(t.Context(), policy.Account{ID: "10042", Mode: policy.ModeOn}, policy.AuditEntry{Action: "account.create"}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	key := make([]byte, backup.KeySize)
	s := &backup.Schedule{Source: st, Every: time.Hour, Dir: dir, Keep: 2, Key: key, Now: func() time.Time { return now }}
	reg := prometheus.NewRegistry()
	s.Register(reg)
	for i, step := range []struct {
		advance time.Duration
		files   int
	}{
		{0, 1},                // none yet: one at once
		{30 * time.Minute, 1}, // not due
		{31 * time.Minute, 2}, // due
		{time.Hour, 2},        // due; the oldest goes
		{time.Hour, 2},
	} {
		now = now.Add(step.advance)
		s.Tick(t.Context())
		names, _ := filepath.Glob(filepath.Join(dir, "gatekeeper-*.gkbackup"))
		if len(names) != step.files {
			t.Fatalf("step %d: %d files, want %d", i, len(names), step.files)
		}
		b, err := backup.ReadFile(names[len(names)-1], key)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if b.Manifest.Counts["accounts"] != 1 {
			t.Fatalf("step %d: manifest %+v", i, b.Manifest)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "gatekeeper_backup_last_success_timestamp_seconds" {
			found = true
			if got := mf.Metric[0].GetGauge().GetValue(); got != float64(now.Unix()) {
				t.Errorf("last success %v, want %v", got, now.Unix())
			}
		}
	}
	if !found {
		t.Error("no gatekeeper_backup_last_success_timestamp_seconds")
	}
}

// TestScheduleKeepsGoodBackups: an emptied store, or one the instance
// refuses, never replaces a backup.
func TestScheduleKeepsGoodBackups(t *testing.T) {
	empty, err := boltstore.Open(filepath.Join(t.TempDir(), "gk.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	dir := t.TempDir()
	paused := false
	s := &backup.Schedule{Source: empty, Every: time.Hour, Dir: dir, Keep: 1, Paused: func() bool { return paused }}
	s.Tick(t.Context())
	if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != 0 {
		t.Fatalf("a backup of a store that holds nothing was kept: %v", names)
	}
	paused = true
	if err := empty.CreateAccount(t.Context(), policy.Account{ID: "10042", Mode: policy.ModeOn}, policy.AuditEntry{Action: "create"}); err != nil {
		t.Fatal(err)
	}
	s.Tick(t.Context())
	if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != 0 {
		t.Fatalf("a backup taken while paused: %v", names)
	}
}
