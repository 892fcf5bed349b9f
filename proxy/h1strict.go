package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The strict HTTP/1 request parser of http listeners, and the gate that
// puts it in front of net/http.
//
// Request smuggling lives in the gap between two parsers that read one
// byte stream differently. gatekeeper closes the gap by refusing, with
// 400, every head two reasonable parsers could read differently: bare CR
// or LF line ends, obsolete line folding, control bytes, whitespace
// before a colon, a Content-Length that is duplicated, signed or a list,
// Content-Length together with Transfer-Encoding, any transfer coding
// but a lone "chunked", a Connection header that names a framing header
// or Host, a missing or repeated Host or one an absolute-form target
// contradicts, a trailer field that frames, routes or identifies. What
// passes has one reading, and the head sent upstream is generated from
// that reading (the fast path) or by net/http's Transport from its own
// (the net/http path), never copied from the client's framing.
//
// net/http's own parser is lenient (it takes bare LF and folds
// continuation lines), so every HTTP/1 connection net/http serves reads
// the client through an h1Gate, which parses the stream with this parser
// and lets a request's bytes through only once its head passed.

// h1Error is a request the strict parser refuses, with the status it
// answers.
type h1Error struct {
	status int
	msg    string
}

func (e *h1Error) Error() string { return e.msg }

var (
	errH1BareLine    = &h1Error{400, "bare CR or LF in a request head"}
	errH1Malformed   = &h1Error{400, "malformed request head"}
	errH1Framing     = &h1Error{400, "ambiguous request framing"}
	errH1Host        = &h1Error{400, "missing, repeated or malformed Host"}
	errH1TooLarge    = &h1Error{431, "request head too large"}
	errH1BadChunking = &h1Error{400, "malformed chunked body"}
)

// scanLineEnds checks b, bytes of a head, for a CR not followed by LF
// or an LF not preceded by CR: every CR and every LF must be part of a
// CRLF. A CR at the very end of b is left for a later call, which sees
// the byte after it. (Counting is vectorised; a byte loop was a fifth of
// the fast path's parsing.)
func scanLineEnds(b []byte) error {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	pairs := bytes.Count(b, crlfCRLF[:2])
	if bytes.Count(b, crlfCRLF[:1]) != pairs || bytes.Count(b, crlfCRLF[1:2]) != pairs {
		return errH1BareLine
	}
	return nil
}

// peekHead returns the bytes of a head (a request's or a response's),
// through its empty line, without consuming them. A bare CR or LF is
// refused as soon as it arrives, not when a timeout ends the wait for a
// CRLFCRLF that will not come; a head that does not fit in br is
// errH1TooLarge.
func peekHead(br *bufio.Reader) ([]byte, error) {
	from := 0 // where a CRLFCRLF may start in what is buffered
	for n := 1; ; {
		_, err := br.Peek(n) // waits for n bytes at most
		b, _ := br.Peek(br.Buffered())
		if i := bytes.Index(b[from:], crlfCRLF); i >= 0 {
			head := b[:from+i+4]
			if lerr := scanLineEnds(head); lerr != nil {
				return nil, lerr
			}
			return head, nil
		}
		if lerr := scanLineEnds(b); lerr != nil {
			return nil, lerr
		}
		if err != nil {
			return nil, err
		}
		if len(b) == br.Size() {
			return nil, errH1TooLarge
		}
		from = max(0, len(b)-3)
		n = len(b) + 1
	}
}

