package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/internal/rawsock"
)

// The HTTP/1.1 fast path of http listeners.
//
// net/http's server, ReverseProxy and Transport spend three goroutines,
// several channel hand-offs and dozens of allocations on every request;
// under bench/run's load that was twice HAProxy's CPU per request. For
// the requests desktop applications send (HTTP/1.1, an origin-form
// target, a body framed by Content-Length or none) a connection is
// served here instead, by its own goroutine: it reads the request head
// with the strict parser (h1strict.go), which refuses what is malformed
// or ambiguous with 400, generates the head it sends upstream from what
// was parsed (hop-by-hop headers out, Host set to the upstream's,
// Content-Length from the parsed length, the forwarding headers of
// forwarded.go), writes it to an upstream connection of its own, and
// sends the response back with a head generated from the upstream's
// (status line validated whole, framing from what was parsed) and its
// body as the upstream framed it, chunk extensions dropped. A connection
// holds buffers only while a request is under way.
//
// Any other well-formed request (HTTP/1.0, chunked or Expect requests,
// upgrades, unusual methods or targets) hands the connection, bytes
// already read included, to the listener's net/http server for the rest
// of its life, behind the strict parser's gate. Routes to an https://
// upstream or one with a path always use net/http.

// h1RequestHeadMax bounds a request head (a larger one is answered 431)
// and h1ResponseHeadMax a response head (a larger one is a 502).
const (
	h1RequestHeadMax  = 16 << 10
	h1ResponseHeadMax = 64 << 10
	h1MaxHeaders      = 100
)

var (
	h1ClientReaders   = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1RequestHeadMax) }}
	h1UpstreamReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1ResponseHeadMax) }}
	h1WriteBufs       = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}
	h1HeaderLists     = sync.Pool{New: func() any { h := make([]h1Header, 0, 32); return &h }}
)

// fastUpstream returns the address to dial and the Host header for a
// route the fast path can serve: a plain http:// upstream with no path,
// query or user. ok is false for any other.
func fastUpstream(u *url.URL) (addr, host string, ok bool) {
	if u.Scheme != "http" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Opaque != "" {
		return "", "", false
	}
	addr = u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return addr, u.Host, true
}

// h1Header is one header line: name and value point into a reader's
// buffer and are valid until it reads again.
type h1Header struct{ name, value []byte }

// h1Request is a request head as the strict parser read it.
type h1Request struct {
	method, target []byte
	host           []byte
	contentLength  int64 // -1: none
	chunked        bool  // Transfer-Encoding: chunked
	http10         bool
	closeAfter     bool // Connection: close, or HTTP/1.0 without keep-alive
	keepAlive      bool // Connection: keep-alive
	teTrailers     bool // TE: trailers
	expect         bool
	upgrade        bool
	headers        []h1Header
	headerList     *[]h1Header // headers' pooled backing
	drop           [][]byte    // header names listed in Connection
}

// errH1Handoff says that net/http must serve the request.
var errH1Handoff = errors.New("not for the HTTP/1.1 fast path")

// serveHTTP1 is the handler of http listeners on the HTTP/1.1 fast
// path, after the handshake. It serves the connection's requests until it
// closes, or hands it to the listener's HTTP server, which ends it then.
func (c *conn) serveHTTP1(ctx context.Context, tc *tls.Conn) {
	h := &h1conn{c: c, tc: tc}
	handedOff := false
	defer func() {
		h.closeUpstream()
		if !handedOff {
			c.finish()
		}
	}()
	for {
		br, err := h.waitRequest()
		if err != nil {
			return
		}
		for { // the request, and any pipelined after it
			req, err := h.readRequestHead(br)
			if errors.Is(err, errH1Handoff) {
				handedOff = h.handOff(br)
				return
			}
			if herr := (*h1Error)(nil); errors.As(err, &herr) {
				h.refuse(herr)
			}
			keep := err == nil && h.exchange(ctx, br, req)
			if req != nil {
				h.releaseRequest(req)
			}
			if !keep || br.Buffered() == 0 {
				br.Reset(nil)
				h1ClientReaders.Put(br)
				if !keep {
					return
				}
				break
			}
			h.tc.SetReadDeadline(time.Now().Add(c.lc.t.Handshake))
		}
	}
}

