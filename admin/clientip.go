package admin

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// ClientIP returns the address of the client behind r: the socket peer, or,
// when the peer is one of trusted, the rightmost X-Forwarded-For entry that
// is not itself a trusted proxy. The leftmost entries are whatever the
// client chose to send and are never believed. An entry that does not
// parse, where it would be the answer, is an error: guessing could unblock
// the wrong address.
func ClientIP(r *http.Request, trusted policy.Prefixes) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, errors.New("unparseable peer address")
	}
	peer := ap.Addr().Unmap().WithZone("")
	if !trusted.Contains(peer) {
		return peer, nil
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for h := range strings.SplitSeq(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	addr := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			return netip.Addr{}, errors.New("unparseable X-Forwarded-For entry from a trusted proxy")
		}
		addr = a.Unmap().WithZone("")
		if !trusted.Contains(addr) {
			break
		}
	}
	return addr, nil
}

// limitKey is the key a client address is rate limited by: the address, or
// for IPv6 its /64, which one subscriber usually holds whole.
func limitKey(a netip.Addr) string {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
