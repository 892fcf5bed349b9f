package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// rawUpstream is an HTTP upstream that answers each request with what
// answer returns, byte for byte, and records the requests it parsed.
type rawUpstream struct {
	addr string
	mu   sync.Mutex
	seen []*http.Request
	body [][]byte
	// conns counts the connections accepted.
	conns int
}

func newRawUpstream(t *testing.T, answer func(r *http.Request, body []byte) string) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		u.mu.Lock()
		for _, c := range open {
			c.Close()
		}
		u.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.conns++
			open = append(open, c)
			u.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, _ := io.ReadAll(r.Body)
					u.mu.Lock()
					u.seen = append(u.seen, r)
					u.body = append(u.body, body)
					u.mu.Unlock()
					resp := answer(r, body)
					if resp == "" { // close without answering
						return
					}
					if _, err := io.WriteString(c, resp); err != nil {
						return
					}
					if strings.Contains(resp, "\r\nConnection: close\r\n") || strings.HasPrefix(resp, "HTTP/1.0") ||
						!strings.Contains(resp, "Content-Length") && !strings.Contains(resp, "chunked") && !strings.HasPrefix(resp, "HTTP/1.1 204") &&
							!strings.HasPrefix(resp, "HTTP/1.1 304") && r.Method != "HEAD" {
						return
					}
				}
			}()
		}
	}()
	return u
}

func (u *rawUpstream) last() (*http.Request, []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return nil, nil
	}
	return u.seen[len(u.seen)-1], u.body[len(u.body)-1]
}

func (u *rawUpstream) count() (requests, conns int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen), u.conns
}

func ok(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// h1Proxy is an http listener in front of up, and a client of it.
func h1Proxy(t *testing.T, up *rawUpstream) *proxyTest {
	t.Helper()
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	return startProxy(t, Options{Listeners: []Listener{
		{Name: "web", Addr: "127.0.0.1:0", Mode: ModeHTTP, Routes: []Route{{Account: "acct", Upstream: "http://" + up.addr}}},
	}, Engine: p.engine, TLS: tlsConfig(t)})
}

// h1Client is a TLS connection that speaks HTTP/1.1 by hand.
type h1Client struct {
	t  *testing.T
	tc *tls.Conn
	br *bufio.Reader
}

func dialH1(t *testing.T, px *proxyTest, alpn ...string) *h1Client {
	t.Helper()
	if alpn == nil {
		alpn = []string{"http/1.1"}
	}
	tc, _, err := dialTLS(t, ipAllowed, px.addr("web"), "localhost", alpn...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	return &h1Client{t: t, tc: tc, br: bufio.NewReader(tc)}
}

func (c *h1Client) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.tc, raw); err != nil {
		c.t.Fatal(err)
	}
}

// response reads one response to a request of method.
func (c *h1Client) response(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read body: %v", err)
	}
	resp.Body.Close()
	return resp, string(b)
}

func (c *h1Client) closed() bool {
	c.tc.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := c.br.ReadByte()
	return err != nil
}

