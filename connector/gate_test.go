package connector

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pki is a test CA and a server certificate it issued.
type pki struct {
	ca     *x509.Certificate
	pool   *x509.CertPool
	server tls.Certificate
}

// newPKI makes a CA and a certificate for names (DNS names or IPs).
func newPKI(t testing.TB, names ...string) *pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &pki{ca: ca, pool: pool, server: tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key, Leaf: leaf}}
}

// gateBehaviour is what the stand-in gatekeeper does with a connection.
type gateBehaviour int

const (
	// gateAllow completes TLS and hands the connection to the handler.
	gateAllow gateBehaviour = iota
	// gateCloseAtAccept closes the connection as soon as it is accepted.
	gateCloseAtAccept
	// gateCloseAfterHello reads the ClientHello, then closes: what
	// gatekeeper does with a denied address after peeking at the SNI.
	gateCloseAfterHello
	// gateResetAfterHello reads the ClientHello, then resets (SO_LINGER 0).
	gateResetAfterHello
	// gateSilent accepts and never answers.
	gateSilent
	// gatePlainText answers like a server that does not speak TLS.
	gatePlainText
)

// gate is a stand-in for a gatekeeper tls listener on 127.0.0.1.
type gate struct {
	ln        net.Listener
	addr      string
	behaviour gateBehaviour
	handler   func(*tls.Conn)
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     []net.Conn
	// admit, when set, lets a connection through that the behaviour
	// would refuse: a lease.
	admit atomic.Bool
	// settle is how many connections admit still leaves to the behaviour,
	// as while a lease is on its way to the gate.
	settle atomic.Int32
}

// startGate serves until the test ends. handler runs for each allowed
// connection once TLS is up; the gate closes the connection when it
// returns.
func startGate(t testing.TB, p *pki, behaviour gateBehaviour, handler func(*tls.Conn)) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, addr: ln.Addr().String(), behaviour: behaviour, handler: handler}
	cfg := &tls.Config{Certificates: []tls.Certificate{p.server}}
	g.wg.Add(1)
	go g.acceptLoop(cfg)
	t.Cleanup(g.close)
	return g
}

func (g *gate) acceptLoop(cfg *tls.Config) {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		g.conns = append(g.conns, c)
		g.mu.Unlock()
		g.wg.Add(1)
		go g.serveGateConn(c, cfg)
	}
}

func (g *gate) serveGateConn(c net.Conn, cfg *tls.Config) {
	defer g.wg.Done()
	defer c.Close()
	behaviour := g.behaviour
	if g.admit.Load() && g.settle.Add(-1) < 0 {
		behaviour = gateAllow
	}
	switch behaviour {
	case gateCloseAtAccept:
		return
	case gateCloseAfterHello, gateResetAfterHello:
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		n := int(buf[3])<<8 | int(buf[4])
		io.CopyN(io.Discard, c, int64(n))
		if behaviour == gateResetAfterHello {
			c.(*net.TCPConn).SetLinger(0)
		}
		return
	case gateSilent:
		io.Copy(io.Discard, c) // until the client gives up
		return
	case gatePlainText:
		c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
		return
	}
	tc := tls.Server(c, cfg)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return
	}
	tc.SetDeadline(time.Time{})
	g.handler(tc)
}

// close stops the gate and every connection it holds, and waits for them.
func (g *gate) close() {
	g.ln.Close()
	g.mu.Lock()
	for _, c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// echo sends back what it reads, then half-closes.
func echo(c *tls.Conn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// startConnector runs c.Serve on a loopback listener until the test ends,
// and returns the listener's address.
func startConnector(t testing.TB, c *Connector) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10s of its context ending")
		}
	})
	return ln.Addr().String()
}