// h1conn is the state of one fast-path connection between requests: the
// client, and the upstream connection it keeps.
type h1conn struct {
	c       *conn
	tc      *tls.Conn
	up      *net.TCPConn
	upIO    *rawsock.IO    // up's reads and writes (rawsock)
	served  int            // requests sent on up
	lastUse time.Time      // when up last finished a response
	req     h1Request      // the request under way
	first   prefixedReader // the client, behind the first byte of a request
}

// waitRequest waits, holding no buffer, for the first byte of the next
// request (within the idle timeout), then lends a reader for its head
// (within the header timeout).
func (h *h1conn) waitRequest() (*bufio.Reader, error) {
	lc := h.c.lc
	h.tc.SetReadDeadline(time.Now().Add(lc.t.Idle))
	// Idle first, then the check: listener.stop sets stopping first, then
	// closes the idle; one of the two sees the other.
	h.c.enter(phaseIdle)
	if h.c.ln.stopping.Load() {
		return nil, net.ErrClosed
	}
	var first [1]byte
	_, err := io.ReadFull(h.tc, first[:])
	h.c.enter(phaseActive)
	if err != nil {
		return nil, err
	}
	h.c.touch()
	h.tc.SetReadDeadline(time.Now().Add(lc.t.Handshake))
	br := h1ClientReaders.Get().(*bufio.Reader)
	h.first = prefixedReader{first: first[0], r: h.tc}
	br.Reset(&h.first)
	return br, nil
}

// prefixedReader is r with one byte before it.
type prefixedReader struct {
	first byte
	done  bool
	r     io.Reader
}

func (p *prefixedReader) Read(b []byte) (int, error) {
	if !p.done && len(b) > 0 {
		p.done = true
		b[0] = p.first
		return 1, nil
	}
	return p.r.Read(b)
}

// readRequestHead parses the head at the start of br without consuming
// it: an *h1Error for a head the strict parser refuses, errH1Handoff for
// a well-formed one the fast path leaves to net/http (HTTP/1.0, chunked,
// Expect or Upgrade requests, other methods or target forms).
func (h *h1conn) readRequestHead(br *bufio.Reader) (*h1Request, error) {
	head, err := peekHead(br)
	if err != nil {
		return nil, err
	}
	hl := h1HeaderLists.Get().(*[]h1Header)
	req := &h.req
	*req = h1Request{contentLength: -1, headers: (*hl)[:0], headerList: hl, drop: req.drop[:0]}
	if err := parseRequestHead(req, head); err != nil {
		h.releaseRequest(req)
		return nil, err
	}
	if req.http10 || req.chunked || req.expect || req.upgrade || !fastMethod(req.method) || req.target[0] != '/' {
		h.releaseRequest(req)
		return nil, errH1Handoff
	}
	return req, nil
}

// refuse answers a request the strict parser refused, and counts it; the
// connection then closes, as what follows the head cannot be framed.
func (h *h1conn) refuse(err *h1Error) {
	h.c.ln.lm.errors[reasonBadRequest].Inc()
	h.tc.Write(h1ErrorResponse(err))
}

