package device

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"
)

// Certificate returns a self-signed TLS client certificate of the
// device's key, which the connector presents to a gate whose account
// requires a known device. The gate trusts no issuer: it checks only that
// the key is an active device's, and the handshake proves the device
// holds it. So the certificate carries nothing secret and no CA key
// exists anywhere; it is made afresh each time the connector starts.
func (id Identity) Certificate(now time.Time) (tls.Certificate, error) {
	if len(id.Key) == 0 {
		return tls.Certificate{}, fmt.Errorf("device certificate: identity has no key")
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("device certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "gatekeeper device " + id.DeviceID, Organization: []string{id.Account}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, id.Key.Public(), id.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("device certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: id.Key}, nil
}