// parseRequestHead reads head (a whole head, its line ends checked) into
// req, refusing what is malformed or ambiguous. req.headers must have
// room from a pool; names and values point into head.
func parseRequestHead(req *h1Request, head []byte) error {
	line, rest := cutLine(head)
	method, target, version, ok := splitRequestLine(line)
	if !ok || len(method) == 0 || !isToken(method) || !validTarget(target) {
		return errH1Malformed
	}
	switch string(version) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		req.http10 = true
	default:
		return errH1Malformed
	}
	req.method, req.target = method, target
	hosts, tes := 0, 0
	for {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break
		}
		name, value, ok := splitHeader(line)
		if !ok {
			return errH1Malformed // obs-fold, a space before the colon, a control byte
		}
		if len(req.headers) == h1MaxHeaders {
			return errH1TooLarge
		}
		switch {
		case equalFold(name, "Host"):
			hosts++
			req.host = value
			if !validHost(value) {
				return errH1Host
			}
		case equalFold(name, "Content-Length"):
			n, ok := parseLength(value)
			if !ok || req.contentLength >= 0 {
				return errH1Framing
			}
			req.contentLength = n
		case equalFold(name, "Transfer-Encoding"):
			tes++
			if !equalFold(value, "chunked") {
				return errH1Framing
			}
			req.chunked = true
		case equalFold(name, "Expect"):
			req.expect = true
		case equalFold(name, "Upgrade"):
			req.upgrade = true
		case equalFold(name, "Connection"):
			if err := req.connectionTokens(value); err != nil {
				return err
			}
		case equalFold(name, "Trailer"):
			// A trailer may not carry what frames, routes or identifies:
			// an upstream that merges trailers into the head would take
			// them as the client's.
			for v := value; len(v) > 0; {
				var tok []byte
				tok, v, _ = bytes.Cut(v, []byte(","))
				if tok = bytes.TrimSpace(tok); len(tok) > 0 && (!validTrailer(tok) || isForwardingHeader(tok)) {
					return errH1Framing
				}
			}
		case equalFold(name, "TE"):
			for v := value; len(v) > 0; {
				var tok []byte
				tok, v, _ = bytes.Cut(v, []byte(","))
				tok, _, _ = bytes.Cut(tok, []byte(";"))
				if equalFold(bytes.TrimSpace(tok), "trailers") {
					req.teTrailers = true
				}
			}
		}
		req.headers = append(req.headers, h1Header{name, value})
	}
	switch {
	case tes > 1, req.chunked && (req.contentLength >= 0 || req.http10):
		return errH1Framing
	case hosts > 1, hosts == 0 && !req.http10, !sameAuthority(req.target, req.host, hosts > 0):
		return errH1Host
	}
	if req.http10 && !req.keepAlive {
		req.closeAfter = true
	}
	return nil
}

// sameAuthority reports whether an absolute-form target names the host
// the Host header does. RFC 9112 has a server ignore Host for the
// target's authority, but not every one does: a request whose two say
// different things is refused, as HAProxy does.
func sameAuthority(target, host []byte, hasHost bool) bool {
	scheme, rest, ok := bytes.Cut(target, []byte("://"))
	if !ok || target[0] == '/' || !isToken(scheme) {
		return true // origin or asterisk form: Host alone names the host
	}
	if i := bytes.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return !hasHost || bytes.EqualFold(rest, host)
}

// connectionTokens reads a Connection header: close, keep-alive and
// upgrade are noted, other names are hop-by-hop headers to drop. Naming
// a framing header or Host is refused: a proxy that honoured it would
// frame the request from a header it no longer forwards.
func (req *h1Request) connectionTokens(value []byte) error {
	for v := value; len(v) > 0; {
		var tok []byte
		tok, v, _ = bytes.Cut(v, []byte(","))
		tok = bytes.TrimSpace(tok)
		switch {
		case len(tok) == 0:
		case !isToken(tok):
			return errH1Malformed
		case equalFold(tok, "close"):
			req.closeAfter = true
		case equalFold(tok, "keep-alive"):
			req.keepAlive = true
		case equalFold(tok, "Content-Length"), equalFold(tok, "Transfer-Encoding"), equalFold(tok, "Host"):
			return errH1Framing
		default:
			req.drop = append(req.drop, tok)
		}
	}
	return nil
}

func isToken(b []byte) bool {
	for _, c := range b {
		if !isTokenChar(c) {
			return false
		}
	}
	return len(b) > 0
}

