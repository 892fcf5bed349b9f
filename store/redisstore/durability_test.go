package redisstore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
