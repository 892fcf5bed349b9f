package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// FuzzHTTP1Upstream is the differential fuzz of what the fast path
// writes upstream. Whatever client bytes it serves, the request it
// writes, read back by net/http (http.ReadRequest) and by the strict
// parser, must be one request with the method, target, framing and body
// the proxy believed it forwarded, followed by nothing, and must carry
// exactly the forwarding headers of the policy: the client's own only as
// a trusted peer's prior hops, never in their place. Its seeds are the
// request-smuggling corpus of e2e/smuggling_test.go
// (testdata/fuzz/FuzzHTTP1Upstream, written by TestSmugglingCorpusSeeds).
func FuzzHTTP1Upstream(f *testing.F) {
	f.Add([]byte("POST /p HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.6.6.6\r\nContent-Length: 3\r\n\r\nabc"), true)
	f.Fuzz(func(t *testing.T, raw []byte, trusted bool) {
		client := netip.MustParseAddrPort("192.0.2.7:4000")
		peer := client
		if trusted {
			peer = netip.MustParseAddrPort("10.0.0.1:5000")
		}
		c := &conn{peer: peer, client: client, route: &route{fastHost: "up.test:8080"},
			lc: &listenerConfig{trusted: policy.Prefixes{netip.MustParsePrefix("10.0.0.0/8")}}}
		h := &h1conn{c: c}
		br := bufio.NewReaderSize(bytes.NewReader(raw), h1RequestHeadMax)
		req, err := h.readRequestHead(br)
		if err != nil {
			return // refused, or left to net/http (behind the gate)
		}
		defer h.releaseRequest(req)
		head, _ := peekHead(br)
		body := raw[len(head):]
		if req.contentLength > int64(len(body)) {
			return // the body has not all come
		}
		body = body[:max(req.contentLength, 0)]
		out := append(h.requestHead(nil, req), body...)

		// net/http's reading.
		std, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(out)))
		if err != nil {
			t.Fatalf("net/http cannot read what went upstream (%v):\n%q\nfrom %q", err, out, raw)
		}
		stdBody, err := io.ReadAll(std.Body)
		switch {
		case err != nil:
			t.Fatalf("body: %v:\n%q", err, out)
		case std.Method != string(req.method) || std.RequestURI != string(req.target):
			t.Fatalf("net/http reads %s %s, the proxy forwarded %s %s:\n%q", std.Method, std.RequestURI, req.method, req.target, out)
		case len(std.TransferEncoding) > 0 || std.ContentLength != max(req.contentLength, 0):
			t.Fatalf("net/http frames %v / %d, the proxy %d:\n%q", std.TransferEncoding, std.ContentLength, req.contentLength, out)
		case !bytes.Equal(stdBody, body):
			t.Fatalf("net/http reads body %q, the proxy sent %q", stdBody, body)
		case std.Host != "up.test:8080":
			t.Fatalf("Host %q", std.Host)
		}
		// The strict parser's reading, and nothing after the request.
		sbr := bufio.NewReaderSize(bytes.NewReader(out), len(out)+1)
		shead, err := peekHead(sbr)
		if err != nil {
			t.Fatalf("the strict parser cannot find the head (%v):\n%q", err, out)
		}
		var back h1Request
		back.contentLength = -1
		if err := parseRequestHead(&back, shead); err != nil {
			t.Fatalf("the strict parser refuses what went upstream (%v):\n%q", err, out)
		}
		if string(back.method) != string(req.method) || string(back.target) != string(req.target) ||
			back.contentLength != req.contentLength || back.chunked || len(out)-len(shead) != len(body) {
			t.Fatalf("the strict parser reads %s %s length %d, %d bytes after the head; the proxy sent %s %s length %d, %d:\n%q",
				back.method, back.target, back.contentLength, len(out)-len(shead), req.method, req.target, req.contentLength, len(body), out)
		}
		checkForwardingHeaders(t, std.Header, raw, out, trusted)
	})
}