func TestHTTP1Exchanges(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 5000) // 80 KB, more than any buffer
	up := newRawUpstream(t, func(r *http.Request, body []byte) string {
		switch r.URL.Path {
		case "/echo":
			return ok(string(body))
		case "/big":
			return ok(big)
		case "/chunked":
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Sum: 12\r\n\r\n"
		case "/head":
			return "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
		case "/nocontent":
			return "HTTP/1.1 204 No Content\r\n\r\n"
		case "/early":
			return "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + ok("after hints")
		case "/hop":
			return "HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
		}
		return ok("path " + r.URL.Path)
	})
	px := h1Proxy(t, up)
	c := dialH1(t, px)

	// A GET: the upstream sees the request as ReverseProxy would send it.
	c.send("GET /a?x=1 HTTP/1.1\r\nHost: app.example\r\nConnection: X-Hop, keep-alive\r\nX-Hop: drop me\r\n" +
		"Proxy-Authorization: secret\r\nKeep-Alive: 5\r\nX-Forwarded-For: 10.9.9.9\r\nForwarded: for=10.9.9.9\r\nX-Other: kept\r\nTE: trailers, deflate\r\n\r\n")
	resp, body := c.response("GET")
	if resp.StatusCode != 200 || body != "path /a" {
		t.Fatalf("GET: %s %q", resp.Status, body)
	}
	r, _ := up.last()
	wantHeaders := map[string]string{
		"X-Other": "kept", "X-Hop": "", "Proxy-Authorization": "", "Keep-Alive": "", "Connection": "",
		"X-Forwarded-For": ipAllowed, "X-Forwarded-Host": "app.example", "X-Forwarded-Proto": "https",
		"Forwarded": `for=` + ipAllowed + `;host="app.example";proto=https`, "Te": "trailers",
	}
	for k, v := range wantHeaders {
		if got := r.Header.Get(k); got != v {
			t.Errorf("upstream got %s: %q, want %q", k, got, v)
		}
	}
	if r.Host != up.addr || r.URL.RequestURI() != "/a?x=1" {
		t.Errorf("upstream got Host %q, target %q", r.Host, r.URL.RequestURI())
	}

	// A POST with a small body and one larger than every buffer; a large
	// response; all on the same connection.
	for _, b := range []string{"small body", big} {
		c.send(fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(b), b))
		if resp, body := c.response("POST"); resp.StatusCode != 200 || body != b {
			t.Fatalf("POST of %d bytes: %s, %d bytes back", len(b), resp.Status, len(body))
		}
	}
	c.send("GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
	if _, body := c.response("GET"); body != big {
		t.Fatalf("large response: %d bytes, want %d", len(body), len(big))
	}

	// Chunked passes through with its trailer.
	c.send("GET /chunked HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, body = c.response("GET")
	if body != "hello, world" || resp.Trailer.Get("X-Sum") != "12" {
		t.Errorf("chunked: %q, trailer %v", body, resp.Trailer)
	}

	// No body after HEAD, 204; interim answers are passed on.
	c.send("HEAD /head HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := c.response("HEAD"); resp.ContentLength != 1234 || body != "" {
		t.Errorf("HEAD: length %d, body %q", resp.ContentLength, body)
	}
	c.send("DELETE /nocontent HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, _ := c.response("DELETE"); resp.StatusCode != 204 {
		t.Errorf("204: %s", resp.Status)
	}
	c.send("GET /early HTTP/1.1\r\nHost: h\r\n\r\n")
	line, _ := c.br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 103") {
		t.Errorf("interim response: %q", line)
	}
	for line != "\r\n" {
		line, _ = c.br.ReadString('\n')
	}
	if _, body := c.response("GET"); body != "after hints" {
		t.Errorf("after 103: %q", body)
	}

	// Hop-by-hop response headers stay behind.
	c.send("GET /hop HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, _ = c.response("GET")
	if resp.Header.Get("X-Secret") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-Kept") != "yes" {
		t.Errorf("response headers: %v", resp.Header)
	}

	// Two requests in one write get two answers, in order.
	c.send("GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n\r\n")
	_, one := c.response("GET")
	_, two := c.response("GET")
	if one != "path /one" || two != "path /two" {
		t.Errorf("pipelined: %q, %q", one, two)
	}

	// Connection: close closes after the response.
	c.send("GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	if resp, _ := c.response("GET"); !resp.Close {
		t.Error("no Connection: close on the last response")
	}
	if !c.closed() {
		t.Error("connection still open after Connection: close")
	}
	if n, conns := up.count(); conns != 1 {
		t.Errorf("%d requests over %d upstream connections, want one", n, conns)
	}
}

