package redisstore_test

import (
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
	"github.com/gatekeeper-dev/gatekeeper/store/storetest"
)

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, func(t *testing.T) policy.Store {
		srv.Flush()
		s, err := redisstore.Open(t.Context(), srv.URL(), redisstore.Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}
