package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
	"github.com/gatekeeper-dev/gatekeeper/store/storetest"
)

func TestBackup(t *testing.T) {
	storetest.RunBackup(t, func(t *testing.T) storetest.BackupStore {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "gk.db"), boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