// validTarget accepts a request target of visible ASCII whose path (up
// to the first "?") holds only whole percent-escapes. net/http refuses
// "/%" or "/a%zz" (url.ParseRequestURI), as other servers may; the fast
// path must not pass upstream a target that the upstream reads otherwise
// than the gate did. A query is left as it comes: net/http parses it
// only when a handler asks, and drops what it cannot read.
func validTarget(t []byte) bool {
	if len(t) == 0 {
		return false
	}
	for _, b := range t {
		if b <= ' ' || b >= 0x7f {
			return false
		}
	}
	path, _, _ := bytes.Cut(t, []byte("?"))
	for i, b := range path {
		if b == '%' && (i+2 >= len(path) || !isHex(path[i+1]) || !isHex(path[i+2])) {
			return false
		}
	}
	return true
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

// h1Gate is the client of a connection net/http serves in HTTP/1: it
// parses the byte stream with the strict parser and releases a request's
// head only once it passed, then its body as framed. After a request
// that asks for an upgrade the stream is passed as it is: serveRequest
// closes the connection unless the upstream switched protocols.
//
// A refused head is answered by the gate itself, with 400 (or 431) and
// an end of stream, so that net/http closes having seen none of it; but
// only once no response is under way (net/http reads a pipelined head
// while it still serves the request before), so that the answer comes
// after the one before it. A malformed body fails the body's read, which
// the reverse proxy's error handler answers (see answer).
type h1Gate struct {
	net.Conn
	br      *bufio.Reader
	state   gateState
	release int   // validated bytes at the front of br not yet read
	left    int64 // body or chunk bytes still to pass
	pending []byte
	req     h1Request
	hl      []h1Header
	refused prometheus.Counter      // counts refused requests; may be nil
	failure atomic.Pointer[h1Error] // why the stream was refused

	active   atomic.Bool   // net/http serves a request (StateActive)
	aborted  atomic.Bool   // the read deadline is in the past: net/http cuts pending reads short
	answered atomic.Bool   // the refusal was answered
	wake     chan struct{} // pokes a refusal waiting for the response before it
}

type gateState int

const (
	gateHead gateState = iota
	gateBody
	gateChunkSize
	gateChunkData
	gateChunkEnd
	gateTrailer
	gateOpaque
)

// newH1Gate returns c behind the gate, with pending (bytes already read
// from c) first.
func newH1Gate(c net.Conn, pending []byte, refused prometheus.Counter) *h1Gate {
	g := &h1Gate{Conn: c, pending: pending, hl: make([]h1Header, 0, 32), refused: refused, wake: make(chan struct{}, 1)}
	g.br = bufio.NewReaderSize(gateSource{g}, h1RequestHeadMax)
	return g
}

// gateSource is what the gate's reader reads: pending bytes, then c.
type gateSource struct{ g *h1Gate }

func (s gateSource) Read(b []byte) (int, error) {
	if len(s.g.pending) > 0 {
		n := copy(b, s.g.pending)
		s.g.pending = s.g.pending[n:]
		return n, nil
	}
	return s.g.Conn.Read(b)
}

func (g *h1Gate) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for g.release == 0 {
		if g.failure.Load() != nil {
			return g.refuse()
		}
		head := g.state == gateHead
		if err := g.advance(); err != nil {
			if g.failure.Load() != nil && head {
				return g.refuse()
			}
			return 0, err
		}
	}
	n, err := g.br.Read(b[:min(len(b), g.release)])
	g.release -= n
	return n, err
}

// refuse answers the refusal once no response is under way, and ends the
// stream.
func (g *h1Gate) refuse() (int, error) {
	for g.active.Load() {
		if g.aborted.Load() {
			return 0, os.ErrDeadlineExceeded // as net/http's abortPendingRead expects
		}
		<-g.wake
	}
	if !g.answered.Swap(true) {
		g.Conn.Write(h1ErrorResponse(g.failure.Load()))
	}
	return 0, io.EOF
}