// checkForwardingHeaders checks that h holds exactly one of each
// forwarding header, written by the policy for 192.0.2.7: from an
// untrusted peer nothing of the client's, from a trusted one the
// client's prior hops before the proxy's own entry.
func checkForwardingHeaders(t *testing.T, h http.Header, raw, out []byte, trusted bool) {
	t.Helper()
	for _, name := range forwardingHeaders {
		if n := len(h.Values(name)); n != 1 {
			t.Fatalf("%d %s headers upstream:\n%q\nfrom %q", n, name, out, raw)
		}
	}
	xff, fwd := h.Get("X-Forwarded-For"), h.Get("Forwarded")
	switch {
	case h.Get("X-Real-Ip") != "192.0.2.7", h.Get("X-Forwarded-Proto") != "https":
		t.Fatalf("X-Real-Ip %q, X-Forwarded-Proto %q", h.Get("X-Real-Ip"), h.Get("X-Forwarded-Proto"))
	case !trusted && xff != "192.0.2.7", trusted && !strings.HasSuffix(xff, "192.0.2.7"):
		t.Fatalf("X-Forwarded-For %q (trusted peer: %v) from %q", xff, trusted, raw)
	case !trusted && !strings.HasPrefix(fwd, "for=192.0.2.7;"), trusted && !strings.Contains(fwd, "for=192.0.2.7;"):
		t.Fatalf("Forwarded %q (trusted peer: %v) from %q", fwd, trusted, raw)
	}
}

// FuzzHTTP1Response is the differential fuzz of what the fast path
// writes to the client: whatever upstream response it forwards, the
// response net/http (http.ReadResponse) reads from its output has the
// status and body net/http reads from the upstream's, and nothing after
// it; its head has CRLF line ends only, and chunked bodies come without
// extensions.
func FuzzHTTP1Response(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\nContent-Length: 99\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nhi",
		"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n1\r\na\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ubr := bufio.NewReaderSize(bytes.NewReader(raw), h1ResponseHeadMax)
		head, err := peekHead(ubr)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		w := &h1Writer{w: &buf, buf: make([]byte, 0, 16<<10)}
		h := &h1conn{c: &conn{ln: &listener{}}}
		req := &h1Request{method: []byte("GET"), contentLength: -1}
		status, fr, length, _, _, ok := h.responseHead(w, head, req)
		if !ok || status < 200 {
			return
		}
		ubr.Discard(len(head))
		switch fr {
		case framingLength:
			err = copyBody(w, ubr, length, func() {})
		case framingChunked:
			err = copyChunked(w, ubr, func() {})
		case framingClose:
			err = copyUntilEOF(w, ubr, func() {})
		}
		if ferr := w.flush(); err == nil {
			err = ferr
		}
		if err != nil {
			return // the proxy gives up on the response: the client connection closes
		}
		std, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
		if err != nil {
			t.Fatalf("the fast path forwarded what net/http refuses (%v):\n%q", err, raw)
		}
		wantBody, err := io.ReadAll(std.Body)
		if err != nil {
			t.Fatalf("the fast path forwarded a body net/http cannot read (%v):\n%q", err, raw)
		}
		out := buf.Bytes()
		obr := bufio.NewReader(bytes.NewReader(out))
		got, err := http.ReadResponse(obr, nil)
		if err != nil {
			t.Fatalf("net/http cannot read what the client got (%v):\n%q\nfrom %q", err, out, raw)
		}
		gotBody, err := io.ReadAll(got.Body)
		switch {
		case err != nil:
			t.Fatalf("body: %v:\n%q", err, out)
		case got.StatusCode != std.StatusCode || got.StatusCode != status:
			t.Fatalf("status %d, upstream %d:\n%q\nfrom %q", got.StatusCode, std.StatusCode, out, raw)
		case !bytes.Equal(gotBody, wantBody):
			t.Fatalf("body %q, upstream's %q:\n%q\nfrom %q", gotBody, wantBody, out, raw)
		case obr.Buffered() > 0:
			t.Fatalf("bytes after the response:\n%q\nfrom %q", out, raw)
		}
		ohead := out[:bytes.Index(out, crlfCRLF)+4]
		if scanLineEnds(ohead) != nil || !strings.HasPrefix(string(ohead), "HTTP/1.1 "+strconv.Itoa(status)) {
			t.Fatalf("head sent to the client:\n%q", ohead)
		}
		if fr == framingChunked && bytes.Contains(out[len(ohead):], []byte(";")) && !bytes.Contains(wantBody, []byte(";")) {
			t.Fatalf("a chunk extension reached the client:\n%q", out)
		}
	})
}

