package store

import (
	"context"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
)

func openRedis(ctx context.Context, rawURL string, opts Options, l *policy.Lineage) (policy.Store, error) {
	return redisstore.Open(ctx, rawURL, redisstore.Options{Logger: opts.Logger, Lineage: l, Registerer: opts.Registerer})
}
