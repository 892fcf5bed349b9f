package main

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/assertion"
	"github.com/gatekeeper-dev/gatekeeper/config"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// newAssertionSigner builds the signer of the assertions http listeners
// send their applications (Gatekeeper-Assertion, with the keys at
// assertion.JWKSPath), or nil when no listener is in http mode. Its keys
// are sealed with the secrets key, so every instance of a fleet needs the
// same admin.secrets_key_file. Run it (Signer.Run) for as long as it
// serves: that reloads and rotates the key ring.
func newAssertionSigner(ctx context.Context, c *config.Config, st policy.Store, log *zap.Logger) (*assertion.Signer, error) {
	web := false
	for _, l := range c.Listeners {
		web = web || l.Mode == config.ModeHTTP
	}
	if !web {
		return nil, nil
	}
	key, created, err := admin.SecretsKey(c.Admin.SecretsKeyFile)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created the secrets key file", zap.String("path", c.Admin.SecretsKeyFile))
	}
	s, err := assertion.New(ctx, assertion.Options{
		Store:      st,
		SecretsKey: key,
		TTL:        c.Assertion.TTL,
		Rotation:   c.Assertion.Rotation,
		Logger:     log,
	})
	if err != nil {
		return nil, fmt.Errorf("assertion signing keys: %w", err)
	}
	return s, nil
}