// TestHTTP1Handoff checks that what the fast path does not serve reaches
// net/http, with nothing lost, and is answered as before.
func TestHTTP1Handoff(t *testing.T) {
	up := newRawUpstream(t, func(r *http.Request, body []byte) string {
		return ok(fmt.Sprintf("%s %s %q", r.Method, r.Proto, body))
	})
	px := h1Proxy(t, up)
	// What is well formed net/http answers as before the fast path
	// (OPTIONS * is answered by the server itself); what two parsers
	// could read differently is refused by the strict parser with 400
	// (431 for a head over its buffer) and the connection closed.
	for _, tc := range []struct {
		name, req, method string
		status            int
		body              string
		again             bool // the connection serves another request
	}{
		{"chunked request", "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "POST", 200, `POST HTTP/1.1 "abc"`, true},
		{"expect 100-continue", "PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", "PUT", 200, `PUT HTTP/1.1 "hi"`, true},
		{"HTTP/1.0", "GET /x HTTP/1.0\r\nHost: h\r\n\r\n", "GET", 200, `GET HTTP/1.1 ""`, false},
		{"obsolete folding", "GET /x HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", "GET", 400, "", false},
		{"head over the buffer", "GET /x HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 20000) + "\r\n\r\n", "GET", 431, "", false},
		{"CL and TE both", "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "POST", 400, "", false},
		{"absolute form", "GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n", "GET", 200, `GET HTTP/1.1 ""`, true},
		{"HTTP/1.0 keep-alive", "GET /x HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", "GET", 200, `GET HTTP/1.1 ""`, true},
		{"two lengths", "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "POST", 400, "", false},
		{"no Host", "GET /x HTTP/1.1\r\n\r\n", "GET", 400, "", false},
		{"bad Host", "GET /x HTTP/1.1\r\nHost: a b\r\n\r\n", "GET", 400, "", false},
		{"asterisk target", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS", 200, "", true},
		// net/http refuses a path with a broken escape, and leaves a
		// query to its handler.
		{"lone percent in the path", "GET /% HTTP/1.1\r\nHost: h\r\n\r\n", "GET", 400, "", false},
		{"bad escape in the path", "GET /a%zz?q=1 HTTP/1.1\r\nHost: h\r\n\r\n", "GET", 400, "", false},
		{"percent in the query", "GET /a%2Fb?q=100% HTTP/1.1\r\nHost: h\r\n\r\n", "GET", 200, `GET HTTP/1.1 ""`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialH1(t, px)
			c.send(tc.req)
			resp, body := c.response(tc.method)
			for resp.StatusCode == 100 {
				resp, body = c.response(tc.method)
			}
			if resp.StatusCode != tc.status || body != tc.body && tc.status == 200 {
				t.Errorf("%s %q, want %d %q", resp.Status, body, tc.status, tc.body)
			}
			if !tc.again {
				return
			}
			// The connection stays with net/http, and works.
			c.send("GET /again HTTP/1.1\r\nHost: h\r\n\r\n")
			if resp, body := c.response("GET"); resp.StatusCode != 200 || body != `GET HTTP/1.1 ""` {
				t.Errorf("next request: %s %q", resp.Status, body)
			}
		})
	}
}

func TestHTTP1UpstreamTrouble(t *testing.T) {
	var mu sync.Mutex
	n := 0
	up := newRawUpstream(t, func(r *http.Request, body []byte) string {
		mu.Lock()
		defer mu.Unlock()
		n++
		switch r.URL.Path {
		case "/garbage":
			return "HTTP/1.1 2OO OK\r\n\r\n"
		case "/until-close":
			return "HTTP/1.1 200 OK\r\n\r\nall of it"
		case "/then-close":
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
		case "/drop":
			return ""
		}
		return ok(r.URL.Path)
	})
	px := h1Proxy(t, up)

	// A body delimited by the upstream's close: passed on, then the
	// client connection closes too.
	c := dialH1(t, px)
	c.send("GET /until-close HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := c.response("GET"); body != "all of it" || !resp.Close {
		t.Errorf("close-delimited: %q, close %v", body, resp.Close)
	}

	// An upstream that closes after a framed answer: the client keeps its
	// connection and the next request gets a new upstream connection.
	c = dialH1(t, px)
	c.send("GET /then-close HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := c.response("GET"); body != "ok" || resp.Close {
		t.Errorf("then-close: %q, close %v", body, resp.Close)
	}
	c.send("GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
	if _, body := c.response("GET"); body != "/next" {
		t.Errorf("after the upstream closed: %q", body)
	}

	// A malformed answer or none: 502 and the connection closes.
	for _, path := range []string{"/garbage", "/drop"} {
		c := dialH1(t, px)
		c.send("GET " + path + " HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp, _ := c.response("GET"); resp.StatusCode != 502 {
			t.Errorf("%s: %s, want 502", path, resp.Status)
		}
		if !c.closed() {
			t.Errorf("%s: connection still open", path)
		}
	}
	if got := px.counter("gatekeeper_connection_errors_total", "listener", "web", "reason", "upstream"); got < 2 {
		t.Errorf("upstream errors counted: %v", got)
	}
}

// TestHTTP1StaleUpstream checks that a request on an upstream connection
// the upstream closed while it was idle is sent again on a new one.
func TestHTTP1StaleUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				r, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.WriteString(c, ok("first on its connection: "+r.URL.Path))
				// then close, as an upstream's keep-alive timeout would
			}()
		}
	}()
	up := &rawUpstream{addr: ln.Addr().String()}
	px := h1Proxy(t, up)
	c := dialH1(t, px)
	// Back to back, the close may come too late to be seen: a GET is sent
	// again. After a pause it is seen before anything is sent, so even a
	// POST, which is never sent twice, goes on a new connection.
	for _, tc := range []struct {
		method, path string
		pause        time.Duration
	}{{"GET", "/1", 0}, {"GET", "/2", 0}, {"POST", "/3", 200 * time.Millisecond}, {"POST", "/4", 200 * time.Millisecond}} {
		time.Sleep(tc.pause)
		c.send(tc.method + " " + tc.path + " HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
		if resp, body := c.response(tc.method); resp.StatusCode != 200 || body != "first on its connection: "+tc.path {
			t.Errorf("%s %s: %s %q", tc.method, tc.path, resp.Status, body)
		}
	}
}

// TestHTTP1H2 checks that an HTTP/2 client still gets net/http.
func TestHTTP1H2(t *testing.T) {
	up := newRawUpstream(t, func(r *http.Request, body []byte) string { return ok("hi") })
	px := h1Proxy(t, up)
	c := dialH1(t, px, "h2")
	if p := c.tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q", p)
	}
	c.send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	// The server's SETTINGS frame comes back: an HTTP/2 server.
	var frame [9]byte
	if _, err := io.ReadFull(c.tc, frame[:]); err != nil || frame[3] != 0x4 {
		t.Errorf("no SETTINGS frame: % x, %v", frame, err)
	}
}

// TestHTTP1Split feeds a request a byte at a time: the head is found
// whatever the reads look like.
func TestHTTP1Split(t *testing.T) {
	up := newRawUpstream(t, func(r *http.Request, body []byte) string { return ok(string(body)) })
	px := h1Proxy(t, up)
	c := dialH1(t, px)
	req := "POST /s HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nabcde"
	for i := range len(req) {
		c.send(req[i : i+1])
		time.Sleep(time.Millisecond)
	}
	if _, body := c.response("POST"); body != "abcde" {
		t.Errorf("got %q", body)
	}
}

func BenchmarkHTTP1Parse(b *testing.B) {
	req := "GET /api/v1/things?x=1 HTTP/1.1\r\nHost: app.example.com\r\nUser-Agent: desktop/1.0\r\nAccept: application/json\r\n" +
		"Accept-Encoding: gzip\r\nAuthorization: Bearer abcdefghijklmnopqrstuvwxyz\r\nConnection: keep-alive\r\n\r\n"
	br := bufio.NewReaderSize(nil, h1RequestHeadMax)
	h := &h1conn{}
	raw := []byte(req)
	rd := bytes.NewReader(raw)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(raw)
		br.Reset(rd)
		r, err := h.readRequestHead(br)
		if err != nil {
			b.Fatal(err)
		}
		h.releaseRequest(r)
	}
}

