package redisstore_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/backup"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

func TestDurability(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []redistest.Option
		durable bool
		detail  string
	}{
		{"no persistence", nil, false, `save "": no persistence`},
		{"rdb only", []redistest.Option{redistest.Args("--save", "3600 1")}, false, "RDB snapshots only"},
		{"aof", []redistest.Option{redistest.AppendOnly()}, true, "appendonly yes, appendfsync everysec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, tc.opts...)
			s, err := redisstore.Open(t.Context(), srv.URL(), redisstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			d, err := s.Durability(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if !d.Known || d.Durable != tc.durable || !strings.Contains(d.Detail, tc.detail) {
				t.Errorf("got %+v, want durable %v with %q", d, tc.durable, tc.detail)
			}
		})
	}
	t.Run("CONFIG refused", func(t *testing.T) {
		srv := redistest.Start(t)
		c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer c.Close()
		if err := c.Do(t.Context(), "ACL", "SETUSER", "gk", "on", ">gk-password-123", "~*", "+@all", "-config").Err(); err != nil {
			t.Fatal(err)
		}
		s, err := redisstore.Open(t.Context(), "redis://gk:gk-password-123@"+srv.Addr()+"/0", redisstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		d, err := s.Durability(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if d.Known || d.Durable || !strings.Contains(d.Detail, "CONFIG GET refused") {
			t.Errorf("with CONFIG refused: %+v", d)
		}
	})
}

// TestBackupTurn: one holder at a time; the last success only moves
// forward.
func TestBackupTurn(t *testing.T) {
	srv := redistest.Start(t)
	s, err := redisstore.Open(t.Context(), srv.URL(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if last, err := s.LastBackup(ctx); err != nil || !last.IsZero() {
		t.Fatalf("last backup on a new store: %v %v", last, err)
	}
	if ok, err := s.TakeBackupTurn(ctx, "a", time.Minute); !ok || err != nil {
		t.Fatalf("first turn: %v %v", ok, err)
	}
	if ok, _ := s.TakeBackupTurn(ctx, "b", time.Minute); ok {
		t.Fatal("a second instance got the turn while the first held it")
	}
	if err := s.EndBackupTurn(ctx, "b", true, time.UnixMilli(5000)); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.TakeBackupTurn(ctx, "b", time.Minute); ok {
		t.Fatal("another instance's end released the holder's turn")
	}
	at := time.UnixMilli(1_800_000_000_000)
	if err := s.EndBackupTurn(ctx, "a", true, at); err != nil {
		t.Fatal(err)
	}
	if err := s.EndBackupTurn(ctx, "c", true, at.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if last, _ := s.LastBackup(ctx); !last.Equal(at) {
		t.Errorf("last backup %v, want %v", last, at)
	}
	if ok, _ := s.TakeBackupTurn(ctx, "b", time.Minute); !ok {
		t.Fatal("the turn is not free after its holder ended it")
	}
}

// TestScheduleFleet: two instances' schedules on one Redis take one backup
// per period between them, whichever ticks first.
func TestScheduleFleet(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var scheds []*backup.Schedule
	var dirs []string
	for i, holder := range []string{"a", "b"} {
		s, err := redisstore.Open(ctx, srv.URL(), redisstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if i == 0 {
			if err := s.CreateAccount(ctx, policy.Account{ID: "10042", Mode: policy.ModeOn}, policy.AuditEntry{Action: "create"}); err != nil {
				t.Fatal(err)
			}
		}
		dirs = append(dirs, t.TempDir())
		scheds = append(scheds, &backup.Schedule{Source: s, Turn: s, Holder: holder, Every: time.Hour, Dir: dirs[i], Keep: 10,
			Now: func() time.Time { return now }})
	}
	count := func() (n [2]int) {
		for i, d := range dirs {
			names, _ := filepath.Glob(filepath.Join(d, "*.gkbackup"))
			n[i] = len(names)
		}
		return n
	}
	scheds[0].Tick(ctx)
	scheds[1].Tick(ctx)
	if got := count(); got != [2]int{1, 0} {
		t.Fatalf("first period: backups per instance %v, want [1 0]", got)
	}
	now = now.Add(30 * time.Minute)
	scheds[1].Tick(ctx)
	scheds[0].Tick(ctx)
	if got := count(); got != [2]int{1, 0} {
		t.Fatalf("within the period: %v, want [1 0]", got)
	}
	now = now.Add(31 * time.Minute)
	scheds[1].Tick(ctx)
	scheds[0].Tick(ctx)
	if got := count(); got != [2]int{1, 1} {
		t.Fatalf("second period, b first: %v, want [1 1]", got)
	}
}