// h1ErrorResponse is the answer to a refused request.
func h1ErrorResponse(err *h1Error) []byte {
	if err.status == 431 {
		return []byte("HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	}
	return []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

func (h *h1conn) releaseRequest(req *h1Request) {
	if req.headerList != nil {
		*req.headerList = req.headers[:0]
		h1HeaderLists.Put(req.headerList)
	}
	req.headers, req.headerList = nil, nil
}

// handOff gives the connection to the listener's HTTP server, behind the
// strict parser's gate, with the bytes br holds replayed first.
func (h *h1conn) handOff(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	pending := bytes.Clone(b)
	br.Reset(nil)
	h1ClientReaders.Put(br)
	h.closeUpstream()
	h.tc.SetReadDeadline(time.Time{})
	c := h.c
	c.gate = newH1Gate(h.tc, pending, c.ln.lm.errors[reasonBadRequest])
	return c.toHTTPServer(c.gate)
}

// exchange forwards one request whose head starts br and its response;
// it reports whether the client connection may serve another.
func (h *h1conn) exchange(ctx context.Context, br *bufio.Reader, req *h1Request) bool {
	c := h.c
	c.enter(phasePiping) // the idle sweep watches the exchange from here
	h.tc.SetReadDeadline(time.Time{})
	head, _ := peekHead(br)
	wp := h1WriteBufs.Get().(*[]byte)
	defer func() { *wp = (*wp)[:0]; h1WriteBufs.Put(wp) }()
	out := h.requestHead((*wp)[:0], req)
	// A small body already read goes in the same write, and the request
	// can be sent again on a fresh connection if a kept one was stale.
	body := req.contentLength
	replayable := false
	if body <= 0 || int64(br.Buffered()-len(head)) >= body && body <= int64(cap(out)-len(out)) {
		b, _ := br.Peek(len(head) + int(max(body, 0)))
		out = append(out, b[len(head):]...)
		br.Discard(len(b))
		body = 0
		replayable = true
	} else {
		br.Discard(len(head))
	}
	*wp = out

	for attempt := 0; ; attempt++ {
		reused := h.up != nil && h.served > 0
		if wrote, err := h.sendRequest(ctx, out, br, body); err != nil {
			// As http.Transport: a request none of which was written
			// may go again on a fresh connection if a kept one was
			// stale; one that may have reached the upstream may not.
			if reused && replayable && !wrote && attempt == 0 && !c.killed.Load() {
				h.closeUpstream()
				continue
			}
			h.upstreamFailed(err, true)
			return false
		}
		h.served++
		keep, started, err := h.copyResponse(req)
		if err != nil {
			// As http.Transport: once the request was written, only an
			// idempotent one is sent again.
			if !started && reused && replayable && idempotent(req.method) && attempt == 0 && !c.killed.Load() {
				h.closeUpstream()
				continue
			}
			h.upstreamFailed(err, !started)
			return false
		}
		return keep && !req.closeAfter
	}
}

// requestHead appends the head sent upstream, generated from what the
// strict parser read: the request line, Host set to the upstream's, the
// client's end-to-end headers (not the hop-by-hop ones, not those its
// Connection header names, not the framing, not the forwarding headers),
// Content-Length from the parsed length, and the forwarding headers of
// the policy in forwarded.go.
func (h *h1conn) requestHead(out []byte, req *h1Request) []byte {
	c := h.c
	out = append(out, req.method...)
	out = append(out, ' ')
	out = append(out, req.target...)
	out = append(out, " HTTP/1.1\r\nHost: "...)
	out = append(out, c.route.fastHost...)
	out = append(out, "\r\n"...)
	trusted := c.lc.trusts(c.peer.Addr())
	var xff, fwd [4][]byte
	f := forwarding{client: c.client.Addr(), host: req.host, priorXFF: xff[:0], priorFwd: fwd[:0]}
	for _, hd := range req.headers {
		switch {
		case trusted && equalFold(hd.name, "X-Forwarded-For"):
			f.priorXFF = append(f.priorXFF, hd.value)
			continue
		case trusted && equalFold(hd.name, "Forwarded"):
			f.priorFwd = append(f.priorFwd, hd.value)
			continue
		case equalFold(hd.name, "Host"), equalFold(hd.name, "Content-Length"), hopByHop(hd.name),
			dropped(req.drop, hd.name), isForwardingHeader(hd.name), isIdentityHeader(hd.name):
			continue
		}
		out = appendHeader(out, hd.name, hd.value)
	}
	if req.contentLength >= 0 {
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, req.contentLength, 10)
		out = append(out, "\r\n"...)
	}
	if req.teTrailers {
		out = append(out, "Te: trailers\r\n"...)
	}
	out = f.appendHeaders(out)
	return append(out, "\r\n"...)
}

func appendHeader(out, name, value []byte) []byte {
	out = append(out, name...)
	out = append(out, ": "...)
	out = append(out, value...)
	return append(out, "\r\n"...)
}

// sendRequest writes the head (with what body fit) and then the rest of
// the body, body bytes from br, to the upstream, dialing it if needed.
// wrote says whether any byte may have reached the upstream.
func (h *h1conn) sendRequest(ctx context.Context, out []byte, br *bufio.Reader, body int64) (wrote bool, err error) {
	if h.up != nil && time.Since(h.lastUse) > staleCheckAfter && upstreamGone(h.up) {
		h.closeUpstream()
	}
	if h.up == nil {
		if err := h.dial(ctx); err != nil {
			return false, err
		}
	}
	if n, err := h.upIO.Write(out); err != nil {
		return n > 0, err
	}
	if body > 0 {
		return true, copyBody(h.upIO, br, body, h.c.touch)
	}
	return true, nil
}

func (h *h1conn) dial(ctx context.Context) error {
	c := h.c
	d := net.Dialer{Timeout: c.lc.t.Dial}
	start := time.Now()
	nc, err := d.DialContext(ctx, "tcp", c.route.fastAddr)
	c.ln.lm.dial.Observe(time.Since(start).Seconds())
	if err != nil {
		return err
	}
	h.up = nc.(*net.TCPConn)
	h.upIO = rawsock.New(h.up)
	h.served = 0
	c.up.Store(h.up)
	if c.killed.Load() { // revoked while dialing
		h.closeUpstream()
		return errKilled
	}
	return nil
}

// staleCheckAfter is how long an upstream connection may sit unused
// before it is checked for a close from the upstream (its keep-alive
// timeout, say) before the next request: a request written to a closed
// connection may have to fail, when it is not safe to send twice.
const staleCheckAfter = 50 * time.Millisecond

func (h *h1conn) closeUpstream() {
	if h.up != nil {
		h.up.Close()
		h.up = nil
	}
}

// upstreamFailed counts and logs an upstream that failed the exchange
// and, if nothing of the response was sent yet, answers 502.
func (h *h1conn) upstreamFailed(err error, answer bool) {
	c := h.c
	h.closeUpstream()
	if c.killed.Load() {
		return // revoked or shut down: nobody to answer
	}
	c.ln.lm.errors[reasonUpstream].Inc()
	if c.ln.srv.upLog.allow() {
		c.ln.srv.log.Warn("upstream request failed", zap.String("listener", c.ln.name),
			zap.String("account", c.route.account), zap.String("upstream", c.route.upstream), zap.Error(err))
	}
	if answer {
		h.tc.Write([]byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
	}
}

// errBadResponse is an upstream answer the fast path cannot forward.
var errBadResponse = errors.New("malformed response from the upstream")

// copyResponse reads the upstream's response (after any interim 1xx
// ones, which are passed on) and copies it to the client. started says
// whether anything reached the client; keep whether both connections may
// serve another request.
func (h *h1conn) copyResponse(req *h1Request) (keep, started bool, err error) {
	ubr := h1UpstreamReaders.Get().(*bufio.Reader)
	ubr.Reset(h.upIO)
	defer func() {
		if err == nil && ubr.Buffered() > 0 { // bytes after the response: not to be trusted
			h.closeUpstream()
		}
		ubr.Reset(nil)
		h1UpstreamReaders.Put(ubr)
	}()
	wp := h1WriteBufs.Get().(*[]byte)
	w := &h1Writer{w: h.tc, buf: (*wp)[:0]}
	defer func() { *wp = w.buf[:0]; h1WriteBufs.Put(wp) }()
	for {
		head, err := peekHead(ubr)
		if err != nil {
			if errors.Is(err, io.EOF) && ubr.Buffered() == 0 {
				err = io.ErrUnexpectedEOF
			}
			return false, started, fmt.Errorf("read response head: %w", err)
		}
		h.c.touch()
		status, framing, length, closing, closeClient, ok := h.responseHead(w, head, req)
		if !ok {
			return false, started, errBadResponse
		}
		started = true
		ubr.Discard(len(head))
		if status >= 100 && status < 200 {
			if err := w.flush(); err != nil {
				return false, started, err
			}
			continue
		}
		switch framing {
		case framingLength:
			err = copyBody(w, ubr, length, h.c.touch)
		case framingChunked:
			err = copyChunked(w, ubr, h.c.touch)
		case framingClose:
			err = copyUntilEOF(w, ubr, h.c.touch)
			closing = true
		}
		if ferr := w.flush(); err == nil {
			err = ferr
		}
		if err != nil {
			return false, started, err
		}
		if closing {
			h.closeUpstream()
		}
		h.lastUse = time.Now()
		return !closeClient, started, nil
	}
}

// parseStatusLine reads a response's status line whole: HTTP/1.0 or
// HTTP/1.1, a three-digit code from 100, and a reason of tabs, spaces and
// visible characters (possibly empty). Anything else is refused, so that
// the line the client gets, generated from these parts, says what the
// upstream said.
func parseStatusLine(line []byte) (status int, reason []byte, http10, ok bool) {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || (line[7] != '0' && line[7] != '1') || line[8] != ' ' {
		return 0, nil, false, false
	}
	if len(line) > 12 && line[12] != ' ' {
		return 0, nil, false, false
	}
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return 0, nil, false, false
		}
		status = status*10 + int(d-'0')
	}
	if status < 100 {
		return 0, nil, false, false
	}
	if len(line) > 13 {
		reason = line[13:]
	}
	for _, b := range reason {
		if (b < ' ' && b != '\t') || b == 0x7f {
			return 0, nil, false, false
		}
	}
	return status, reason, line[7] == '0', true
}

type framing int

const (
	framingNone framing = iota
	framingLength
	framingChunked
	framingClose
)

// responseHead parses a response head and appends to w the head sent to
// the client. closing says the upstream closes after this response,
// closeClient that the client connection closes after it.
func (h *h1conn) responseHead(w *h1Writer, head []byte, req *h1Request) (status int, f framing, length int64, closing, closeClient, ok bool) {
	statusLine, rest := cutLine(head)
	status, reason, http10, ok := parseStatusLine(statusLine)
	if !ok || status == 101 { // no upgrade was asked for
		return 0, 0, 0, false, false, false
	}
	closing = http10
	hl := h1HeaderLists.Get().(*[]h1Header)
	headers := (*hl)[:0]
	defer func() { *hl = headers[:0]; h1HeaderLists.Put(hl) }()
	var drop [][]byte
	var line []byte
	length = -1
	chunked := false
	for {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break
		}
		name, value, ok := splitHeader(line)
		if !ok {
			return 0, 0, 0, false, false, false
		}
		switch {
		case equalFold(name, "Content-Length"):
			n, ok := parseLength(value)
			if !ok || (length >= 0 && n != length) {
				return 0, 0, 0, false, false, false
			}
			length = n
		case equalFold(name, "Transfer-Encoding"):
			if chunked || !equalFold(value, "chunked") { // net/http's client takes no other coding
				return 0, 0, 0, false, false, false
			}
			chunked = true
		case equalFold(name, "Connection"):
			for v := value; len(v) > 0; {
				var tok []byte
				tok, v, _ = bytes.Cut(v, []byte(","))
				tok = bytes.TrimSpace(tok)
				if equalFold(tok, "close") {
					closing = true
				} else if equalFold(tok, "keep-alive") {
					if http10 {
						closing = false
					}
				} else if len(tok) > 0 {
					drop = append(drop, tok)
				}
			}
		}
		headers = append(headers, h1Header{name, value})
	}
	if chunked && http10 {
		// RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing
		// (net/http's client ignores it and reads until the close).
		return 0, 0, 0, false, false, false
	}
	interim := status < 200
	switch {
	case interim || status == 204 || status == 304 || equalFold(req.method, "HEAD"):
		f = framingNone
	case chunked:
		f = framingChunked
	case length >= 0:
		f = framingLength
	default:
		f = framingClose
	}
	closeClient = !interim && (req.closeAfter || f == framingClose || h.c.ln.stopping.Load())
	// The head is generated from what was parsed: the status line, and
	// the framing the copy below follows, whatever the upstream's
	// Connection header named.
	w.write([]byte("HTTP/1.1 "))
	w.write(strconv.AppendInt(w.scratch[:0], int64(status), 10))
	w.write([]byte(" "))
	w.write(reason)
	w.write([]byte("\r\n"))
	for _, hd := range headers {
		switch {
		case equalFold(hd.name, "Transfer-Encoding"), equalFold(hd.name, "Content-Length"):
			continue
		case equalFold(hd.name, "Trailer"):
			if f != framingChunked {
				continue
			}
		case hopByHop(hd.name), dropped(drop, hd.name):
			continue
		}
		w.writeHeader(hd.name, hd.value)
	}
	switch {
	case f == framingChunked:
		w.write([]byte("Transfer-Encoding: chunked\r\n"))
	case length >= 0 && (f == framingLength || status == 304 || equalFold(req.method, "HEAD")):
		w.writeHeader([]byte("Content-Length"), strconv.AppendInt(w.scratch[:0], length, 10))
	}
	if closeClient {
		w.write([]byte("Connection: close\r\n"))
	}
	w.write([]byte("\r\n"))
	return status, f, length, closing, closeClient, true
}

