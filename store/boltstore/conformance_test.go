package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
	"github.com/gatekeeper-dev/gatekeeper/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) policy.Store {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "gk.db"), boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
