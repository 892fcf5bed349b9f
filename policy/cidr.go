package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Errors from ParsePrefix.
var (
	ErrInvalidCIDR = errors.New("invalid CIDR")
	ErrTooBroad    = errors.New("network too broad")
)

// Widest networks accepted without an explicit confirmation.
const (
	ConfirmBitsV4 = 16
	ConfirmBitsV6 = 32
)

// ParsePrefix parses a rule's network: a CIDR or a bare address (which means
// /32 or /128). An IPv4-mapped IPv6 address or network becomes plain IPv4,
// host bits are cleared, and a zone is refused. A /0 is refused with
// ErrTooBroad: letting everyone in is what mode off is for.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("%w: empty", ErrInvalidCIDR)
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%w: %q is neither an address nor a network like 203.0.113.0/24", ErrInvalidCIDR, s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%w: %q is not an IP address", ErrInvalidCIDR, s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%w: %q has a zone, which a rule cannot use", ErrInvalidCIDR, s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	p = canonical(p)
	if p.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("%w: %s allows every address; set the firewall mode to off instead", ErrTooBroad, p)
	}
	return p, nil
}

// canonical unmaps IPv4-mapped IPv6 and clears host bits.
func canonical(p netip.Prefix) netip.Prefix {
	a := p.Addr()
	if a.Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			// ::ffff:0:0/95 and wider reach beyond the mapped range; keep
			// them as IPv6 so they do not silently become 0.0.0.0/0.
			return p.Masked()
		}
		return netip.PrefixFrom(a.Unmap(), bits).Masked()
	}
	return p.Masked()
}

// NeedsConfirm reports whether p is broader than /16 (IPv4) or /32 (IPv6),
// which the admin API accepts only with an explicit confirmation.
func NeedsConfirm(p netip.Prefix) bool {
	if p.Addr().Is4() {
		return p.Bits() < ConfirmBitsV4
	}
	return p.Bits() < ConfirmBitsV6
}

// Prefixes is a set of trusted networks: the load balancers whose PROXY
// headers a listener believes, the proxies whose X-Forwarded-For the
// admin listener believes. One matcher for both, so that the two cannot
// come to disagree on what an entry means.
type Prefixes []netip.Prefix

// ParsePrefixes parses a configured list of trusted networks with the
// rules of ParsePrefix: an IPv4-mapped entry means its IPv4 network
// (::ffff:10.0.0.0/112 is 10.0.0.0/16). A mapped entry shorter than /96
// is refused: its length counts bits of the ::ffff: prefix, so it names
// no IPv4 network (::ffff:10.0.0.0/80 is ::/80), and the likeliest
// intent, an IPv4 length, is one the parser must not guess at. /0 is
// refused too: trusting every address is never what was meant. The
// error names the entry's index, for the caller to prefix with the
// key's path.
func ParsePrefixes(list []string) (Prefixes, error) {
	ps := make(Prefixes, 0, len(list))
	for i, s := range list {
		if raw, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil && raw.Addr().Is4In6() && raw.Bits() < 96 {
			return nil, fmt.Errorf("[%d]: %q is an IPv4-mapped network shorter than /96, which is no IPv4 network; write the IPv4 form (%s/%d)",
				i, s, raw.Addr().Unmap(), max(raw.Bits()-64, 0))
		}
		p, err := ParsePrefix(s)
		if errors.Is(err, ErrTooBroad) {
			return nil, fmt.Errorf("[%d]: %q would trust every address; name the load balancers or proxies", i, s)
		}
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// Contains reports whether a, its IPv4-mapped form unmapped and its zone
// ignored, is in one of the networks.
func (ps Prefixes) Contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