// h1Writer collects small writes into one, to send a head and a small
// body in a single TLS record and system call.
type h1Writer struct {
	w       io.Writer
	buf     []byte
	err     error
	scratch [20]byte // formats numbers
}

func (w *h1Writer) write(p []byte) {
	if w.err != nil {
		return
	}
	if len(w.buf)+len(p) > cap(w.buf) {
		if w.flush() != nil {
			return
		}
		if len(p) >= cap(w.buf)/2 {
			_, w.err = w.w.Write(p)
			return
		}
	}
	w.buf = append(w.buf, p...)
}

func (w *h1Writer) Write(p []byte) (int, error) {
	w.write(p)
	return len(p), w.err
}

func (w *h1Writer) writeHeader(name, value []byte) {
	if len(w.buf)+len(name)+len(value)+4 > cap(w.buf) {
		w.write(appendHeader(nil, name, value))
		return
	}
	w.buf = appendHeader(w.buf, name, value)
}

func (w *h1Writer) flush() error {
	if w.err == nil && len(w.buf) > 0 {
		_, w.err = w.w.Write(w.buf)
		w.buf = w.buf[:0]
	}
	return w.err
}

// copyBody copies n bytes from br to w.
func copyBody(w io.Writer, br *bufio.Reader, n int64, touch func()) error {
	for n > 0 {
		if _, err := br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		b, _ := br.Peek(int(min(int64(br.Buffered()), n)))
		if _, err := w.Write(b); err != nil {
			return err
		}
		br.Discard(len(b))
		n -= int64(len(b))
		touch()
	}
	return nil
}

