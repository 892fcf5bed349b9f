package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The request-smuggling corpus: the published families (CL.TE, TE.CL,
// TE.TE obfuscations, duplicate, signed and comma-joined Content-Length,
// obs-fold, bare LF and CR, NUL and control bytes, absolute-form targets,
// headers nominated by Connection, HTTP/1.0 keep-alive, pipelining, chunk
// extensions and trailers, Expect and Upgrade), sent raw over TLS to the
// real binary in front of a recording upstream.
//
// The invariant, checked on everything the upstream received: no request
// carries forwarding headers the client chose, and no request reaches it
// that the proxy did not itself see as one. Every case's own requests go
// to /cN/…; the smuggled request in a body goes to /smuggled with the
// client's X-Forwarded-For of forgedAddr. The cases' expectations (how
// many requests the upstream gets, the statuses the client reads) pin the
// answers down further.

// forgedAddr is the address a client forges in forwarding headers.
const forgedAddr = "10.6.6.6"

// smuggled is a request hidden in a body.
const smuggled = "GET /smuggled HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: " + forgedAddr + "\r\n\r\n"

type smuggleCase struct {
	name string
	raw  string // %s is the case's path prefix, /cN
	// forwarded is how many of the case's requests the upstream must
	// get; statuses what the client must read, in order (then the
	// connection may close).
	forwarded int
	statuses  []int
	// clientCheck, if set, checks the raw bytes the client read.
	clientCheck func(raw string) error
	// fastOnly says the statuses are the fast path's: net/http's client
	// takes a bare LF in a response head, and regenerates the head.
	fastOnly bool
}

func cl(body string) string { return strconv.Itoa(len(body)) }

var smuggleCorpus = []smuggleCase{
	// The case of the report: Connection hides the framing header.
	{"Connection: Content-Length", "POST %s/p HTTP/1.1\r\nHost: h\r\nConnection: Content-Length\r\nContent-Length: " + cl(smuggled) + "\r\n\r\n" + smuggled, 0, []int{400}, nil, false},
	{"Connection: Transfer-Encoding", "POST %s/p HTTP/1.1\r\nHost: h\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 0, []int{400}, nil, false},
	{"Connection: Host", "GET %s/p HTTP/1.1\r\nHost: h\r\nConnection: Host\r\n\r\n", 0, []int{400}, nil, false},
	{"Connection: X-Forwarded-For", "GET %s/p HTTP/1.1\r\nHost: h\r\nConnection: X-Forwarded-For\r\nX-Forwarded-For: " + forgedAddr + "\r\n\r\n", 1, []int{200}, nil, false},
	{"Connection: close, X-Real-IP", "GET %s/p HTTP/1.1\r\nHost: h\r\nConnection: close, X-Real-IP\r\nX-Real-IP: " + forgedAddr + "\r\n\r\n", 1, []int{200}, nil, false},
	// CL.TE and TE.CL.
	{"CL.TE", "POST %s/p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 0, []int{400}, nil, false},
	{"TE.CL", "POST %s/p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" + fmt.Sprintf("%x", len(smuggled)) + "\r\n" + smuggled + "\r\n0\r\n\r\n", 0, []int{400}, nil, false},
	// TE.TE: an obfuscated Transfer-Encoding one parser takes and one
	// ignores.
	{"TE xchunked", "POST %s/p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled, 0, []int{400}, nil, false},
	{"TE space before colon", "POST %s/p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled, 0, []int{400}, nil, false},
	{"TE twice", "POST %s/p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n" + smuggled, 0, []int{400}, nil, false},
	{"TE list", "POST %s/p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled, 0, []int{400}, nil, false},
	{"TE vertical tab", "POST %s/p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n" + smuggled, 0, []int{400}, nil, false},
	{"TE leading space line", "POST %s/p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 0, []int{400}, nil, false},
	{"TE on HTTP/1.0", "POST %s/p HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 0, []int{400}, nil, false},
	{"TE mixed case", "POST %s/p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ChUnKeD\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 1, []int{200}, nil, false},
	// Content-Length.
	{"CL duplicate equal", "POST %s/p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 0, []int{400}, nil, false},
	{"CL duplicate different", "POST %s/p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: " + cl(smuggled) + "\r\n\r\n" + smuggled, 0, []int{400}, nil, false},
	{"CL signed", "POST %s/p HTTP/1.1\r\nHost: h\r\nContent-Length: +" + cl(smuggled) + "\r\n\r\n" + smuggled, 0, []int{400}, nil, false},
	{"CL negative", "POST %s/p HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n" + smuggled, 0, []int{400}, nil, false},
	{"CL comma-joined", "POST %s/p HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc", 0, []int{400}, nil, false},
	{"CL hex", "POST %s/p HTTP/1.1\r\nHost: h\r\nContent-Length: 0x3\r\n\r\nabc", 0, []int{400}, nil, false},
	{"CL space before colon", "POST %s/p HTTP/1.1\r\nHost: h\r\nContent-Length : " + cl(smuggled) + "\r\n\r\n" + smuggled, 0, []int{400}, nil, false},
	{"CL with body", "POST %s/p HTTP/1.1\r\nHost: h\r\nContent-Length: " + cl(smuggled) + "\r\n\r\n" + smuggled, 1, []int{200}, nil, false},
	// Line folding and line ends.
	{"obs-fold", "GET %s/p HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 0, []int{400}, nil, false},
	{"obs-fold of X-Forwarded-For", "GET %s/p HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.1\r\n\t" + forgedAddr + "\r\n\r\n", 0, []int{400}, nil, false},
	{"bare LF", "GET %s/p HTTP/1.1\nHost: h\n\n", 0, []int{400}, nil, false},
	{"bare LF in a header", "GET %s/p HTTP/1.1\r\nHost: h\r\nX-A: a\nX-Forwarded-For: " + forgedAddr + "\r\n\r\n", 0, []int{400}, nil, false},
	{"bare CR", "GET %s/p HTTP/1.1\r\nHost: h\r\nX-A: a\rX-Forwarded-For: " + forgedAddr + "\r\n\r\n", 0, []int{400}, nil, false},
	{"bare CR in the request line", "GET %s/p HTTP/1.1\rHost: h\r\n\r\n", 0, []int{400}, nil, false},
	// NUL and control bytes.
	{"NUL in a value", "GET %s/p HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", 0, []int{400}, nil, false},
	{"control byte in a name", "GET %s/p HTTP/1.1\r\nHost: h\r\nX\x01A: b\r\n\r\n", 0, []int{400}, nil, false},
	{"NUL in the target", "GET %s/p\x00 HTTP/1.1\r\nHost: h\r\n\r\n", 0, []int{400}, nil, false},
	{"DEL in a value", "GET %s/p HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb\r\n\r\n", 0, []int{400}, nil, false},
	{"two spaces in the request line", "GET  %s/p HTTP/1.1\r\nHost: h\r\n\r\n", 0, []int{400}, nil, false},
	{"HTTP/2.0 version", "GET %s/p HTTP/2.0\r\nHost: h\r\n\r\n", 0, []int{400}, nil, false},
	// Host.
	{"no Host", "GET %s/p HTTP/1.1\r\n\r\n", 0, []int{400}, nil, false},
	{"two Hosts", "GET %s/p HTTP/1.1\r\nHost: h\r\nHost: evil\r\n\r\n", 0, []int{400}, nil, false},
	// Absolute form.
	{"absolute-form target", "GET http://h%s/p HTTP/1.1\r\nHost: h\r\n\r\n", 1, []int{200}, nil, false},
	{"absolute-form other host", "GET http://evil%s/p HTTP/1.1\r\nHost: h\r\n\r\n", 0, []int{400}, nil, false},
	// Forged forwarding headers.
	{"forged forwarding headers", "GET %s/p HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: " + forgedAddr + "\r\nForwarded: for=" + forgedAddr +
		"\r\nX-Real-IP: " + forgedAddr + "\r\nX-Forwarded-Proto: http\r\nx-forwarded-for: " + forgedAddr + "\r\n\r\n", 1, []int{200}, nil, false},
	// Keep-alive and pipelining.
	{"HTTP/1.0 keep-alive", "GET %[1]s/a HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\nGET %[1]s/b HTTP/1.1\r\nHost: h\r\n\r\n", 2, []int{200, 200}, nil, false},
	{"HTTP/1.0 closes", "GET %[1]s/a HTTP/1.0\r\nHost: h\r\n\r\nGET %[1]s/b HTTP/1.1\r\nHost: h\r\n\r\n", 1, []int{200}, nil, false},
	{"pipelined", "GET %[1]s/a HTTP/1.1\r\nHost: h\r\n\r\nPOST %[1]s/b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET %[1]s/c HTTP/1.1\r\nHost: h\r\n\r\n", 3, []int{200, 200, 200}, nil, false},
	{"pipelined then malformed", "GET %[1]s/a HTTP/1.1\r\nHost: h\r\n\r\nGET %[1]s/b HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 1, []int{200, 400}, nil, false},
	{"pipelined after chunked", "POST %[1]s/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET %[1]s/b HTTP/1.1\r\nHost: h\r\n\r\n", 2, []int{200, 200}, nil, false},
	{"pipelined after chunked, then bare LF", "POST %[1]s/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET %[1]s/b HTTP/1.1\nHost: h\n\n", 1, []int{200, 400}, nil, false},
	// Chunk extensions and trailers.
	{"chunk extension", "POST %s/p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=\"x\"\r\nabc\r\n0\r\n\r\n", 1, []int{200}, nil, false},
	{"chunk extension with bare CR", "POST %s/p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;a\rb\r\nabc\r\n0\r\n\r\n", 0, []int{400}, nil, false},
	{"chunk size with bare LF", "POST %s/p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 0, nil, nil, false},
	{"trailer", "POST %s/p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Check\r\n\r\n3\r\nabc\r\n0\r\nX-Check: 1\r\n\r\n", 1, []int{200}, nil, false},
	{"trailer announcing X-Forwarded-For", "POST %s/p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Forwarded-For\r\n\r\n3\r\nabc\r\n0\r\nX-Forwarded-For: " + forgedAddr + "\r\n\r\n", 0, []int{400}, nil, false},
	{"trailer carrying Content-Length", "POST %s/p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nContent-Length: 99\r\n\r\n", 0, nil, nil, false},
	// Expect and Upgrade.
	{"Expect 100-continue", "POST %s/p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc", 1, []int{100, 200}, nil, false},
	{"Expect unknown", "POST %s/p HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\nContent-Length: 3\r\n\r\nabc", 0, []int{417}, nil, false},
	{"Upgrade refused, then a request", "GET %s/p HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n" + smuggled, 1, []int{200}, nil, false},
	// What the upstream answers.
	{"response chunk extensions and trailers", "GET %s/chunked HTTP/1.1\r\nHost: h\r\n\r\n", 1, []int{200}, func(raw string) error {
		if strings.Contains(raw, ";ext") || strings.Contains(raw, "Content-Length: 99") {
			return fmt.Errorf("the client got the upstream's chunk extension or a framing trailer")
		}
		return nil
	}, false},
	{"response with bare LF", "GET %s/barelf HTTP/1.1\r\nHost: h\r\n\r\n", 1, []int{502}, nil, true},
}

// caseRE finds the case of a path.
var caseRE = regexp.MustCompile(`/c([0-9]+)/`)

// recordingUpstream answers every request it can parse and keeps it.
type recordingUpstream struct {
	ln         net.Listener
	wg         sync.WaitGroup
	mu         sync.Mutex
	reqs       []*http.Request
	incomplete []*http.Request // heads whose body never ended
	bad        []string        // what the upstream could not parse as requests
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &recordingUpstream{ln: ln}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.wg.Add(1)
			go u.serve(c)
		}
	}()
	return u
}

func (u *recordingUpstream) serve(c net.Conn) {
	defer u.wg.Done()
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		if _, err := br.Peek(1); err != nil {
			return
		}
		r, err := http.ReadRequest(br)
		if err != nil {
			rest, _ := br.Peek(br.Buffered())
			u.mu.Lock()
			u.bad = append(u.bad, fmt.Sprintf("%v: %q", err, rest))
			u.mu.Unlock()
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			// Cut off mid-body: the proxy gave up on a request whose
			// body it found malformed. Not a request the upstream may
			// act on, and no answer is due.
			u.mu.Lock()
			u.incomplete = append(u.incomplete, r)
			u.mu.Unlock()
			return
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, r)
		u.mu.Unlock()
		var answer string
		switch {
		case strings.HasSuffix(r.URL.Path, "/chunked"):
			answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\nContent-Length: 99\r\n\r\n"
		case strings.HasSuffix(r.URL.Path, "/barelf"):
			answer = "HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nhi"
		default:
			answer = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
		if _, err := io.WriteString(c, answer); err != nil {
			return
		}
		if r.Header.Get("Upgrade") != "" {
			return
		}
	}
}

// stop waits for every connection to end (gatekeeper stopped first), so
// that everything received is recorded.
func (u *recordingUpstream) stop() {
	u.ln.Close()
	u.wg.Wait()
}

// smuggleOutcome is what one case did.
type smuggleOutcome struct {
	statuses []int
	raw      string
	err      error
}

// runSmuggleCase sends a case's bytes from ipAllowed over TLS and reads
// want responses (interim ones included), or all until the connection
// closes when want is 0. Whether anything else reached the upstream is
// for the upstream's record to say.
func runSmuggleCase(addr, raw string, want int) smuggleOutcome {
	c, _, err := tlsDial(ipAllowed, addr, "h", nil)
	if err != nil {
		return smuggleOutcome{err: err}
	}
	defer c.Close()
	// A safety net against a hang: each answer comes at once or never.
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return smuggleOutcome{err: err}
	}
	var rec bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &rec))
	var o smuggleOutcome
	method := strings.SplitN(raw, " ", 2)[0]
	for want == 0 || len(o.statuses) < want {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			break
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		o.statuses = append(o.statuses, resp.StatusCode)
	}
	o.raw = rec.String()
	return o
}

// TestSmugglingCorpus runs the corpus against an http listener served by
// the fast path (an http:// upstream) and one served by net/http alone
// (an upstream with a path), then checks all the upstream received.
func TestSmugglingCorpus(t *testing.T) {
	dir := t.TempDir()
	seed(t, dir, map[string][]string{"web": {ipAllowed + "/32"}}, nil)
	up := newRecordingUpstream(t)
	fast, slow := freeAddr(t), freeAddr(t)
	g := startGatekeeper(t, dir, storeConfig+fmt.Sprintf(`tls: {self_signed: true}
listeners:
  - {name: fast, addr: "%s", mode: http, routes: [{account: web, upstream: "http://%s"}]}
  - {name: slow, addr: "%s", mode: http, routes: [{account: web, upstream: "http://%s/base"}]}
`, fast, up.ln.Addr(), slow, up.ln.Addr()))
	type run struct {
		listener string
		tc       smuggleCase
		o        smuggleOutcome
	}
	var runs []run
	for li, addr := range []string{fast, slow} {
		for i, tc := range smuggleCorpus {
			n := li*1000 + i
			raw := fmt.Sprintf(tc.raw, fmt.Sprintf("/c%d", n))
			want := len(tc.statuses)
			runs = append(runs, run{[]string{"fast", "slow"}[li], tc, runSmuggleCase(addr, raw, want)})
		}
	}
	if err := g.stop(30 * time.Second); err != nil {
		t.Logf("stop: %v", err)
	}
	up.stop()

	got := map[int]int{}
	for _, r := range up.reqs {
		if err := checkForwarding(r); err != nil {
			t.Errorf("the upstream got %s %s: %v", r.Method, r.URL, err)
		}
		m := caseRE.FindStringSubmatch(r.URL.Path)
		if m == nil {
			t.Errorf("the upstream got a request the proxy did not send as one: %s %s", r.Method, r.URL)
			continue
		}
		n, _ := strconv.Atoi(m[1])
		got[n]++
	}
	for _, r := range up.incomplete {
		if err := checkForwarding(r); err != nil {
			t.Errorf("the upstream got the head of %s %s: %v", r.Method, r.URL, err)
		}
	}
	for _, b := range up.bad {
		t.Errorf("the upstream got bytes that are no request: %s", b)
	}
	for i, r := range runs {
		n := (i/len(smuggleCorpus))*1000 + i%len(smuggleCorpus)
		if r.o.err != nil {
			t.Errorf("%s: %s: %v", r.listener, r.tc.name, r.o.err)
			continue
		}
		if got[n] != r.tc.forwarded {
			t.Errorf("%s: %s: the upstream got %d requests, want %d", r.listener, r.tc.name, got[n], r.tc.forwarded)
		}
		if r.tc.statuses != nil && (!r.tc.fastOnly || r.listener == "fast") && fmt.Sprint(r.o.statuses) != fmt.Sprint(r.tc.statuses) {
			t.Errorf("%s: %s: the client read statuses %v, want %v", r.listener, r.tc.name, r.o.statuses, r.tc.statuses)
		}
		if r.tc.clientCheck != nil {
			if err := r.tc.clientCheck(r.o.raw); err != nil {
				t.Errorf("%s: %s: %v:\n%q", r.listener, r.tc.name, err, r.o.raw)
			}
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("%d cases on each of 2 listeners; the upstream got %d requests, all with gatekeeper's forwarding headers only", len(smuggleCorpus), len(up.reqs))
}

// checkForwarding checks that a request carries exactly the forwarding
// headers gatekeeper writes for ipAllowed.
func checkForwarding(r *http.Request) error {
	want := map[string]string{
		"X-Forwarded-For":   ipAllowed,
		"X-Real-Ip":         ipAllowed,
		"X-Forwarded-Proto": "https",
	}
	for k, v := range want {
		if got := r.Header.Values(k); len(got) != 1 || got[0] != v {
			return fmt.Errorf("%s %q, want %q", k, got, v)
		}
	}
	fwd := r.Header.Values("Forwarded")
	if len(fwd) != 1 || !strings.HasPrefix(fwd[0], "for="+ipAllowed+";") || strings.Contains(fwd[0], ",") {
		return fmt.Errorf("Forwarded %q", fwd)
	}
	if len(r.Header.Values("X-Forwarded-Host")) != 1 {
		return fmt.Errorf("X-Forwarded-Host %q", r.Header.Values("X-Forwarded-Host"))
	}
	for _, vs := range [][]string{r.Header.Values("Content-Length"), r.Header.Values("Transfer-Encoding")} {
		if len(vs) > 1 {
			return fmt.Errorf("framing headers %q", vs)
		}
	}
	if len(r.Header.Values("Content-Length")) > 0 && len(r.TransferEncoding) > 0 {
		return fmt.Errorf("both Content-Length and Transfer-Encoding")
	}
	for k, vs := range r.Trailer {
		for _, v := range vs {
			if strings.Contains(v, forgedAddr) {
				return fmt.Errorf("trailer %s: %q", k, v)
			}
		}
	}
	return nil
}

// TestSmugglingCorpusHAProxy runs the corpus against HAProxy in front of
// the same recording upstream, and logs where its answers differ from
// gatekeeper's expectations: a comparison for docs/reliability.md, not a
// check of HAProxy, so it runs only when E2E_HAPROXY=1.
func TestSmugglingCorpusHAProxy(t *testing.T) {
	if os.Getenv("E2E_HAPROXY") != "1" {
		t.Skip("set E2E_HAPROXY=1 to compare with HAProxy")
	}
	haproxy := needTool(t, "haproxy")
	dir := t.TempDir()
	writeCert(t, dir, "gate", "h")
	pem, err := os.ReadFile(filepath.Join(dir, "gate.crt"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(dir, "gate.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "both.pem"), append(pem, key...), 0o600); err != nil {
		t.Fatal(err)
	}
	up := newRecordingUpstream(t)
	addr := freeAddr(t)
	cfg := fmt.Sprintf(`defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
  option forwardfor
frontend fe
  bind %s ssl crt %s
  http-request del-header X-Real-IP
  http-request set-header X-Real-IP %%[src]
  http-request set-header X-Forwarded-Proto https
  http-request del-header Forwarded
  http-request set-header Forwarded "for=%%[src];proto=https"
  http-request set-header X-Forwarded-Host %%[req.hdr(host)]
  default_backend be
backend be
  http-request del-header X-Forwarded-For
  server up %s
`, addr, filepath.Join(dir, "both.pem"), up.ln.Addr())
	if err := os.WriteFile(filepath.Join(dir, "haproxy.cfg"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(haproxy, "-f", filepath.Join(dir, "haproxy.cfg"), "-db")
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitFor(t, 10*time.Second, "haproxy listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	var outcomes []smuggleOutcome
	for i, tc := range smuggleCorpus {
		raw := fmt.Sprintf(tc.raw, fmt.Sprintf("/c%d", i))
		outcomes = append(outcomes, runSmuggleCase(addr, raw, len(tc.statuses)))
	}
	cmd.Process.Kill()
	cmd.Wait()
	up.stop()
	got := map[int]int{}
	for _, r := range up.reqs {
		if m := caseRE.FindStringSubmatch(r.URL.Path); m != nil {
			n, _ := strconv.Atoi(m[1])
			got[n]++
		} else {
			t.Logf("HAProxy: the upstream got %s %s", r.Method, r.URL)
		}
		if err := checkForwarding(r); err != nil {
			t.Logf("HAProxy: the upstream got %s %s: %v", r.Method, r.URL, err)
		}
	}
	for i, tc := range smuggleCorpus {
		o := outcomes[i]
		if got[i] != tc.forwarded || fmt.Sprint(o.statuses) != fmt.Sprint(tc.statuses) {
			t.Logf("differs: %-40s gatekeeper %v/%d forwarded, HAProxy %v/%d forwarded (err %v)", tc.name, tc.statuses, tc.forwarded, o.statuses, got[i], o.err)
		}
	}
}

// TestSmugglingCorpusSeeds keeps the corpus the seed of the proxy's
// differential fuzz target (proxy.FuzzHTTP1Upstream): each case is a
// seed file, from an untrusted and from a trusted peer. It fails when
// the files and the corpus differ; E2E_WRITE_SEEDS=1 writes them.
func TestSmugglingCorpusSeeds(t *testing.T) {
	dir := filepath.Join("..", "proxy", "testdata", "fuzz", "FuzzHTTP1Upstream")
	write := os.Getenv("E2E_WRITE_SEEDS") == "1"
	if write {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	slug := regexp.MustCompile(`[^a-z0-9]+`)
	for _, tc := range smuggleCorpus {
		raw := fmt.Sprintf(tc.raw, "")
		for _, trusted := range []bool{false, true} {
			name := strings.Trim(slug.ReplaceAllString(strings.ToLower(tc.name), "-"), "-")
			if trusted {
				name += "-trusted"
			}
			want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbool(%v)\n", raw, trusted)
			path := filepath.Join(dir, name)
			if write {
				if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if got, err := os.ReadFile(path); err != nil || string(got) != want {
				t.Errorf("%s is not the corpus case %q: run E2E_WRITE_SEEDS=1 go test ./e2e -run TestSmugglingCorpusSeeds", path, tc.name)
			}
		}
	}
}
