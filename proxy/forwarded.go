package proxy

import (
	"net/http/httputil"
	"net/netip"
)

// The forwarding-header policy of http listeners, one for the fast path
// and the net/http path.
//
// An upstream learns who the client is from these headers, so it only
// ever sees ones gatekeeper wrote. From a peer that is not one of the
// listener's trusted load balancers (proxy_protocol.trusted) every
// incoming one is dropped. From a trusted peer the incoming
// X-Forwarded-For and Forwarded are kept and gatekeeper's own entry is
// appended, as a proxy in a chain does; X-Forwarded-Host,
// X-Forwarded-Proto and X-Real-IP are always gatekeeper's alone. The
// address written is the verified client (the socket peer, or the source
// of a trusted PROXY header), the one the policy checked; a forwarded
// address is never used for the check.

// forwardingHeaders are the headers the policy owns, in the canonical
// form net/http uses as map keys.
var forwardingHeaders = [...]string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "X-Real-Ip"}

// isForwardingHeader reports whether a client's header is one the policy
// owns (and so is never copied as the client sent it).
func isForwardingHeader(name []byte) bool {
	for _, h := range forwardingHeaders {
		if equalFold(name, h) {
			return true
		}
	}
	return false
}

// forwarding is what gatekeeper tells the upstream about one request.
type forwarding struct {
	client   netip.Addr
	host     []byte   // the Host the client asked for
	priorXFF [][]byte // a trusted peer's X-Forwarded-For values
	priorFwd [][]byte // and its Forwarded values
}

// appendHeaders appends the forwarding header lines.
func (f *forwarding) appendHeaders(out []byte) []byte {
	out = append(out, "X-Forwarded-For: "...)
	out = f.appendXFF(out)
	out = append(out, "\r\nX-Forwarded-Host: "...)
	out = append(out, f.host...)
	out = append(out, "\r\nX-Forwarded-Proto: https\r\nForwarded: "...)
	out = f.appendForwarded(out)
	out = append(out, "\r\nX-Real-Ip: "...)
	out = f.client.AppendTo(out)
	return append(out, "\r\n"...)
}

func (f *forwarding) appendXFF(out []byte) []byte {
	for _, p := range f.priorXFF {
		out = append(out, p...)
		out = append(out, ", "...)
	}
	return f.client.AppendTo(out)
}

// appendForwarded appends the Forwarded value (RFC 7239): IPv6 in quoted
// brackets, the host as a quoted-string.
func (f *forwarding) appendForwarded(out []byte) []byte {
	for _, p := range f.priorFwd {
		out = append(out, p...)
		out = append(out, ", "...)
	}
	out = append(out, "for="...)
	if f.client.Is6() {
		out = append(out, `"[`...)
		out = f.client.AppendTo(out)
		out = append(out, `]"`...)
	} else {
		out = f.client.AppendTo(out)
	}
	out = append(out, ";host=\""...)
	for _, b := range f.host {
		if b == '"' || b == '\\' {
			out = append(out, '\\')
		}
		out = append(out, b)
	}
	return append(out, "\";proto=https"...)
}

// setForwarded applies the policy to a request net/http forwards:
// trusted says whether the socket peer is a trusted load balancer.
func setForwarded(pr *httputil.ProxyRequest, client netip.Addr, trusted bool) {
	for _, h := range forwardingHeaders {
		pr.Out.Header.Del(h)
	}
	f := forwarding{client: client, host: []byte(pr.In.Host)}
	if trusted {
		for _, v := range pr.In.Header.Values("X-Forwarded-For") {
			f.priorXFF = append(f.priorXFF, []byte(v))
		}
		for _, v := range pr.In.Header.Values("Forwarded") {
			f.priorFwd = append(f.priorFwd, []byte(v))
		}
	}
	pr.Out.Header.Set("X-Forwarded-For", string(f.appendXFF(nil)))
	pr.Out.Header.Set("X-Forwarded-Host", pr.In.Host)
	pr.Out.Header.Set("X-Forwarded-Proto", "https")
	pr.Out.Header.Set("Forwarded", string(f.appendForwarded(nil)))
	pr.Out.Header.Set("X-Real-Ip", client.String())
}
