package redisstore_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

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
