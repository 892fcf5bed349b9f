package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"

	proxyproto "github.com/pires/go-proxyproto"
)

var (
	errNoProxyHeader        = errors.New("no PROXY protocol header from a trusted load balancer")
	errUntrustedProxyHeader = errors.New("PROXY protocol header from a peer that is not a trusted load balancer")
)

// proxyHeader is what a trusted load balancer said about a connection.
type proxyHeader struct {
	// src is the client; dst the address the client connected to. Both
	// are invalid for a LOCAL header (the balancer's own health check),
	// whose client is the socket peer.
	src, dst netip.AddrPort
}

// readProxyHeader reads a PROXY protocol v1 or v2 header from r and
// returns it with the bytes read beyond it, which belong to the client's
// stream. A missing or malformed header, or one for anything but TCP over
// IPv4 or IPv6, is an error. go-proxyproto refuses a v1 header that does
// not arrive in one read, which keeps slow senders from holding it open.
func readProxyHeader(r io.Reader) (proxyHeader, []byte, error) {
	br := bufio.NewReaderSize(r, 512)
	h, err := proxyproto.Read(br)
	if err != nil {
		if errors.Is(err, proxyproto.ErrNoProxyProtocol) {
			return proxyHeader{}, buffered(br), errNoProxyHeader
		}
		return proxyHeader{}, nil, fmt.Errorf("PROXY protocol header: %w", err)
	}
	rest := buffered(br)
	if h.Command.IsLocal() {
		return proxyHeader{}, rest, nil
	}
	if !h.TransportProtocol.IsStream() || !(h.TransportProtocol.IsIPv4() || h.TransportProtocol.IsIPv6()) {
		return proxyHeader{}, nil, fmt.Errorf("PROXY protocol header for %v: only TCP is proxied", h.TransportProtocol)
	}
	src, ok1 := tcpAddrPort(h.SourceAddr)
	dst, ok2 := tcpAddrPort(h.DestinationAddr)
	if !ok1 || !ok2 {
		return proxyHeader{}, nil, errors.New("PROXY protocol header: invalid address")
	}
	return proxyHeader{src: src, dst: dst}, rest, nil
}

func buffered(br *bufio.Reader) []byte {
	n := br.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := br.Peek(n)
	return bytes.Clone(b)
}

func tcpAddrPort(a net.Addr) (netip.AddrPort, bool) {
	t, ok := a.(*net.TCPAddr)
	if !ok || t == nil {
		return netip.AddrPort{}, false
	}
	ip, ok := netip.AddrFromSlice(t.IP)
	if !ok || t.Port < 0 || t.Port > 65535 {
		return netip.AddrPort{}, false
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, uint16(t.Port)), true
}

var (
	sigV1 = []byte("PROXY ")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// proxySignature reports whether b starts with a PROXY protocol
// signature (yes), cannot (no), or is too short to tell (more).
func proxySignature(b []byte) (yes, more bool) {
	for _, sig := range [][]byte{sigV1, sigV2} {
		n := min(len(b), len(sig))
		if bytes.Equal(b[:n], sig[:n]) {
			if n == len(sig) {
				return true, false
			}
			more = true
		}
	}
	return false, more
}

// sniffProxyHeader reads from r, appending to b, until it can tell
// whether the stream starts with a PROXY protocol header, and returns the
// bytes read. It is for peers that are not trusted load balancers: they
// must not send one (errUntrustedProxyHeader). On a read error, b holds
// what was read so far and the caller may go on where it stopped.
func sniffProxyHeader(r io.Reader, b []byte) ([]byte, error) {
	for {
		yes, more := proxySignature(b)
		if yes {
			return b, errUntrustedProxyHeader
		}
		if !more {
			return b, nil
		}
		if cap(b)-len(b) < len(sigV2) {
			b = slices.Grow(b, 64)
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if yes, _ := proxySignature(b); yes {
				return b, errUntrustedProxyHeader
			}
			return b, err
		}
	}
}

// writeProxyHeader sends a PROXY protocol v2 header for a connection from
// src to dst, followed by rest, in one write.
func writeProxyHeader(w io.Writer, src, dst netip.AddrPort, rest []byte) error {
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(src), net.TCPAddrFromAddrPort(dst))
	b, err := h.Format()
	if err != nil {
		return fmt.Errorf("format PROXY header: %w", err)
	}
	_, err = w.Write(append(b, rest...))
	return err
}