// copyUntilEOF copies br to w until the upstream closes.
func copyUntilEOF(w io.Writer, br *bufio.Reader, touch func()) error {
	for {
		if _, err := br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		b, _ := br.Peek(br.Buffered())
		if _, err := w.Write(b); err != nil {
			return err
		}
		br.Discard(len(b))
		touch()
	}
}

// copyChunked copies a chunked body, checking its framing as it goes so
// that it knows where it ends. The chunk-size lines are written anew,
// without extensions, and the trailer fields pass only as net/http's
// server would send them (validTrailer), each validated and written
// anew.
func copyChunked(w *h1Writer, br *bufio.Reader, touch func()) error {
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return errBadResponse
		}
		br.Discard(len(line))
		w.write(strconv.AppendInt(w.scratch[:0], size, 16))
		w.write(crlfCRLF[:2])
		if size == 0 {
			for { // trailers, then the empty line
				line, err := readLine(br)
				if err != nil {
					return err
				}
				if len(line) == 2 {
					br.Discard(2)
					w.write(crlfCRLF[:2])
					return w.err
				}
				name, value, ok := splitHeader(line[:len(line)-2])
				if !ok {
					return errBadResponse
				}
				if validTrailer(name) {
					w.writeHeader(name, value)
				}
				br.Discard(len(line))
			}
		}
		if err := copyBody(w, br, size, touch); err != nil {
			return err
		}
		crlf, err := br.Peek(2)
		if err != nil {
			return err
		}
		if crlf[0] != '\r' || crlf[1] != '\n' {
			return errBadResponse
		}
		w.write(crlf)
		br.Discard(2)
	}
}

