package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/admin/web"
	"github.com/gatekeeper-dev/gatekeeper/config"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// newAdminServer builds the admin API and web pages the configuration
// describes. The operator token file is created on first start; only its
// path is logged. tc, the certs package's configuration, serves the
// listener's certificates (ACME ones too). live, if set, counts the
// proxy's live connections for the offboarding reports.
func newAdminServer(c *config.Config, st policy.Store, tc *tls.Config, live func(string, func(netip.Addr) bool) int,
	reg prometheus.Registerer, log *zap.Logger) (*admin.Server, error) {
	token, created, err := admin.OperatorToken(c.Admin.OperatorTokenFile)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created the operator token file", zap.String("path", c.Admin.OperatorTokenFile))
	}
	secretsKey, created, err := admin.SecretsKey(c.Admin.SecretsKeyFile)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created the secrets key file", zap.String("path", c.Admin.SecretsKeyFile))
	}
	if tc == nil {
		return nil, errors.New("the admin listener needs a certificate (tls.acme, tls.certificates or tls.self_signed)")
	}
	trusted, err := policy.ParsePrefixes(c.Admin.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("admin.trusted_proxies%w", err)
	}
	ll := c.Admin.LoginLimits
	mail, err := newMail(c)
	if err != nil {
		return nil, err
	}
	var mailer admin.Mailer
	if mail != nil {
		mailer = mail // a nil *notify.Mail must stay a nil interface
	}
	svc, err := admin.New(admin.Options{
		Store:          st,
		StoreTimeout:   c.Store.Timeout,
		Logger:         log,
		Registerer:     reg,
		PasswordParams: password.Default,
		SessionTTL:     c.Admin.SessionTTL,
		LoginLimits: admin.LoginLimits{
			PerIP:    admin.Limit{Burst: ll.PerIP, Lockout: ll.Lockout, MaxLockout: ll.MaxLockout},
			PerLogin: admin.Limit{Burst: ll.PerLogin, Lockout: ll.Lockout, MaxLockout: ll.MaxLockout},
		},
		LiveConnections: live,
		SecretsKey:      secretsKey,
		Mailer:          mailer,
		PublicURL:       c.Admin.PublicURL,
		WebApps:         webApps(c.Listeners),
	})
	if err != nil {
		return nil, err
	}
	pages, err := web.New(web.Options{
		Service:        svc,
		TrustedProxies: trusted,
		Hosts:          c.Admin.Hosts,
		Logger:         log.Named("web"),
		Registerer:     reg,
	})
	if err != nil {
		return nil, err
	}
	return admin.NewServer(admin.ServerOptions{
		Service:        svc,
		TLSConfig:      tc,
		TrustedProxies: trusted,
		OperatorToken:  token,
		Hosts:          c.Admin.Hosts,
		Logger:         log,
		Registerer:     reg,
		Pages:          pages,
	})
}

// serveAdmin listens on addr and serves the admin API until ctx ends.
func serveAdmin(ctx context.Context, addr string, srv *admin.Server) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	return srv.Serve(ctx, ln)
}
