// Package store opens the policy store a URL names: file: for the embedded
// bbolt store, redis:// or rediss:// for Redis. The backends live in
// boltstore and redisstore; storetest holds the conformance suite both pass.
package store

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// Options configure Open.
type Options struct {
	// Logger; if nil, nothing is logged.
	Logger *zap.Logger
	// Registerer receives the store's own metrics (Redis:
	// gatekeeper_store_feed_shards_down). If nil, they are not exported.
	Registerer prometheus.Registerer
	// Snapshot is this machine's policy snapshot file (store.snapshot).
	// The generation it holds is the one the store must have: a store
	// found without one lost its data and is not given a new one
	// (policy.Lineage) until it is re-seeded; nor is it when the file
	// exists but cannot be read. If empty, or the file does not exist,
	// nothing is known: a first start. The file is read only if the store
	// is found without a generation.
	Snapshot string
}

// Open opens the store at rawURL.
func Open(ctx context.Context, rawURL string, opts Options) (policy.Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store url: %w", err)
	}
	lineage := policy.NewLineage("", "")
	if opts.Snapshot != "" {
		lineage = policy.LineageFromSnapshot(opts.Snapshot)
	}
	switch u.Scheme {
	case "file":
		return boltstore.Open(filePath(u), boltstore.Options{Lineage: lineage})
	case "redis", "rediss":
		return openRedis(ctx, rawURL, opts, lineage)
	}
	return nil, fmt.Errorf("store url %q: scheme must be file, redis or rediss", strings.SplitN(rawURL, "?", 2)[0])
}

// FilePath is the file of a file: URL, and false for any other store.
func FilePath(rawURL string) (string, bool) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "file" {
		return "", false
	}
	return filePath(u), true
}

func filePath(u *url.URL) string {
	if u.Opaque != "" {
		return u.Opaque
	}
	return u.Path
}
