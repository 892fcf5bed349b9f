package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/backup"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
	"github.com/gatekeeper-dev/gatekeeper/store/storetest"
)

func TestBackup(t *testing.T) {
	srv := redistest.Start(t)
	db := 0
	storetest.RunBackup(t, func(t *testing.T) storetest.BackupStore {
		// Each store a database of its own, emptied first.
		db = db%15 + 1
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), DB: db})
		defer c.Close()
		if err := c.FlushDB(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
		s, err := redisstore.Open(t.Context(), strings.TrimSuffix(srv.URL(), "/0")+"/"+strconv.Itoa(db), redisstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestBackupCluster: on a Cluster, each account's keys are read and
// written in one MULTI/EXEC on their slot, and the keys outside any shard
// on their own.
func TestBackupCluster(t *testing.T) {
	storetest.BackupRoundTrip(t, func(t *testing.T) storetest.BackupStore {
		c := redistest.StartCluster(t, 3)
		s, err := redisstore.Open(t.Context(), c.URL(), redisstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestRestoreInterrupted: a restore whose hook fails leaves the store
// under the provisional generation, which no instance takes, and the same
// restore runs again over it.
func TestRestoreInterrupted(t *testing.T) {
	ctx := t.Context()
	srcSrv, dstSrv := redistest.Start(t), redistest.Start(t)
	src, err := redisstore.Open(ctx, srcSrv.URL(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.CreateAccount(ctx, policy.Account{ID: "10042", Mode: policy.ModeOn}, policy.AuditEntry{Action: "create"}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, _ := backup.NewWriter(&buf, nil)
	m, err := src.Export(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(m); err != nil {
		t.Fatal(err)
	}
	b, err := backup.Decode(buf.Bytes(), nil)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := redisstore.Open(ctx, dstSrv.URL(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	_, err = dst.Restore(ctx, b, false, func(context.Context, string) error { return errors.New("interrupted") })
	if err == nil || !strings.Contains(err.Error(), "run the same restore again") {
		t.Fatalf("restore with a failing hook: %v", err)
	}
	if d, err := dst.LoadPolicy(ctx); err != nil || d.Generation == b.Manifest.Generation || d.Generation == "" {
		t.Fatalf("after the interrupted restore: generation %q (%v); want a provisional one", d.Generation, err)
	}
	if _, err := dst.Restore(ctx, b, false, nil); err != nil {
		t.Fatalf("the same restore again: %v", err)
	}
	if d, _ := dst.LoadPolicy(ctx); d.Generation != b.Manifest.Generation || len(d.Accounts) != 1 {
		t.Fatalf("after the second restore: %+v", d)
	}
}