// FuzzH1Gate feeds arbitrary client bytes through the gate net/http reads
// HTTP/1 connections through. What it lets pass is a prefix of the
// input, made of whole requests the strict parser accepted (the last
// perhaps cut short), each of which net/http reads as the same request;
// then, if it refused something, the stream ends with the refusal
// answered.
func FuzzH1Gate(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
		"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nanything",
		"GET / HTTP/1.1\nHost: h\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		cc := &captureConn{r: bytes.NewReader(raw)}
		g := newH1Gate(cc, nil, nil)
		passed, err := io.ReadAll(g)
		if !bytes.HasPrefix(raw, passed) {
			t.Fatalf("the gate passed %q, not a prefix of %q", passed, raw)
		}
		if g.failure.Load() != nil {
			// A refused body fails its read (the reverse proxy's error
			// handler answers it); the next read answers if nobody did,
			// and ends the stream (which ReadAll reports as no error).
			if err != nil {
				_, err = g.Read(make([]byte, 1))
			}
			if err != nil && err != io.EOF || !bytes.HasPrefix(cc.buf, []byte("HTTP/1.1 4")) {
				t.Fatalf("a refusal ended with %v, answered %q", err, cc.buf)
			}
		}
		// Every request net/http reads from what passed, the strict
		// parser read alike.
		br := bufio.NewReader(bytes.NewReader(passed))
		for {
			if _, err := br.Peek(1); err != nil {
				return
			}
			std, err := http.ReadRequest(br)
			if err != nil {
				return // cut short: the stream ended mid-request
			}
			if std.Header.Get("Upgrade") != "" {
				return // the rest is the upgraded protocol's
			}
			var strict h1Request
			strict.contentLength = -1
			i := bytes.Index(passed, crlfCRLF) // the heads passed are CRLF-only
			if i < 0 || parseRequestHead(&strict, passed[:i+4]) != nil {
				t.Fatalf("the gate passed a head its parser refuses: %q", passed)
			}
			if std.Method != string(strict.method) || std.RequestURI != string(strict.target) ||
				(len(std.TransferEncoding) > 0) != strict.chunked || !strict.chunked && std.ContentLength != max(strict.contentLength, 0) {
				t.Fatalf("net/http reads %s %s (%v, %d), the gate %s %s (%v, %d)", std.Method, std.RequestURI,
					std.TransferEncoding, std.ContentLength, strict.method, strict.target, strict.chunked, strict.contentLength)
			}
			if _, err := io.Copy(io.Discard, std.Body); err != nil {
				return
			}
			passed = passed[len(passed)-br.Buffered():]
			br = bufio.NewReader(bytes.NewReader(passed))
		}
	})
}

// net/http cuts its background read short (abortPendingRead) by moving
// the read deadline into the past, and may do so before that read's
// goroutine has even started. A refused pipelined request then must still
// end the read, and be answered once net/http is idle; before the fix the
// late read forgot the abort and waited for a wake-up that never came,
// which left the connection stuck (seen once in TestSmugglingCorpus under
// load).
func TestGateAbortBeforeRead(t *testing.T) {
	raw := "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"
	cc := &captureConn{r: strings.NewReader(raw)}
	g := newH1Gate(cc, nil, nil)
	g.connState(http.StateActive)
	if _, err := http.ReadRequest(bufio.NewReader(g)); err != nil {
		t.Fatalf("the first request: %v", err)
	}
	g.SetReadDeadline(time.Unix(1, 0)) // the abort, before the read below began
	done := make(chan error, 1)
	go func() {
		_, err := g.Read(make([]byte, 1))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the aborted read ended with %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read begun after net/http aborted it did not end")
	}
	g.SetReadDeadline(time.Time{})
	g.connState(http.StateIdle)
	if _, err := g.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the read after the refusal: %v, want io.EOF", err)
	}
	if !bytes.HasPrefix(cc.buf, []byte("HTTP/1.1 400")) {
		t.Fatalf("the refusal was answered %q", cc.buf)
	}
}
