package main

import (
	"github.com/gatekeeper-dev/gatekeeper/certs"
	"github.com/gatekeeper-dev/gatekeeper/config"
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
			pl.Routes[j] = proxy.Route(r)
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
