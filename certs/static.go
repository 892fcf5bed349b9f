package certs

import (
	"crypto/tls"
	"net/netip"
	"strings"
	"time"
)

// staticCerts are the certificates of a Manager without ACME (the
// certificate files and the self-signed one), indexed by the names and
// addresses they are for. Without ACME certmagic only looks them up, and
// its lookup is costly for a handshake: it builds a logger with fields and
// grows the goroutine's stack, about 40 µs a handshake on a busy 2-core
// machine (6% of a tls listener's CPU under bench/run's handshake load).
// This lookup follows certmagic's: exact name, then the name with its
// labels replaced by wildcards from the left; with no server name, the
// local address the client connected to.
type staticCerts struct {
	byName map[string][]*tls.Certificate // lowercased DNS names and IP addresses
}

func newStaticCerts(certs []*tls.Certificate) *staticCerts {
	s := &staticCerts{byName: map[string][]*tls.Certificate{}}
	for _, c := range certs {
		if c.Leaf == nil {
			continue
		}
		for _, n := range c.Leaf.DNSNames {
			n = strings.ToLower(n)
			s.byName[n] = append(s.byName[n], c)
		}
		for _, ip := range c.Leaf.IPAddresses {
			if a, ok := netip.AddrFromSlice(ip); ok {
				n := a.Unmap().String()
				s.byName[n] = append(s.byName[n], c)
			}
		}
	}
	return s
}

// pick returns the certificate for hello, nil if none is for its name.
func (s *staticCerts) pick(hello *tls.ClientHelloInfo) *tls.Certificate {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		if hello.Conn == nil {
			return nil
		}
		ap, err := netip.ParseAddrPort(hello.Conn.LocalAddr().String())
		if err != nil {
			return nil
		}
		return s.choose(hello, ap.Addr().WithZone("").Unmap().String())
	}
	if c := s.choose(hello, name); c != nil {
		return c
	}
	labels := strings.Split(name, ".")
	for i := range labels {
		labels[i] = "*"
		if c := s.choose(hello, strings.Join(labels, ".")); c != nil {
			return c
		}
	}
	return nil
}

// choose is certmagic's DefaultCertificateSelector: the only one, else the
// first the client supports that is valid now, else the last it supports,
// else the first.
func (s *staticCerts) choose(hello *tls.ClientHelloInfo, name string) *tls.Certificate {
	cs := s.byName[name]
	switch len(cs) {
	case 0:
		return nil
	case 1:
		return cs[0]
	}
	now := time.Now()
	best := cs[0]
	for _, c := range cs {
		if hello.SupportsCertificate(c) != nil {
			continue
		}
		best = c
		if now.After(c.Leaf.NotBefore) && now.Before(c.Leaf.NotAfter) {
			return c
		}
	}
	return best
}
