package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// hostile is the setup of TestHostileClients: one instance with a tcp
// listener checked at accept, a tls listener routed by SNI (checked in
// the ClientHello), a tcp listener behind a trusted PROXY-protocol
// balancer, and the admin API.
type hostile struct {
	*instance
	tls, lb  string
	balancer string // the trusted balancer's address
}

// handshake is the listeners' handshake timeout in the test: the
// production default is 10s; a short one keeps the test short, and what
// is measured is that slow clients are cut at it.
const handshake = 2 * time.Second

// allowedProbe connects an allowed client through the tcp and the tls
// listener and reports how long the round trip took, or an error.
func (h *hostile) allowedProbe(useTLS bool) (time.Duration, error) {
	start := time.Now()
	if !useTLS {
		if !through(ipAllowed, h.db) {
			return 0, fmt.Errorf("tcp: refused")
		}
		return time.Since(start), nil
	}
	raw, err := dialFrom(ipAllowed, h.tls)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	c := tls.Client(raw, &tls.Config{ServerName: "acct.test", InsecureSkipVerify: true})
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		return 0, fmt.Errorf("tls handshake: %w", err)
	}
	if err := roundTrip(c, "ping"); err != nil {
		return 0, fmt.Errorf("tls: %w", err)
	}
	return time.Since(start), nil
}

// served measures allowed clients while an attack runs: success rate and
// latency, and the process's peak memory and goroutines.
type served struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	lat        []time.Duration
	errs       []string
	peak       usage
	stop       chan struct{}
	wg         sync.WaitGroup
}