// validTrailer is net/http's rule for the fields a trailer may carry
// (golang.org/x/net/http/httpguts.ValidTrailerHeader): none that frames,
// routes, authenticates or describes the body, which a recipient may
// already have acted on.
func validTrailer(name []byte) bool {
	for _, h := range [...]string{"Authorization", "Cache-Control", "Connection", "Content-Encoding", "Content-Length",
		"Content-Range", "Content-Type", "Expect", "Host", "Keep-Alive", "Max-Forwards", "Pragma", "Proxy-Authenticate",
		"Proxy-Authorization", "Proxy-Connection", "Range", "Realm", "Te", "Trailer", "Transfer-Encoding", "Www-Authenticate"} {
		if equalFold(name, h) {
			return false
		}
	}
	return true
}

// readLine peeks one CRLF-terminated line (of at most 4 KiB), CRLF
// included, without consuming it.
func readLine(br *bufio.Reader) ([]byte, error) {
	const maxLine = 4096
	for n := 1; ; {
		_, err := br.Peek(n)
		b, _ := br.Peek(min(br.Buffered(), maxLine))
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			if i == 0 || b[i-1] != '\r' {
				return nil, errBadResponse
			}
			return b[:i+1], nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if len(b) == maxLine {
			return nil, errBadResponse
		}
		n = len(b) + 1
	}
}

