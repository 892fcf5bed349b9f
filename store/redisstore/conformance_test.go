package redisstore_test

import (
	"context"

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

// The engine loads a feed batch in one round trip through
// LoadAccountPolicies; the conformance suite checks it only where a store
// has it, so this keeps Redis from losing it unnoticed.
var _ interface {
	LoadAccountPolicies(ctx context.Context, ids []string) ([]*policy.AccountPolicy, error)
} = (*redisstore.Store)(nil)
