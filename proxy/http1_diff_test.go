package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzHTTP1AgreesWithNetHTTP is a differential fuzz of the fast path's
// request parser: whatever head it accepts, net/http's own parser must
// accept too, and both must agree on the method, the target, the host and
// the body length. A disagreement between the two parsers in front of one
// upstream is what request smuggling is made of.
func FuzzHTTP1AgreesWithNetHTTP(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length : 3\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc",
		"GET /x HTTP/1.1\nHost: h\n\n",
		"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
		"GET /% HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a%zz?q=1 HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a%2Fb?q=100% HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h := &h1conn{}
		req, err := h.readRequestHead(bufio.NewReaderSize(bytes.NewReader(b), h1RequestHeadMax))
		if err != nil {
			return // refused, or handed to net/http: nothing to compare
		}
		defer h.releaseRequest(req)
		std, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("the fast path accepted a head net/http refuses (%v):\n%q", err, b)
		}
		wantLen := std.ContentLength
		if wantLen == 0 && std.Header.Get("Content-Length") == "" {
			wantLen = -1
		}
		switch {
		case string(req.method) != std.Method:
			t.Fatalf("method %q, net/http %q:\n%q", req.method, std.Method, b)
		case string(req.target) != std.RequestURI:
			t.Fatalf("target %q, net/http %q:\n%q", req.target, std.RequestURI, b)
		case !strings.EqualFold(string(req.host), std.Host):
			t.Fatalf("host %q, net/http %q:\n%q", req.host, std.Host, b)
		case req.contentLength != wantLen && !(req.contentLength <= 0 && wantLen <= 0):
			t.Fatalf("body length %d, net/http %d:\n%q", req.contentLength, wantLen, b)
		case len(std.TransferEncoding) > 0:
			t.Fatalf("the fast path accepted a request with Transfer-Encoding %v:\n%q", std.TransferEncoding, b)
		}
	})
}

// validTarget takes what url.ParseRequestURI takes, as far as visible
// ASCII goes: whole escapes in the path, anything in the query.
func TestValidTarget(t *testing.T) {
	for _, target := range []string{"/", "/a%41", "/a%2Fb?q=100%", "/a?%", "/a?%zz", "/?", "*", "/a%4f%4F", "http://h/p%20q"} {
		if !validTarget([]byte(target)) {
			t.Errorf("%q refused", target)
		}
		if _, err := url.ParseRequestURI(target); err != nil {
			t.Errorf("net/url refuses %q too: %v", target, err)
		}
	}
	for _, target := range []string{"", "/%", "/a%4", "/a%4?x", "/a%zz", "/a%g0?q", "/%%41", "/a\x7f"} {
		if validTarget([]byte(target)) {
			t.Errorf("%q accepted", target)
		}
		if _, err := url.ParseRequestURI(target); err == nil {
			t.Errorf("net/url takes %q", target)
		}
	}
}
