package e2e

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"
)

// TestTLS12Suites: the gate's tls listener and the admin listener offer
// TLS 1.2 with forward-secret AEAD suites only: a client that offers
// only CBC suites (LUCKY13's) gets no handshake, one that offers GCM
// does, and TLS 1.3 is Go's.
func TestTLS12Suites(t *testing.T) {
	dir := prepareDir(t)
	seed(t, dir, map[string][]string{"acct": {ipAllowed + "/32"}}, nil)
	gate, admin := freeAddr(t), freeAddr(t)
	startGatekeeper(t, dir, fleetConfig("file:./data/gatekeeper.db", freeAddr(t), admin, echoServer(t),
		fmt.Sprintf("  - {name: gate, addr: \"%s\", mode: tls, routes: [{account: acct, upstream: \"%s\"}]}\n", gate, echoServer(t))))
	try := func(addr string, cfg *tls.Config) error {
		raw, err := dialFrom(ipAllowed, addr)
		if err != nil {
			return err
		}
		defer raw.Close()
		cfg.InsecureSkipVerify = true
		c := tls.Client(raw, cfg)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c.Handshake()
	}
	cbc := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA}
	for name, addr := range map[string]string{"gate": gate, "admin": admin} {
		if err := try(addr, &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: cbc}); err == nil {
			t.Errorf("%s: a TLS 1.2 handshake with CBC suites only succeeded", name)
		}
		if err := try(addr, &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}); err != nil {
			t.Errorf("%s: TLS 1.2 with AES-GCM: %v", name, err)
		}
		if err := try(addr, &tls.Config{MinVersion: tls.VersionTLS13}); err != nil {
			t.Errorf("%s: TLS 1.3: %v", name, err)
		}
	}
}
