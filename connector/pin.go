package connector

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"
)

// Pin is the SHA-256 digest of a certificate's SubjectPublicKeyInfo, the
// form curl's --pinnedpubkey and HPKP use. A pin survives a certificate's
// renewal when the key is kept; pinning the key of the issuing CA survives
// any renewal by that CA.
type Pin [sha256.Size]byte

const pinPrefix = "sha256//"

// PinOf returns the pin of a certificate's public key.
func PinOf(c *x509.Certificate) Pin { return sha256.Sum256(c.RawSubjectPublicKeyInfo) }

// String returns the pin as sha256//BASE64.
func (p Pin) String() string { return pinPrefix + base64.StdEncoding.EncodeToString(p[:]) }

// ParsePins parses one or more pins separated by ";" (curl's syntax), each
// "sha256//BASE64" or bare BASE64 of a 32-byte SHA-256 digest.
//
// The pin of a certificate file is
//
//	openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin -outform der |
//	  openssl dgst -sha256 -binary | base64
func ParsePins(s string) ([]Pin, error) {
	var pins []Pin
	for part := range strings.SplitSeq(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		b64 := strings.TrimPrefix(part, pinPrefix)
		if strings.Contains(b64, "//") {
			return nil, fmt.Errorf("pin %q: only sha256// pins are supported", part)
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("pin %q: not base64: %w", part, err)
		}
		if len(raw) != sha256.Size {
			return nil, fmt.Errorf("pin %q: %d bytes, want a %d-byte SHA-256 digest", part, len(raw), sha256.Size)
		}
		pins = append(pins, Pin(raw))
	}
	if len(pins) == 0 {
		return nil, fmt.Errorf("no pin in %q", s)
	}
	return pins, nil
}

// VerifyPins returns a tls.Config.VerifyConnection that requires one of
// pins in the server's verified chain, or, with insecure (the chain is not
// verified), in its leaf: a CA certificate the server merely sends proves
// nothing then. It runs after normal verification, resumptions included,
// and refuses with a *PinError naming what the server presented. The
// connector pins the gate with it, and the lease and enrolment requests
// pin the admin listener.
func VerifyPins(pins []Pin, insecure bool) func(tls.ConnectionState) error {
	pins = append([]Pin(nil), pins...)
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &PinError{}
		}
		var candidates []*x509.Certificate
		if insecure {
			candidates = cs.PeerCertificates[:1]
		} else {
			for _, chain := range cs.VerifiedChains {
				candidates = append(candidates, chain...)
			}
		}
		if matchPins(pins, candidates) {
			return nil
		}
		e := &PinError{}
		for _, cert := range cs.PeerCertificates {
			e.Presented = append(e.Presented, PinOf(cert))
		}
		return e
	}
}

// matchPins reports whether a certificate in certs has one of pins.
func matchPins(pins []Pin, certs []*x509.Certificate) bool {
	for _, c := range certs {
		got := PinOf(c)
		for _, p := range pins {
			if subtle.ConstantTimeCompare(got[:], p[:]) == 1 {
				return true
			}
		}
	}
	return false
}

// PinError is a certificate chain that has none of the pinned keys.
type PinError struct {
	// Presented are the pins of the certificates the server presented,
	// leaf first, so that an operator can compare them.
	Presented []Pin
}

func (e *PinError) Error() string {
	s := make([]string, len(e.Presented))
	for i, p := range e.Presented {
		s[i] = p.String()
	}
	return "no pinned public key in the server's certificate chain; it presented " + strings.Join(s, ", ")
}