// answer reports whether the gate refused a body, which the caller then
// answers, with the status it returns. (The body's read error reaches
// the reverse proxy's error handler as itself or as a cancelled context:
// net/http cancels the request on any read error.)
func (g *h1Gate) answer() (int, bool) {
	if g == nil {
		return 0, false
	}
	f := g.failure.Load()
	if f == nil || g.answered.Swap(true) {
		return 0, false
	}
	return f.status, true
}

// connState follows net/http's view of the connection.
func (g *h1Gate) connState(st http.ConnState) {
	g.active.Store(st == http.StateActive)
	g.poke()
}

// SetReadDeadline notes whether the deadline is in the past, net/http's
// way to cut a pending read short (abortPendingRead), until it sets
// another. The note lasts as the deadline does, as a socket's would: net/http
// may abort its background read before that read's goroutine has even
// started, and a read that began after the abort must end too, or
// net/http waits for it forever with the refusal never answered.
func (g *h1Gate) SetReadDeadline(t time.Time) error {
	err := g.Conn.SetReadDeadline(t)
	g.aborted.Store(!t.IsZero() && t.Before(time.Now()))
	g.poke()
	return err
}

func (g *h1Gate) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// advance validates the next piece of the stream and sets release to its
// length.
func (g *h1Gate) advance() error {
	switch g.state {
	case gateOpaque:
		if _, err := g.br.Peek(1); err != nil {
			return err
		}
		g.release = g.br.Buffered()
		return nil
	case gateHead:
		head, err := peekHead(g.br)
		if err != nil {
			return g.fail(err)
		}
		g.req = h1Request{contentLength: -1, headers: g.hl[:0], drop: g.req.drop[:0]}
		if err := parseRequestHead(&g.req, head); err != nil {
			return g.fail(err)
		}
		g.release = len(head)
		switch {
		case g.req.upgrade:
			g.state = gateOpaque
		case g.req.chunked:
			g.state = gateChunkSize
		case g.req.contentLength > 0:
			g.state, g.left = gateBody, g.req.contentLength
		}
		return nil
	case gateBody, gateChunkData:
		if _, err := g.br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		n := int(min(int64(g.br.Buffered()), g.left))
		g.release, g.left = n, g.left-int64(n)
		switch {
		case g.left > 0:
		case g.state == gateBody:
			g.state = gateHead
		default:
			g.state = gateChunkEnd
		}
		return nil
	case gateChunkEnd:
		crlf, err := g.br.Peek(2)
		if err != nil {
			return err
		}
		if crlf[0] != '\r' || crlf[1] != '\n' {
			return g.fail(errH1BadChunking)
		}
		g.release, g.state = 2, gateChunkSize
		return nil
	case gateChunkSize:
		line, err := readLine(g.br)
		if err != nil {
			return g.fail(err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return g.fail(errH1BadChunking)
		}
		g.release = len(line)
		if size == 0 {
			g.state = gateTrailer
		} else {
			g.state, g.left = gateChunkData, size
		}
		return nil
	case gateTrailer:
		line, err := readLine(g.br)
		if err != nil {
			return g.fail(err)
		}
		if len(line) > 2 {
			name, _, ok := splitHeader(line[:len(line)-2])
			if !ok || !validTrailer(name) || isForwardingHeader(name) {
				return g.fail(errH1BadChunking)
			}
		} else {
			g.state = gateHead
		}
		g.release = len(line)
		return nil
	}
	return errH1Malformed
}

// fail ends the stream: a malformed request cannot be resynchronised.
func (g *h1Gate) fail(err error) error {
	if errors.Is(err, errBadResponse) {
		err = errH1BadChunking
	}
	var herr *h1Error
	if errors.As(err, &herr) {
		g.failure.Store(herr)
		if g.refused != nil {
			g.refused.Inc()
		}
	}
	return err
}
