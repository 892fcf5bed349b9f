package main

import (
	"errors"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/assertion"
	"github.com/gatekeeper-dev/gatekeeper/certs"
	"github.com/gatekeeper-dev/gatekeeper/config"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/proxy"
)

// proxyListeners maps the configuration's listeners onto the proxy's
// options. Timeouts and limits left at zero stay zero: the proxy decides
// their defaults.
func proxyListeners(ls []config.Listener) []proxy.Listener {
	out := make([]proxy.Listener, len(ls))
	for i, l := range ls {
		pl := proxy.Listener{
			Name: l.Name, Addr: l.Addr, Mode: l.Mode,
			Timeouts: proxy.Timeouts(l.Timeouts), Limits: proxy.Limits(l.Limits),
			Routes: make([]proxy.Route, len(l.Routes)),
		}
		if pp := l.ProxyProtocol; pp != nil {
			pl.ProxyProtocol = &proxy.ProxyProtocol{Trusted: pp.Trusted, Upstream: pp.Upstream}
		}
		for j, r := range l.Routes {
			pl.Routes[j] = proxy.Route{SNI: r.SNI, Account: r.Account, Upstream: r.Upstream, Access: r.Access}
		}
		out[i] = pl
	}
	return out
}

// certsTLS maps the configuration's tls section onto the certs package's
// options.
func certsTLS(c config.TLS) certs.TLS {
	out := certs.TLS{SelfSigned: c.SelfSigned, Curves: c.Curves, CipherSuites: c.CipherSuites}
	if a := c.ACME; a != nil {
		acme := certs.ACME(*a)
		out.ACME = &acme
	}
	for _, f := range c.Certificates {
		out.Certificates = append(out.Certificates, certs.CertFile(f))
	}
	return out
}

// loginRoutes reports whether any route of ls needs a sign-in.
func loginRoutes(ls []config.Listener) bool {
	for _, l := range ls {
		for _, r := range l.Routes {
			if r.Access == config.AccessLogin || r.Access == config.AccessAddressLogin {
				return true
			}
		}
	}
	return false
}

// webApps says which account's login route serves a host name, as the
// proxy routes it: an exact sni first, then a wildcard one label up.
func webApps(ls []config.Listener) admin.WebApps {
	exact, wild := map[string]string{}, map[string]string{}
	for _, l := range ls {
		for _, r := range l.Routes {
			if r.Access != config.AccessLogin && r.Access != config.AccessAddressLogin || r.SNI == "" {
				continue
			}
			name := strings.ToLower(strings.TrimSuffix(r.SNI, "."))
			if parent, ok := strings.CutPrefix(name, "*."); ok {
				wild[parent] = r.Account
			} else {
				exact[name] = r.Account
			}
		}
	}
	return func(host string) (string, bool) {
		if a, ok := exact[host]; ok {
			return a, true
		}
		if _, parent, ok := strings.Cut(host, "."); ok {
			if a, ok := wild[parent]; ok {
				return a, true
			}
		}
		return "", false
	}
}

// webOptions builds the sign-in of login routes: when there is one, and
// whenever there is an http listener and admin.public_url is an https
// URL, so that a reload may add one. The gate's cookies are keyed from
// the secrets key, the same on every instance; signer signs the
// upstream's assertions and publishes their keys.
func webOptions(c *config.Config, st policy.Store, signer *assertion.Signer, log *zap.Logger) (*proxy.WebOptions, error) {
	u, err := url.Parse(c.Admin.PublicURL)
	signIn := err == nil && u.Scheme == "https" && u.Hostname() != ""
	if !loginRoutes(c.Listeners) && (signer == nil || !signIn) {
		return nil, nil
	}
	if signer == nil {
		return nil, errors.New("routes with access login need the assertion signer")
	}
	key, created, err := admin.SecretsKey(c.Admin.SecretsKeyFile)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created the secrets key file", zap.String("path", c.Admin.SecretsKeyFile))
	}
	return &proxy.WebOptions{
		SignIn:    admin.NewWebGate(st, c.Store.Timeout, log.Named("web")),
		Key:       admin.WebKey(key),
		SignInURL: strings.TrimSuffix(c.Admin.PublicURL, "/") + "/app/signin",
		Asserter:  signer,
		JWKS:      signer.JWKS(),
	}, nil
}
