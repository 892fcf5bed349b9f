package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/certs"
	"github.com/gatekeeper-dev/gatekeeper/config"
	"github.com/gatekeeper-dev/gatekeeper/proxy"
)

// TestProxyListeners: every listener key of the configuration reaches the
// proxy, and one the proxy gains without a mapping here fails the test.
func TestProxyListeners(t *testing.T) {
	in := config.Listener{
		Name: "desktop", Addr: "127.0.0.1:5433", Mode: config.ModeTLS,
		ProxyProtocol: &config.ProxyProtocol{Trusted: []string{"10.0.0.0/8"}, Upstream: true},
		Routes:        []config.Route{{SNI: "a.test", Account: "a", Upstream: "127.0.0.1:1"}, {Account: "b", Upstream: "127.0.0.1:2"}},
		Timeouts:      config.Timeouts{Handshake: time.Second, Dial: 2 * time.Second, Idle: 3 * time.Second, Drain: 4 * time.Second},
		Limits:        config.Limits{PerIP: 1, PerAccount: 2, Pending: 3, PendingPerIP: -1},
	}
	want := proxy.Listener{
		Name: "desktop", Addr: "127.0.0.1:5433", Mode: proxy.ModeTLS,
		ProxyProtocol: &proxy.ProxyProtocol{Trusted: []string{"10.0.0.0/8"}, Upstream: true},
		Routes:        []proxy.Route{{SNI: "a.test", Account: "a", Upstream: "127.0.0.1:1"}, {Account: "b", Upstream: "127.0.0.1:2"}},
		Timeouts:      proxy.Timeouts{Handshake: time.Second, Dial: 2 * time.Second, Idle: 3 * time.Second, Drain: 4 * time.Second},
		Limits:        proxy.Limits{PerIP: 1, PerAccount: 2, Pending: 3, PendingPerIP: -1},
	}
	got := proxyListeners([]config.Listener{in, {Name: "plain", Mode: config.ModeTCP}})
	if !reflect.DeepEqual(got[0], want) {
		t.Errorf("mapped\n%+v\nwant\n%+v", got[0], want)
	}
	if got[1].Timeouts != (proxy.Timeouts{}) || got[1].Limits != (proxy.Limits{}) || got[1].ProxyProtocol != nil {
		t.Errorf("unset keys must stay zero for the proxy's defaults: %+v", got[1])
	}
	// The same fields on both sides: a key added to one only is a key
	// this mapping forgets.
	cf, pf := reflect.TypeFor[config.Listener](), reflect.TypeFor[proxy.Listener]()
	if cf.NumField() != pf.NumField() {
		t.Fatalf("config.Listener has %d fields, proxy.Listener %d", cf.NumField(), pf.NumField())
	}
	for i := range cf.NumField() {
		if _, ok := pf.FieldByName(cf.Field(i).Name); !ok {
			t.Errorf("proxy.Listener lacks %s", cf.Field(i).Name)
		}
	}
	for _, m := range []string{proxy.ModeTCP, proxy.ModeTLS, proxy.ModeHTTP} {
		if m != config.ModeTCP && m != config.ModeTLS && m != config.ModeHTTP {
			t.Errorf("proxy mode %q is no configuration mode", m)
		}
	}
}

// TestCertsTLS: every key of the tls section reaches the certs package.
func TestCertsTLS(t *testing.T) {
	in := config.TLS{
		ACME:         &config.ACME{Email: "ops@example.com", CA: "https://ca/dir", Domains: []string{"a.example"}, Storage: "./s", CARoot: "root.pem", HTTPAddr: ":80"},
		Certificates: []config.Certificate{{Cert: "a.crt", Key: "a.key"}},
		SelfSigned:   true, Curves: []string{"X25519"}, CipherSuites: []string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
	}
	want := certs.TLS{
		ACME:         &certs.ACME{Email: "ops@example.com", CA: "https://ca/dir", Domains: []string{"a.example"}, Storage: "./s", CARoot: "root.pem", HTTPAddr: ":80"},
		Certificates: []certs.CertFile{{Cert: "a.crt", Key: "a.key"}},
		SelfSigned:   true, Curves: []string{"X25519"}, CipherSuites: []string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
	}
	if got := certsTLS(in); !reflect.DeepEqual(got, want) {
		t.Errorf("mapped\n%+v\nwant\n%+v", got, want)
	}
	if got := certsTLS(config.TLS{}); got.ACME != nil {
		t.Errorf("no acme section mapped to %+v", got.ACME)
	}
	if n, m := reflect.TypeFor[config.TLS]().NumField(), reflect.TypeFor[certs.TLS]().NumField(); n != m {
		t.Errorf("config.TLS has %d fields, certs.TLS %d: a key the mapping forgets", n, m)
	}
}