// FuzzHTTP1Head feeds arbitrary heads to the fast path's parser: it
// never panics, and whatever it accepts it could forward without letting
// a line break or a second message through.
func FuzzHTTP1Head(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close, X-A\r\nX-A: 1\r\nTE: trailers\r\n\r\nabc",
		"GET /x HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET /x HTTP/1.0\r\n\r\n",
		"GET http://x/ HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(b), h1RequestHeadMax)
		h := &h1conn{}
		req, err := h.readRequestHead(br)
		if err != nil {
			return
		}
		defer h.releaseRequest(req)
		if req.contentLength < -1 {
			t.Fatalf("accepted %+v", req)
		}
		for _, part := range append([][]byte{req.method, req.target, req.host}, func() (out [][]byte) {
			for _, hd := range req.headers {
				out = append(out, hd.name, hd.value)
			}
			return out
		}()...) {
			if bytes.ContainsAny(part, "\r\n\x00") {
				t.Fatalf("accepted a line break or NUL in %q", part)
			}
		}
	})
}

// TestHTTP1NoReplay: a request the upstream received on a kept connection
// and then dropped without an answer is sent again only if it is
// idempotent, as http.Transport does; a POST that may have been acted on
// gets a 502, and the upstream sees it once.
func TestHTTP1NoReplay(t *testing.T) {
	up := newRawUpstream(t, func(r *http.Request, body []byte) string {
		if r.URL.Path == "/drop" {
			return "" // close without answering
		}
		return ok(r.URL.Path)
	})
	px := h1Proxy(t, up)
	count := func(method string) int {
		up.mu.Lock()
		defer up.mu.Unlock()
		n := 0
		for _, r := range up.seen {
			if r.URL.Path == "/drop" && r.Method == method {
				n++
			}
		}
		return n
	}
	for _, tc := range []struct {
		method, req string
		want        int // times the upstream sees it
	}{
		{"POST", "POST /drop HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi", 1},
		{"GET", "GET /drop HTTP/1.1\r\nHost: h\r\n\r\n", 2},
	} {
		c := dialH1(t, px)
		c.send("GET /first HTTP/1.1\r\nHost: h\r\n\r\n") // the upstream connection is kept
		if _, body := c.response("GET"); body != "/first" {
			t.Fatalf("first request: %q", body)
		}
		c.send(tc.req)
		if resp, _ := c.response(tc.method); resp.StatusCode != http.StatusBadGateway {
			t.Errorf("%s: %s, want 502", tc.method, resp.Status)
		}
		if n := count(tc.method); n != tc.want {
			t.Errorf("%s /drop reached the upstream %d times, want %d", tc.method, n, tc.want)
		}
	}
}
