package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

const ipBalancer = "127.0.0.1"

func headerV1(src string) []byte {
	return []byte("PROXY TCP4 " + src + " 127.0.0.1 5555 443\r\n")
}

func headerV2(src string, local bool) []byte {
	var b bytes.Buffer
	b.Write(sigV2)
	if local {
		b.Write([]byte{0x20, 0x00, 0, 0})
		return b.Bytes()
	}
	b.Write([]byte{0x21, 0x11})
	binary.Write(&b, binary.BigEndian, uint16(12))
	s := netip.MustParseAddr(src).As4()
	b.Write(s[:])
	b.Write([]byte{127, 0, 0, 1})
	binary.Write(&b, binary.BigEndian, uint16(5555))
	binary.Write(&b, binary.BigEndian, uint16(443))
	return b.Bytes()
}

// recorder is an upstream that reports what each connection sent, after
// reading a PROXY header if told to, and echoes nothing.
type recorder struct {
	*upstream
	got chan recorded
}

type recorded struct {
	src  string // from the PROXY header
	data string
}

func newRecorder(t *testing.T, header bool) *recorder {
	r := &recorder{got: make(chan recorded, 16)}
	r.upstream = newUpstream(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		var rec recorded
		if header {
			h, err := proxyproto.Read(br)
			if err != nil {
				rec.src = "error: " + err.Error()
			} else {
				rec.src = h.SourceAddr.String()
			}
		}
		io.WriteString(c, "ok")
		b, _ := io.ReadAll(br)
		rec.data = string(b)
		r.got <- rec
	})
	return r
}

func TestProxyProtocol(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	rec := newRecorder(t, false)
	recHdr := newRecorder(t, true)
	trusted := &ProxyProtocol{Trusted: []string{ipBalancer + "/32"}}
	ls := []Listener{
		{Name: "pp", Addr: "127.0.0.1:0", Mode: ModeTCP, ProxyProtocol: trusted,
			Routes: []Route{{Account: "acct", Upstream: rec.addr()}}},
		{Name: "ppup", Addr: "127.0.0.1:0", Mode: ModeTCP,
			ProxyProtocol: &ProxyProtocol{Trusted: []string{ipBalancer}, Upstream: true},
			Routes:        []Route{{Account: "acct", Upstream: recHdr.addr()}}},
	}
	px := startProxy(t, Options{Listeners: ls, Engine: p.engine})

	cases := []struct {
		name   string
		from   string
		send   []byte
		passes bool
		reason string // counted error, if refused for one
		// dialed: a refused connection still reached the upstream, which
		// may speak first on a tcp listener, but none of its bytes did.
		dialed bool
	}{
		{"v1 from balancer, allowed client", ipBalancer, headerV1(ipAllowed), true, "", false},
		{"v2 from balancer, allowed client", ipBalancer, headerV2(ipAllowed, false), true, "", false},
		{"v1 from balancer, denied client", ipBalancer, headerV1(ipDenied), false, "", false},
		{"v2 from balancer, denied client", ipBalancer, headerV2(ipDenied, false), false, "", false},
		{"v2 LOCAL from balancer: the balancer is the client", ipBalancer, headerV2("", true), false, "", false},
		{"no header from balancer", ipBalancer, []byte("hello there, no header"), false, reasonProxyHeader, false},
		{"broken header from balancer", ipBalancer, []byte("PROXY TCP4 nonsense\r\n"), false, reasonProxyHeader, false},
		{"v1 from an allowed client that is no balancer", ipAllowed, headerV1(ipAllowed), false, reasonProxyHeader, true},
		{"v2 from an allowed client that is no balancer", ipAllowed, headerV2(ipAllowed, false), false, reasonProxyHeader, true},
		{"no header from an allowed client that is no balancer", ipAllowed, nil, true, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := px.counter("gatekeeper_connection_errors_total", "listener", "pp", "reason", reasonProxyHeader)
			conn, err := tryDial(t, c.from, px.addr("pp"))
			if err != nil {
				if c.passes {
					t.Fatal(err)
				}
				return
			}
			payload := "payload of " + c.name
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			conn.Write(append(c.send, payload...))
			conn.CloseWrite()
			b, _ := io.ReadAll(conn)
			if !c.passes {
				if c.dialed {
					if r := <-rec.got; r.data != "" {
						t.Errorf("upstream of a refused connection received %q", r.data)
					}
				} else if len(b) > 0 {
					t.Errorf("refused connection got %q from upstream", b)
				}
				if c.reason != "" {
					px.waitCounter("gatekeeper_connection_errors_total", before+1, "listener", "pp", "reason", c.reason)
				}
				return
			}
			if string(b) != "ok" {
				t.Errorf("read %q, want ok", b)
			}
			r := <-rec.got
			if r.data != payload {
				t.Errorf("upstream received %q, want %q (no header)", r.data, payload)
			}
		})
	}

	select {
	case r := <-rec.got:
		t.Errorf("upstream got an unexpected connection with %q", r.data)
	default:
	}
	// The two denied clients and the balancer's own health check.
	px.waitCounter("gatekeeper_connections_total", 3, "listener", "pp", "verdict", "denied")

	t.Run("v2 to upstream", func(t *testing.T) {
		conn := dial(t, ipBalancer, px.addr("ppup"))
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write(append(headerV1(ipAllowed), "data"...))
		conn.CloseWrite()
		io.ReadAll(conn)
		r := <-recHdr.got
		if r.src != ipAllowed+":5555" || r.data != "data" {
			t.Errorf("upstream got header source %q and data %q; want %s:5555 and data", r.src, r.data, ipAllowed)
		}
	})
}

// TestProxyProtocolTLS: on a tls listener the header comes before the
// ClientHello; a header from a peer that is no balancer gets no
// certificate.
func TestProxyProtocolTLS(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	up := newUpstream(t, echo)
	px := startProxy(t, Options{Listeners: []Listener{
		{Name: "l", Addr: "127.0.0.1:0", Mode: ModeTLS,
			ProxyProtocol: &ProxyProtocol{Trusted: []string{ipBalancer}},
			Routes:        []Route{{SNI: "db.test", Account: "acct", Upstream: up.addr()}}},
	}, Engine: p.engine, TLS: tlsConfig(t)})
	for _, c := range []struct {
		from, src string
		ok        bool
	}{
		{ipBalancer, ipAllowed, true},
		{ipBalancer, ipDenied, false},
		{ipAllowed, ipAllowed, false}, // header from no balancer
	} {
		raw, err := tryDial(t, c.from, px.addr("l"))
		if err != nil {
			t.Fatal(err)
		}
		raw.Write(headerV1(c.src))
		certs := 0
		tc := tls.Client(raw, &tls.Config{ServerName: "db.test", InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error { certs += len(cs.PeerCertificates); return nil }})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		err = tc.Handshake()
		if c.ok {
			if err != nil {
				t.Fatalf("from %s for %s: %v", c.from, c.src, err)
			}
			if err := roundTrip(t, tc, "x"); err != nil {
				t.Error(err)
			}
			continue
		}
		if err == nil || certs > 0 {
			t.Errorf("from %s for %s: handshake error %v, %d certificates; want a failure and none", c.from, c.src, err, certs)
		}
	}
}
