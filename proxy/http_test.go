package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// seen is what the HTTP upstream reports about a request.
type seen struct {
	XFF, Forwarded, Proto, XHost, Host, Path string
	AcceptEncoding                           string
}

func newHTTPUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(seen{
			XFF: r.Header.Get("X-Forwarded-For"), Forwarded: r.Header.Get("Forwarded"),
			Proto: r.Header.Get("X-Forwarded-Proto"), XHost: r.Header.Get("X-Forwarded-Host"),
			Host: r.Host, Path: r.URL.Path, AcceptEncoding: r.Header.Get("Accept-Encoding"),
		})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// httpClient sends requests from the given loopback address, optionally
// after a PROXY v1 header for src.
func httpClient(from, proxySrc string, h2 bool) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil && proxySrc != "" {
				_, err = c.Write(headerV1(proxySrc))
			}
			return c, err
		},
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"},
		ForceAttemptHTTP2: h2,
	}}
}

// TestHTTPAcceptEncoding checks that the upstream is asked for the
// encodings the client asked for, no more: were the proxy to add gzip
// itself, it would spend its CPU decompressing what the client never
// wanted compressed.
func TestHTTPAcceptEncoding(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	px := startProxy(t, Options{Listeners: []Listener{
		{Name: "web", Addr: "127.0.0.1:0", Mode: ModeHTTP,
			Routes: []Route{{Account: "acct", Upstream: newHTTPUpstream(t)}}},
	}, Engine: p.engine, TLS: tlsConfig(t)})
	for _, ae := range []string{"", "gzip", "br, zstd"} {
		c := httpClient(ipAllowed, "", false)
		c.Transport.(*http.Transport).DisableCompression = true // sends no Accept-Encoding of its own
		req, _ := http.NewRequest(http.MethodGet, "https://"+px.addr("web")+"/", nil)
		if ae != "" {
			req.Header.Set("Accept-Encoding", ae)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var s seen
		err = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if s.AcceptEncoding != ae {
			t.Errorf("client sent Accept-Encoding %q; upstream got %q", ae, s.AcceptEncoding)
		}
	}
}

func TestHTTP(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	upAddr := newHTTPUpstream(t)
	px := startProxy(t, Options{Listeners: []Listener{
		{Name: "web", Addr: "127.0.0.1:0", Mode: ModeHTTP,
			ProxyProtocol: &ProxyProtocol{Trusted: []string{ipBalancer}},
			Routes:        []Route{{Account: "acct", Upstream: "http://" + upAddr}}},
	}, Engine: p.engine, TLS: tlsConfig(t)})
	url := "https://" + px.addr("web") + "/some/path"

	cases := []struct {
		name      string
		client    *http.Client
		forged    string
		ok        bool
		wantXFF   string
		wantProto int
	}{
		{"allowed", httpClient(ipAllowed, "", false), "", true, ipAllowed, 1},
		{"allowed over h2", httpClient(ipAllowed, "", true), "", true, ipAllowed, 2},
		{"forged X-Forwarded-For changes nothing", httpClient(ipAllowed, "", false), "10.9.9.9", true, ipAllowed, 1},
		{"forged, denied address", httpClient(ipDenied, "", false), ipAllowed, false, "", 0},
		{"trusted balancer's chain is kept", httpClient(ipBalancer, ipAllowed, false), "10.1.1.1", true, "10.1.1.1, " + ipAllowed, 1},
		{"trusted balancer, denied client", httpClient(ipBalancer, ipDenied, false), "", false, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", url, nil)
			if c.forged != "" {
				req.Header.Set("X-Forwarded-For", c.forged)
				req.Header.Set("Forwarded", "for="+c.forged)
			}
			resp, err := c.client.Do(req)
			if !c.ok {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("denied client got %s", resp.Status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var s seen
			if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
				t.Fatal(err)
			}
			if resp.ProtoMajor != c.wantProto {
				t.Errorf("HTTP/%d, want HTTP/%d", resp.ProtoMajor, c.wantProto)
			}
			if s.XFF != c.wantXFF {
				t.Errorf("X-Forwarded-For %q, want %q", s.XFF, c.wantXFF)
			}
			wantFwd := fmt.Sprintf(`for=%s;host="%s";proto=https`, lastHop(c.wantXFF), px.addr("web"))
			if c.forged != "" && c.wantXFF != ipAllowed {
				wantFwd = "for=" + c.forged + ", " + wantFwd
			}
			if s.Forwarded != wantFwd {
				t.Errorf("Forwarded %q, want %q", s.Forwarded, wantFwd)
			}
			if s.Proto != "https" || s.Path != "/some/path" || s.XHost != px.addr("web") {
				t.Errorf("upstream saw %+v", s)
			}
		})
	}
	if got := px.counter("gatekeeper_connections_total", "listener", "web", "verdict", "denied"); got != 2 {
		t.Errorf("denied = %v, want 2", got)
	}
}

func lastHop(xff string) string {
	for i := len(xff) - 1; i >= 0; i-- {
		if xff[i] == ' ' {
			return xff[i+1:]
		}
	}
	return xff
}

// TestHTTPRevocation closes a kept-alive HTTP connection when its rule
// goes.
func TestHTTPRevocation(t *testing.T) {
	p := newPolicy(t)
	ids := p.account("acct", policy.ModeOn, ipAllowed+"/32")
	upAddr := newHTTPUpstream(t)
	px := startProxy(t, Options{Listeners: []Listener{
		{Name: "web", Addr: "127.0.0.1:0", Mode: ModeHTTP, Routes: []Route{{Account: "acct", Upstream: upAddr}}},
	}, Engine: p.engine, TLS: tlsConfig(t)})
	conn, _, err := dialTLS(t, ipAllowed, px.addr("web"), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	p.remove("acct", ids[ipAllowed+"/32"])
	start := time.Now()
	conn.SetReadDeadline(start.Add(time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("read a byte from a revoked connection")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("kept-alive connection still open 1s after its rule was deleted")
	}
	t.Logf("kept-alive HTTP connection closed %v after the rule was deleted", time.Since(start))
	px.waitCounter("gatekeeper_connections_revoked_total", 1, "account", "acct")
	px.waitCounter("gatekeeper_connections_active", 0, "listener", "web")
}