func (h *hostile) serve() *served {
	s := &served{stop: make(chan struct{})}
	for i := range 2 {
		s.wg.Go(func() {
			for {
				select {
				case <-s.stop:
					return
				default:
				}
				d, err := h.allowedProbe(i == 1)
				s.mu.Lock()
				if err != nil {
					s.failed.Add(1)
					if len(s.errs) < 5 {
						s.errs = append(s.errs, err.Error())
					}
				} else {
					s.ok.Add(1)
					s.lat = append(s.lat, d)
				}
				s.mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	s.wg.Go(func() {
		for {
			u := h.usage()
			s.mu.Lock()
			s.peak.rss = max(s.peak.rss, u.rss)
			s.peak.goroutines = max(s.peak.goroutines, u.goroutines)
			s.peak.heap = max(s.peak.heap, u.heap)
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	return s
}

func (s *served) end(t *testing.T, phase string) usage {
	t.Helper()
	close(s.stop)
	s.wg.Wait()
	ok, failed := s.ok.Load(), s.failed.Load()
	slices.Sort(s.lat)
	var p50, p99 time.Duration
	if n := len(s.lat); n > 0 {
		p50, p99 = s.lat[n/2], s.lat[n*99/100]
	}
	t.Logf("%s: allowed clients %d/%d served (%.1f%%), latency p50 %v p99 %v; peak %v",
		phase, ok, ok+failed, 100*float64(ok)/float64(max(ok+failed, 1)), p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), s.peak)
	// A loaded two-core machine drops the odd connection; the attacks
	// must not take the service away.
	if ok == 0 || float64(failed) > 0.05*float64(ok+failed) {
		t.Errorf("%s: %d of %d allowed connections failed (%v)", phase, failed, ok+failed, s.errs)
	}
	return s.peak
}

// TestHostileClients attacks the real binary: floods of denied
// connections, slowloris ClientHellos and PROXY headers, garbage and
// oversized handshakes, clients that never read, hostile admin requests
// and a distributed login brute force. Throughout, allowed clients are
// served and measured, and memory (RSS from /proc) and goroutines
// (go_goroutines) are sampled; afterwards they must come back near where
// they started.
func TestHostileClients(t *testing.T) {
	rs := redistest.Start(t)
	up := echoServer(t)
	h := &hostile{instance: &instance{db: freeAddr(t), admin: freeAddr(t)}, tls: freeAddr(t), lb: freeAddr(t), balancer: "127.0.0.50"}
	extra := fmt.Sprintf(`  - {name: sni, addr: "%s", mode: tls, timeouts: {handshake: %v}, routes: [{sni: acct.test, account: acct, upstream: "%s"}]}
  - {name: lb, addr: "%s", mode: tcp, timeouts: {handshake: %v}, proxy_protocol: {trusted: ["%s/32"]}, routes: [{account: acct, upstream: "%s"}]}
`, h.tls, handshake, up, h.lb, handshake, h.balancer, up)
	h.gatekeeper = startGatekeeper(t, prepareDir(t), fleetConfig(rs.URL(), h.db, h.admin, up, extra))
	master := createAccount(t, h.admin, "acct", masterPassword)
	createAccount(t, h.admin, "other", masterPassword)
	if code, _, _ := master.addRule("acct", ipAllowed); code != http.StatusCreated {
		t.Fatal("add rule")
	}
	waitFor(t, 5*time.Second, "allowed client served", func() bool { _, err := h.allowedProbe(true); return err == nil })
	time.Sleep(500 * time.Millisecond)
	base := h.usage()
	t.Logf("baseline: %v", base)

	// Denied addresses: 127.0.0.100 to 127.0.0.249.
	denied := func(i int) string { return fmt.Sprintf("127.0.0.%d", 100+i%150) }

	t.Run("denied flood at accept", func(t *testing.T) {
		s := h.serve()
		var n, through_ atomic.Int64
		var wg sync.WaitGroup
		stop := time.Now().Add(3 * time.Second)
		for w := range 100 {
			wg.Go(func() {
				for i := w; time.Now().Before(stop); i += 100 {
					c, err := dialFrom(denied(i), h.db)
					if err != nil {
						continue
					}
					c.SetLinger(0)
					c.SetDeadline(time.Now().Add(2 * time.Second))
					if _, err := c.Write([]byte("x")); err == nil {
						if b, err := io.ReadAll(c); err == nil && len(b) > 0 {
							through_.Add(1)
						}
					}
					c.Close()
					n.Add(1)
				}
			})
		}
		wg.Wait()
		s.end(t, fmt.Sprintf("%d denied connections from 150 addresses in 3s at a fixed-account tcp listener", n.Load()))
		if through_.Load() > 0 {
			t.Errorf("%d denied connections got bytes back", through_.Load())
		}
	})

	t.Run("thousands of idle connections before the ClientHello", func(t *testing.T) {
		const conns = 2000
		s := h.serve()
		var held []net.Conn
		for i := range conns {
			c, err := dialFrom(denied(i), h.tls)
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			c.SetLinger(0)
			held = append(held, c)
		}
		opened := time.Now()
		mid := h.usage()
		// The handshake timeout closes them all.
		var wg sync.WaitGroup
		var closedLate atomic.Int64
		for _, c := range held {
			wg.Go(func() {
				c.SetReadDeadline(opened.Add(handshake + 5*time.Second))
				if _, err := c.Read(make([]byte, 1)); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						closedLate.Add(1)
					}
				}
				c.Close()
			})
		}
		wg.Wait()
		took := time.Since(opened)
		s.end(t, fmt.Sprintf("%d idle connections before the ClientHello (held %v, %v with them open)", conns, took.Round(time.Millisecond), mid))
		if closedLate.Load() > 0 {
			t.Errorf("%d of %d idle connections still open %v after the handshake timeout", closedLate.Load(), conns, 5*time.Second)
		}
		// An upper bound: the whole heap and every stack, while they were
		// held, shared among them.
		per := (mid.heap + mid.stack) / conns
		t.Logf("at most %.1f KiB of heap and stack per idle connection", float64(per)/1024)
		if per > 64<<10 {
			t.Errorf("%d bytes of heap and stack per idle connection", per)
		}
	})

	t.Run("a slow-client farm over the pending bound", func(t *testing.T) {
		// 3 addresses open 100 idle connections each: the default
		// limits.pending_per_ip (64) keeps 192 waiting for their
		// ClientHello and resets the other 108 at accept.
		const addrs, each, perIP = 3, 100, 64
		s := h.serve()
		before := h.metric("gatekeeper_connection_errors_total", "listener", "sni", "reason", "pending")
		var held []net.Conn
		for i := range addrs * each {
			c, err := dialFrom(denied(i%addrs), h.tls)
			if err != nil {
				continue // reset before connect returned
			}
			c.SetLinger(0)
			held = append(held, c)
		}
		waiting := h.metric("gatekeeper_connections_pending", "listener", "sni")
		reset := h.metric("gatekeeper_connection_errors_total", "listener", "sni", "reason", "pending") - before
		// Allowed clients are served while the farm holds its share.
		served := s.ok.Load()
		waitFor(t, 10*time.Second, "20 allowed clients served", func() bool { return s.ok.Load()+s.failed.Load() >= served+20 })
		for _, c := range held {
			c.Close()
		}
		s.end(t, fmt.Sprintf("%d idle connections from %d addresses: %v waiting, %v reset at accept", addrs*each, addrs, waiting, reset))
		// The gauge also counts the one allowed TLS prober's connection
		// while it waits for its check, from its own address.
		const prober = 1
		if reset != addrs*(each-perIP) || waiting > addrs*perIP+prober {
			t.Errorf("%v reset (want %d), %v waiting (at most %d)", reset, addrs*(each-perIP), waiting, addrs*perIP+prober)
		}
	})

	t.Run("slow ClientHellos and half-sent PROXY headers", func(t *testing.T) {
		const conns = 200
		s := h.serve()
		hello := clientHello(t, "acct.test")
		var wg sync.WaitGroup
		var tooLong atomic.Int64
		start := time.Now()
		for i := range conns {
			wg.Go(func() {
				var c *net.TCPConn
				var err error
				var msg []byte
				if i%2 == 0 {
					c, err = dialFrom(denied(i), h.tls)
					msg = hello
				} else {
					c, err = dialFrom(h.balancer, h.lb)
					msg = []byte("PROXY TCP4 203.0.113.7 127.0.0.1 40000 5432") // never ends
				}
				if err != nil {
					return
				}
				defer c.Close()
				c.SetLinger(0)
				// A byte every 100ms: never enough before the timeout.
				for _, b := range msg {
					if _, err := c.Write([]byte{b}); err != nil {
						return
					}
					if time.Since(start) > handshake+5*time.Second {
						tooLong.Add(1)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				c.SetReadDeadline(time.Now().Add(handshake + time.Second))
				if _, err := c.Read(make([]byte, 1)); err == nil {
					tooLong.Add(1)
				}
			})
		}
		wg.Wait()
		s.end(t, fmt.Sprintf("%d slowloris connections (a byte every 100ms), all cut within %v", conns, time.Since(start).Round(time.Millisecond)))
		if tooLong.Load() > 0 {
			t.Errorf("%d slow connections outlived the handshake timeout by 5s", tooLong.Load())
		}
	})

	t.Run("garbage, oversized and truncated handshakes", func(t *testing.T) {
		s := h.serve()
		hello := clientHello(t, "acct.test")
		junk := make([]byte, 4096)
		rand.Read(junk)
		// A record of 16 KiB holding a ClientHello that claims 16 MiB.
		big := append([]byte{22, 3, 1, 0x40, 0x00, 1, 0xff, 0xff, 0xff}, bytes.Repeat([]byte{1}, 16380)...)
		v2 := append([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff"), bytes.Repeat([]byte{0}, 1000)...) // 64 KiB claimed
		inputs := []struct {
			name string
			to   string
			from func(int) string
			b    []byte
		}{
			{"random bytes to the tls listener", h.tls, denied, junk},
			{"random bytes to the balancer listener", h.lb, func(int) string { return h.balancer }, junk},
			{"a ClientHello claiming 16 MiB", h.tls, denied, big},
			{"half a ClientHello", h.tls, denied, hello[:len(hello)/2]},
			{"a ClientHello then garbage", h.tls, denied, append(slices.Clone(hello), junk...)},
			{"a PROXY v1 line of 4 KiB", h.lb, func(int) string { return h.balancer }, append([]byte("PROXY TCP4 "), bytes.Repeat([]byte("1"), 4096)...)},
			{"a PROXY v2 header claiming 64 KiB", h.lb, func(int) string { return h.balancer }, v2},
			{"a PROXY header from an untrusted peer", h.lb, func(int) string { return ipAllowed }, []byte("PROXY TCP4 127.0.0.2 127.0.0.1 1 2\r\nping")},
			{"a PROXY header on the tls listener", h.tls, func(int) string { return ipAllowed }, []byte("PROXY TCP4 127.0.0.2 127.0.0.1 1 2\r\n")},
		}
		before := h.metricSum("gatekeeper_connection_errors_total")
		for _, in := range inputs {
			var wg sync.WaitGroup
			var answered atomic.Int64
			for i := range 50 {
				wg.Go(func() {
					c, err := dialFrom(in.from(i), in.to)
					if err != nil {
						return
					}
					defer c.Close()
					c.SetLinger(0)
					c.SetDeadline(time.Now().Add(handshake + 3*time.Second))
					c.Write(in.b)
					c.CloseWrite()
					b, _ := io.ReadAll(c)
					// A TLS alert is all a refused client may get back,
					// never a certificate or the upstream's echo.
					if len(b) > 7 {
						answered.Add(1)
					}
				})
			}
			wg.Wait()
			if answered.Load() > 0 {
				t.Errorf("%s: %d connections got more than an alert back", in.name, answered.Load())
			}
		}
		s.end(t, fmt.Sprintf("%d kinds of malformed handshakes, 50 each (%v connection errors counted)",
			len(inputs), h.metricSum("gatekeeper_connection_errors_total")-before))
	})

	t.Run("clients that never read", func(t *testing.T) {
		const conns, each = 40, 32 << 20
		s := h.serve()
		var wg sync.WaitGroup
		var sent atomic.Int64
		var held []net.Conn
		var mu sync.Mutex
		for i := range conns {
			wg.Go(func() {
				var c net.Conn
				raw, err := dialFrom(ipAllowed, map[bool]string{true: h.tls, false: h.db}[i%2 == 1])
				if err != nil {
					return
				}
				c = raw
				raw.SetLinger(0) // closed with a reset: a close_notify would wait for the full buffers
				mu.Lock()
				held = append(held, raw)
				mu.Unlock()
				if i%2 == 1 {
					tc := tls.Client(raw, &tls.Config{ServerName: "acct.test", InsecureSkipVerify: true})
					if tc.Handshake() != nil {
						return
					}
					c = tc
				}
				// Write until the echo, which nobody reads, pushes back.
				c.SetWriteDeadline(time.Now().Add(3 * time.Second))
				buf := make([]byte, 64<<10)
				for n := 0; n < each; {
					m, err := c.Write(buf)
					n += m
					sent.Add(int64(m))
					if err != nil {
						return
					}
				}
			})
		}
		wg.Wait()
		mid := h.usage()
		for _, c := range held {
			c.Close()
		}
		peak := s.end(t, fmt.Sprintf("%d allowed clients writing without reading (%s accepted before the push-back, %v while held)",
			len(held), mib(sent.Load()), mid))
		// What the clients do not read waits in the kernel's socket
		// buffers (up to tcp_rmem's 32 MiB each here), not in the process.
		if peak.heap > 100<<20 || !raceBuild && peak.rss > base.rss+200<<20 {
			t.Errorf("clients that never read: peak %v, baseline %v", peak, base)
		}
	})

	t.Run("hostile admin requests", func(t *testing.T) {
		s := h.serve()
		other := login(t, h.admin, "other", masterPassword)
		nested := strings.Repeat("[", 30000) + strings.Repeat("]", 30000) // within the 64 KiB body limit
		cases := []struct {
			name, method, path, ctype string
			body                      string
			want                      []int
		}{
			{"a 10 MiB body", "POST", "/api/v1/accounts/acct/firewall/rules", "application/json", `{"cidr":"` + strings.Repeat("1", 10<<20) + `"}`, []int{413}},
			{"JSON nested 30000 deep", "POST", "/api/v1/accounts/acct/firewall/rules", "application/json", nested, []int{400}},
			{"an object nested deep", "PUT", "/api/v1/accounts/acct/firewall/mode", "application/json", strings.Repeat(`{"mode":`, 5000) + `"on"` + strings.Repeat("}", 5000), []int{400}},
			{"malformed JSON", "POST", "/api/v1/accounts/acct/firewall/rules", "application/json", `{"cidr": "10.0.0.1/32",`, []int{400}},
			{"two objects", "POST", "/api/v1/accounts/acct/firewall/rules", "application/json", `{"cidr":"10.0.0.1"}{"cidr":"0.0.0.0/0"}`, []int{400}},
			{"invalid UTF-8", "POST", "/api/v1/accounts/acct/firewall/rules", "application/json", "{\"cidr\":\"10.0.0.1\",\"note\":\"\xff\xfe\"}", []int{201, 400}},
			{"form content type", "POST", "/api/v1/accounts/acct/firewall/rules", "application/x-www-form-urlencoded", "cidr=10.0.0.2", []int{415}},
			{"text content type", "POST", "/api/v1/accounts/acct/firewall/rules", "text/plain", `{"cidr":"10.0.0.3"}`, []int{415}},
			{"JSON in another charset", "POST", "/api/v1/accounts/acct/firewall/rules", "application/json; charset=utf-16", `{"cidr":"10.0.0.4"}`, []int{415}},
			{"another account's firewall", "GET", "/api/v1/accounts/other/firewall", "", "", []int{404}},
			{"another account's rule", "POST", "/api/v1/accounts/other/firewall/rules", "application/json", `{"cidr":"10.0.0.5"}`, []int{404}},
			{"dot-dot to another account", "GET", "/api/v1/accounts/acct/../other/firewall", "", "", []int{301, 307, 308, 404}},
			{"encoded dot-dot", "GET", "/api/v1/accounts/acct/%2e%2e/other/firewall", "", "", []int{301, 307, 308, 404}},
			{"encoded slash in the account", "GET", "/api/v1/accounts/other%2Ffirewall", "", "", []int{404}},
			{"encoded slash to another account", "GET", "/api/v1/accounts/acct%2F..%2Fother/firewall", "", "", []int{400, 404}},
			{"double slashes", "GET", "//api/v1//accounts/other/firewall", "", "", []int{301, 307, 308, 404}},
			{"an account id of 10 KiB", "GET", "/api/v1/accounts/" + strings.Repeat("a", 10<<10) + "/firewall", "", "", []int{404}},
			{"an unknown method", "BREW", "/api/v1/accounts/acct/firewall", "", "", []int{405}},
			{"a rule id that is no number", "DELETE", "/api/v1/accounts/acct/firewall/rules/1;DROP", "", "", []int{400, 404}},
			{"a rule id of another account", "DELETE", "/api/v1/accounts/acct/firewall/rules/999999999999", "", "", []int{404}},
		}
		var answers []string
		for _, c := range cases {
			var body io.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			}
			code, b, _ := master.raw(c.method, c.path, c.ctype, body)
			if !slices.Contains(c.want, code) {
				t.Errorf("%s: %s %s answered %d %.200s, want one of %v", c.name, c.method, c.path, code, b, c.want)
			}
			answers = append(answers, fmt.Sprintf("%s %d", c.name, code))
		}
		t.Logf("answers: %s", strings.Join(answers, "; "))
		// The other account saw nothing and changed nothing.
		if _, rules := other.rules("other"); len(rules) != 0 {
			t.Errorf("the other account has rules now: %v", rules)
		}
		if code, rules := master.rules("acct"); code != http.StatusOK || len(rules) > 2 {
			t.Errorf("acct after the hostile requests: %d, %v", code, rules)
		}
		s.end(t, fmt.Sprintf("%d kinds of hostile admin requests", len(cases)))
	})

	t.Run("login brute force from many addresses", func(t *testing.T) {
		s := h.serve()
		var wg sync.WaitGroup
		var mu sync.Mutex
		codes := map[int]int{}
		start := time.Now()
		for i := range 200 {
			wg.Go(func() {
				a := newAdminFrom(fmt.Sprintf("127.0.1.%d", 1+i), h.admin, "")
				defer a.c.CloseIdleConnections()
				for j := range 3 {
					code, _, _ := a.call("POST", "/api/v1/login", map[string]any{"account": "acct", "password": fmt.Sprintf("guess-%d-%d-xxxxxxxx", i, j)})
					mu.Lock()
					codes[code]++
					mu.Unlock()
				}
			})
		}
		// Meanwhile the logged-in master keeps working.
		var masterLat []time.Duration
		masterFailed := 0
		for time.Since(start) < 2*time.Second {
			code, _, took := master.call("GET", "/api/v1/accounts/acct/firewall", nil)
			if code != http.StatusOK {
				masterFailed++
			}
			masterLat = append(masterLat, took)
			time.Sleep(50 * time.Millisecond)
		}
		wg.Wait()
		took := time.Since(start)
		slices.Sort(masterLat)
		s.end(t, fmt.Sprintf("600 wrong passwords from 200 addresses in %v: answers %v; the master's session meanwhile: %d calls, %d failed, p50 %v, max %v",
			took.Round(time.Millisecond), codes, len(masterLat), masterFailed, masterLat[len(masterLat)/2].Round(time.Millisecond), masterLat[len(masterLat)-1].Round(time.Millisecond)))
		if codes[http.StatusOK] > 0 {
			t.Errorf("%d wrong passwords were accepted", codes[http.StatusOK])
		}
		if codes[http.StatusTooManyRequests] == 0 {
			t.Error("no attempt was rate limited")
		}
		if masterFailed > 0 {
			t.Errorf("the master's session failed %d times during the brute force", masterFailed)
		}
		if n := h.metric("gatekeeper_login_failures_total", "reason", "rate_limited"); n == 0 {
			t.Error("gatekeeper_login_failures_total{reason=rate_limited} not counted")
		}
	})

	// Everything the attacks opened is gone: goroutines back to where they
	// were, memory bounded.
	master.c.CloseIdleConnections()
	var after usage
	start := time.Now()
	for {
		after = h.usage()
		if after.goroutines <= base.goroutines+20 {
			break
		}
		if time.Since(start) > 3*handshake+5*time.Second {
			t.Fatalf("goroutines not back near the baseline %d: %v", base.goroutines, after)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d := time.Since(start)
	t.Logf("after the attacks (%v later): %v; baseline %v", d.Round(time.Millisecond), after, base)
	// The race detector's shadow memory inflates RSS and keeps it: judge
	// the Go heap there, and RSS too without it.
	if after.heap > base.heap+100<<20 || !raceBuild && after.rss > base.rss+300<<20 {
		t.Errorf("after the attacks %v, baseline %v", after, base)
	}
	if _, err := h.allowedProbe(true); err != nil {
		t.Errorf("allowed client after the attacks: %v", err)
	}
	select {
	case <-h.exited:
		t.Fatalf("gatekeeper exited: %v", h.err)
	default:
	}
}

// clientHello returns the first flight of a Go TLS client for name.
func clientHello(t *testing.T, name string) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		tls.Client(client, &tls.Config{ServerName: name, InsecureSkipVerify: true}).Handshake()
		client.Close()
	}()
	var b bytes.Buffer
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	for {
		n, err := server.Read(buf)
		b.Write(buf[:n])
		if err != nil || b.Len() >= 5 && b.Len() >= 5+int(binary.BigEndian.Uint16(b.Bytes()[3:5])) {
			break
		}
	}
	return b.Bytes()
}
