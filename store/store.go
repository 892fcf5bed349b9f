// Package store opens the policy store a URL names: file: for the embedded
// bbolt store, redis:// or rediss:// for Redis. The backends live in
// boltstore and redisstore; storetest holds the conformance suite both pass.
package store

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// Options configure Open.
type Options struct {
	// Logger; if nil, nothing is logged.
	Logger *zap.Logger
}

// Open opens the store at rawURL.
func Open(ctx context.Context, rawURL string, opts Options) (policy.Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store url: %w", err)
	}
	switch u.Scheme {
	case "file":
		path := u.Opaque
		if path == "" {
			path = u.Path
		}
		return boltstore.Open(path, boltstore.Options{})
	case "redis", "rediss":
		return openRedis(ctx, rawURL, opts)
	}
	return nil, fmt.Errorf("store url %q: scheme must be file, redis or rediss", strings.SplitN(rawURL, "?", 2)[0])
}
