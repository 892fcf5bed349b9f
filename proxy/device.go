package proxy

import (
	"crypto/ed25519"
	"crypto/tls"
	"errors"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Outcomes of a device check that are not a device's standing, the
// outcome label of gatekeeper_device_checks_total beside
// policy.DeviceStanding's.
const (
	outcomeNoCertificate = "no_certificate" // none presented
	outcomeNotEd25519    = "not_ed25519"    // a certificate whose key is no Ed25519 key
)

// shownDevice is what a tls client presented after its handshake: a
// device key, or none.
type shownDevice struct {
	key     [ed25519.PublicKeySize]byte
	has     bool
	outcome string // why not, when !has
}

// noDevice is shown by a client that presented no certificate.
var noDevice = &shownDevice{outcome: outcomeNoCertificate}

// errUnknownDevice refuses a client that did not present a known device.
var errUnknownDevice = errors.New("no known device presented")

// checkDevice runs on tls listeners after the handshake, which asked for
// a certificate only of a client whose address passed and whose account
// requires a known device. The certificate's key (its holder proved it in
// the handshake; the certificate itself is self-signed and proves nothing
// else) must be an active device of a user who may connect. It reports
// whether the connection may go on; a refused one is reset and counted.
//
// What the client showed is published first, and the policy read after:
// a change to the account's devices published meanwhile is either seen
// here or finds the key in the registry's sweep (registry.disallowed),
// as for the address in admit. So is a client admitted before its account
// began to require a device.
func (c *conn) checkDevice(tc *tls.Conn) bool {
	shown := noDevice
	if c.ask != policy.DeviceAny { // else none was asked for, so none shown
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			if k, ok := certs[0].PublicKey.(ed25519.PublicKey); ok && len(k) == ed25519.PublicKeySize {
				shown = &shownDevice{key: [ed25519.PublicKeySize]byte(k), has: true}
			} else {
				shown = &shownDevice{outcome: outcomeNotEd25519}
			}
		}
	}
	c.shown.Store(shown)
	s := c.ln.srv
	t := s.engine.Table()
	account, client := c.route.account, c.client.Addr()
	d := t.Check(account, client)
	if d.Verdict == policy.Denied {
		c.revoke() // a change since admit, as the registry would
		return false
	}
	if d.Device == policy.DeviceAny {
		return true
	}
	outcome := shown.outcome
	if shown.has {
		outcome = t.Device(account, shown.key[:]).String()
	}
	s.m.devices.WithLabelValues(c.ln.name, account, outcome).Inc()
	if shown.has && outcome == policy.DeviceKnown.String() {
		return true
	}
	if d.Device == policy.DeviceLogged {
		s.logRefused("connection let through in monitor mode without a known device; mode on would refuse it: "+outcome,
			c.ln.name, account, client, c.sni, nil)
		return true
	}
	s.logRefused("connection refused: no known device ("+outcome+")", c.ln.name, account, client, c.sni, errUnknownDevice)
	c.reset()
	return false
}

// deviceDisallowed reports whether t no longer lets c's device through:
// on a tls listener of an account that requires a known device, a client
// that showed none, or whose device is no longer known. A client still in
// its handshake is left to checkDevice.
func (c *conn) deviceDisallowed(t *policy.Table, d policy.Decision) bool {
	if d.Device != policy.DeviceRequired || c.lc.mode != ModeTLS {
		return false
	}
	shown := c.shown.Load()
	if shown == nil {
		return false
	}
	return !shown.has || t.Device(c.route.account, shown.key[:]) != policy.DeviceKnown
}