// parseChunkSize reads the hexadecimal size of a chunk-size line, its
// extensions ignored.
func parseChunkSize(line []byte) (int64, bool) {
	line = line[:len(line)-2]
	for _, b := range line { // no bare CR or control byte, in extensions either
		if (b < ' ' && b != '\t') || b == 0x7f {
			return 0, false
		}
	}
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 {
		return 0, false
	}
	var n int64
	for _, b := range line {
		var d byte
		switch {
		case b >= '0' && b <= '9':
			d = b - '0'
		case b >= 'a' && b <= 'f':
			d = b - 'a' + 10
		case b >= 'A' && b <= 'F':
			d = b - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, true
}

var crlfCRLF = []byte("\r\n\r\n")

// cutLine splits off the first CRLF-terminated line of a head.
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.Index(b, crlfCRLF[:2])
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i+2:]
}

func splitRequestLine(line []byte) (method, target, version []byte, ok bool) {
	method, rest, ok1 := bytes.Cut(line, []byte(" "))
	target, version, ok2 := bytes.Cut(rest, []byte(" "))
	return method, target, version, ok1 && ok2
}

func idempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS":
		return true
	}
	return false
}

func fastMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS":
		return true
	}
	return false
}

// splitHeader splits a header line into a token name and a value without
// control characters (tabs aside), trimmed of spaces; ok is false for
// anything else, obsolete line folding included.
func splitHeader(line []byte) (name, value []byte, ok bool) {
	name, value, ok = bytes.Cut(line, []byte(":"))
	if !ok || len(name) == 0 {
		return nil, nil, false
	}
	for _, b := range name {
		if !isTokenChar(b) {
			return nil, nil, false
		}
	}
	value = bytes.Trim(value, " \t")
	for _, b := range value {
		if (b < ' ' && b != '\t') || b == 0x7f {
			return nil, nil, false
		}
	}
	return name, value, true
}

func isTokenChar(b byte) bool {
	switch {
	case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		return true
	}
	switch b {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// parseLength parses a Content-Length: digits only.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, b := range v {
		if b < '0' || b > '9' {
			return 0, false
		}
		n = n*10 + int64(b-'0')
	}
	return n, true
}

// equalFold compares b with the ASCII string s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// validHost accepts the bytes net/http accepts in a Host header
// (httpguts.ValidHostHeader).
func validHost(h []byte) bool {
	for _, b := range h {
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		case bytes.IndexByte([]byte("!$%&'()*+,-.:;=[]_~"), b) >= 0:
		default:
			return false
		}
	}
	return true
}

// hopByHop is ReverseProxy's list of headers that concern one connection
// only (Transfer-Encoding and Trailer are handled by the caller).
func hopByHop(name []byte) bool {
	for _, h := range [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
		if equalFold(name, h) {
			return true
		}
	}
	return false
}

func dropped(names [][]byte, name []byte) bool {
	for _, n := range names {
		if bytes.EqualFold(n, name) {
			return true
		}
	}
	return false
}
