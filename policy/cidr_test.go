package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

var prefixCases = []struct {
	in      string
	want    string
	err     error
	confirm bool
}{
	{in: "203.0.113.7", want: "203.0.113.7/32"},
	{in: " 203.0.113.7 ", want: "203.0.113.7/32"},
	{in: "203.0.113.0/24", want: "203.0.113.0/24"},
	{in: "203.0.113.9/24", want: "203.0.113.0/24"}, // host bits cleared
	{in: "10.0.0.0/8", want: "10.0.0.0/8", confirm: true},
	{in: "10.0.0.0/16", want: "10.0.0.0/16"},
	{in: "2001:db8::1", want: "2001:db8::1/128"},
	{in: "2001:db8::/32", want: "2001:db8::/32"},
	{in: "2001:db8::/31", want: "2001:db8::/31", confirm: true},
	{in: "::ffff:203.0.113.7", want: "203.0.113.7/32"},     // mapped address is IPv4
	{in: "::ffff:203.0.113.0/120", want: "203.0.113.0/24"}, // mapped network too
	{in: "::ffff:0.0.0.0/95", want: "::fffe:0:0/95"},       // wider than the mapped range stays IPv6
	{in: "0.0.0.0/0", err: ErrTooBroad},
	{in: "::/0", err: ErrTooBroad},
	{in: "::ffff:0.0.0.0/96", err: ErrTooBroad}, // mapped /0 is IPv4 /0
	{in: "", err: ErrInvalidCIDR},
	{in: "203.0.113", err: ErrInvalidCIDR},
	{in: "203.0.113.7/33", err: ErrInvalidCIDR},
	{in: "203.0.113.7/-1", err: ErrInvalidCIDR},
	{in: "fe80::1%eth0", err: ErrInvalidCIDR},
	{in: "example.com", err: ErrInvalidCIDR},
	{in: "1.2.3.4/24/1", err: ErrInvalidCIDR},
}

func TestParsePrefix(t *testing.T) {
	for _, tc := range prefixCases {
		got, err := ParsePrefix(tc.in)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("ParsePrefix(%q) = %v, %v; want error %v", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
			continue
		}
		if NeedsConfirm(got) != tc.confirm {
			t.Errorf("NeedsConfirm(%s) = %v, want %v", got, !tc.confirm, tc.confirm)
		}
	}
}

// FuzzParsePrefix checks that whatever is accepted is canonical, never /0,
// never IPv4-mapped, and parses back to itself.
func FuzzParsePrefix(f *testing.F) {
	for _, tc := range prefixCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidCIDR) && !errors.Is(err, ErrTooBroad) {
				t.Fatalf("ParsePrefix(%q): error %v wraps neither ErrInvalidCIDR nor ErrTooBroad", s, err)
			}
			return
		}
		if !p.IsValid() || p.Bits() == 0 || p != p.Masked() || p.Addr().Zone() != "" {
			t.Fatalf("ParsePrefix(%q) = %v: not a valid canonical non-zero prefix", s, p)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			t.Fatalf("ParsePrefix(%q) = %v: still IPv4-mapped", s, p)
		}
		again, err := ParsePrefix(p.String())
		if err != nil || again != p {
			t.Fatalf("ParsePrefix(%q) = %v, but re-parsing gives %v, %v", s, p, again, err)
		}
		if !p.Contains(p.Addr()) {
			t.Fatalf("%v does not contain its own address", p)
		}
	})
}

// TestParsePrefixes pins the meaning of a trusted network: an IPv4-mapped
// entry is its IPv4 network, never something broader (an earlier parser
// turned ::ffff:10.0.0.0/80 into 0.0.0.0/0 and so trusted every peer).
func TestParsePrefixes(t *testing.T) {
	ps, err := ParsePrefixes([]string{"::ffff:10.0.0.0/112", "192.0.2.7", "2001:db8::/48"})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(ps); got != "[10.0.0.0/16 192.0.2.7/32 2001:db8::/48]" {
		t.Fatalf("ParsePrefixes = %s", got)
	}
	for a, want := range map[string]bool{
		"10.0.255.1": true, "::ffff:10.0.0.1": true, "10.1.0.1": false, "127.0.0.2": false,
		"192.0.2.7": true, "192.0.2.8": false, "0.0.0.1": false, "2001:db8::1": true,
		"2001:db8:1::1": false, "fe80::1%eth0": false,
	} {
		if got := ps.Contains(netip.MustParseAddr(a)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", a, got, want)
		}
	}
	for _, bad := range []string{"0.0.0.0/0", "::/0", "::ffff:0.0.0.0/96", "::ffff:10.0.0.0/80", "::ffff:0.0.0.0/95", "10.0.0.0/33", "fe80::1%eth0", "x"} {
		if _, err := ParsePrefixes([]string{"10.0.0.0/8", bad}); err == nil || !strings.HasPrefix(err.Error(), "[1]: ") {
			t.Errorf("ParsePrefixes(%q) = %v, want an error naming entry [1]", bad, err)
		}
	}
}
