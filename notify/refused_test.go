package notify

import (
	"net/netip"
	"testing"
)

// The addresses a webhook may not reach without
// notify.allow_private_destinations, in every form that reaches them, and
// public ones that it may.
func TestRefusedAddresses(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1": true, "10.0.0.1": true, "172.16.5.4": true, "192.168.1.1": true,
		"169.254.169.254": true, "100.64.0.1": true, "0.0.0.0": true, "0.1.2.3": true,
		"192.0.0.8": true, "198.18.0.1": true, "240.0.0.1": true, "255.255.255.255": true,
		"224.0.0.1": true, "::1": true, "::": true, "fe80::1": true, "fc00::1": true, "fd12::1": true,
		"fec0::1": true, "ff02::1": true,
		"::ffff:127.0.0.1": true, "::ffff:169.254.169.254": true,
		"64:ff9b::a9fe:a9fe": true, "64:ff9b::7f00:1": true, "64:ff9b:1::a00:1": true,
		"2002:a9fe:a9fe::1": true, "2002:7f00:1::": true,
		// Public.
		"93.184.215.14": false, "8.8.8.8": false, "2606:4700::1111": false,
		"::ffff:8.8.8.8": false, "64:ff9b::808:808": false, "2002:808:808::1": false,
	} {
		if got := refused(netip.MustParseAddr(addr)); got != want {
			t.Errorf("refused(%s) = %v, want %v", addr, got, want)
		}
	}
}
