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
