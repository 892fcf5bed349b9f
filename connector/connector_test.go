package connector

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func newConnector(t testing.TB, opts Options) *Connector {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A large transfer arrives intact both ways, through Serve.
func TestLargeTransferIntact(t *testing.T) {
	p := newPKI(t, "db.test")
	g := startGate(t, p, gateAllow, echo)
	addr := startConnector(t, newConnector(t, Options{Server: g.addr, ServerName: "db.test", RootCAs: p.pool}))

	const size = 32 << 20
	payload := make([]byte, size)
	rand.NewChaCha8([32]byte{1}).Read(payload)
	want := sha256.Sum256(payload)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := conn.Write(payload)
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, conn)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", n, err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if n != size || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("got %d bytes (sha256 %x), want %d (sha256 %x)", n, h.Sum(nil), size, want)
	}
}

// Half-close is carried both ways: a client that ends its request still
// gets the answer, and a server that has said everything still hears the
// client out.
func TestHalfClose(t *testing.T) {
	cases := []struct {
		name   string
		server func(*tls.Conn) // the gate's side
		client func(net.Conn) error
	}{
		{
			name: "client ends first",
			server: func(c *tls.Conn) {
				req, _ := io.ReadAll(c) // until the client's close_notify
				fmt.Fprintf(c, "got %q", req)
				c.CloseWrite()
			},
			client: func(c net.Conn) error {
				io.WriteString(c, "request")
				c.(*net.TCPConn).CloseWrite()
				resp, err := io.ReadAll(c)
				if err != nil || string(resp) != `got "request"` {
					return fmt.Errorf("response %q, %v", resp, err)
				}
				return nil
			},
		},
		{
			name: "server ends first",
			server: func(c *tls.Conn) {
				io.WriteString(c, "greeting")
				c.CloseWrite()
				bye, _ := io.ReadAll(c)
				if string(bye) != "bye" {
					c.Close()
				}
			},
			client: func(c net.Conn) error {
				greeting, err := io.ReadAll(c) // EOF once the server half-closed
				if err != nil || string(greeting) != "greeting" {
					return fmt.Errorf("greeting %q, %v", greeting, err)
				}
				if _, err := io.WriteString(c, "bye"); err != nil {
					return fmt.Errorf("write after the server's half-close: %w", err)
				}
				return c.(*net.TCPConn).CloseWrite()
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t, "db.test")
			served := make(chan struct{})
			g := startGate(t, p, gateAllow, func(c *tls.Conn) { tc.server(c); close(served) })
			addr := startConnector(t, newConnector(t, Options{Server: g.addr, ServerName: "db.test", RootCAs: p.pool}))
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.client(conn); err != nil {
				t.Fatal(err)
			}
			select {
			case <-served:
			case <-time.After(10 * time.Second):
				t.Fatal("server side never finished")
			}
		})
	}
}

// Dial names the cause of each failure.
func TestDialFailures(t *testing.T) {
	p := newPKI(t, "db.test", "127.0.0.1")
	other := newPKI(t, "db.test")
	leafPin := PinOf(p.server.Leaf)
	caPin := PinOf(p.ca)
	wrongPin := Pin(sha256.Sum256([]byte("not a key")))

	freeAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}

	cases := []struct {
		name      string
		behaviour gateBehaviour
		down      bool // no gate at all
		opts      Options
		want      error // nil: the dial succeeds
		msg       []string
	}{
		{name: "allowed", opts: Options{ServerName: "db.test", RootCAs: p.pool}},
		{name: "allowed by IP name", opts: Options{RootCAs: p.pool}},
		{name: "closed at accept", behaviour: gateCloseAtAccept, opts: Options{ServerName: "db.test", RootCAs: p.pool, AdminURL: "https://gate.test/"},
			want: ErrNotAllowed, msg: []string{"probably not allowed", "https://gate.test/"}},
		{name: "closed after ClientHello", behaviour: gateCloseAfterHello, opts: Options{ServerName: "db.test", RootCAs: p.pool},
			want: ErrNotAllowed, msg: []string{"probably not allowed", "the gatekeeper admin page"}},
		{name: "reset after ClientHello", behaviour: gateResetAfterHello, opts: Options{ServerName: "db.test", RootCAs: p.pool},
			want: ErrNotAllowed, msg: []string{"probably not allowed"}},
		{name: "gatekeeper down", down: true, opts: Options{ServerName: "db.test", RootCAs: p.pool},
			want: ErrRefused, msg: []string{"nothing accepts connections", "gatekeeper is down"}},
		{name: "no TLS answer", behaviour: gateSilent, opts: Options{ServerName: "db.test", RootCAs: p.pool, Timeout: 300 * time.Millisecond},
			want: ErrTimeout, msg: []string{"no TLS handshake within 300ms"}},
		{name: "not TLS", behaviour: gatePlainText, opts: Options{ServerName: "db.test", RootCAs: p.pool},
			want: ErrTLS, msg: []string{"does not speak TLS"}},
		{name: "wrong CA", opts: Options{ServerName: "db.test", RootCAs: other.pool},
			want: ErrCertificate, msg: []string{"not trusted", "-ca"}},
		{name: "system roots", opts: Options{ServerName: "db.test"},
			want: ErrCertificate, msg: []string{"not trusted"}},
		{name: "wrong name", opts: Options{ServerName: "other.test", RootCAs: p.pool},
			want: ErrCertificate, msg: []string{`"other.test"`, "-sni"}},
		{name: "leaf pin", opts: Options{ServerName: "db.test", RootCAs: p.pool, Pins: []Pin{wrongPin, leafPin}}},
		{name: "CA pin", opts: Options{ServerName: "db.test", RootCAs: p.pool, Pins: []Pin{caPin}}},
		{name: "pin mismatch", opts: Options{ServerName: "db.test", RootCAs: p.pool, Pins: []Pin{wrongPin}},
			want: ErrPin, msg: []string{"-pin", leafPin.String(), caPin.String()}},
		{name: "pin checked after verification", opts: Options{ServerName: "db.test", RootCAs: other.pool, Pins: []Pin{leafPin}},
			want: ErrCertificate},
		{name: "insecure with leaf pin", opts: Options{ServerName: "db.test", InsecureSkipVerify: true, Pins: []Pin{leafPin}}},
		// Unverified, the CA certificate the server sends proves nothing.
		{name: "insecure with CA pin", opts: Options{ServerName: "db.test", InsecureSkipVerify: true, Pins: []Pin{caPin}},
			want: ErrPin},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			if tc.down {
				opts.Server = freeAddr()
			} else {
				opts.Server = startGate(t, p, tc.behaviour, echo).addr
			}
			c := newConnector(t, opts)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := c.Dial(ctx)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				conn.Close()
				return
			}
			if err == nil {
				conn.Close()
				t.Fatalf("Dial succeeded; want %v", tc.want)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Dial: %v\nwant cause %v", err, tc.want)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error lacks %q:\n%v", m, err)
				}
			}
		})
	}
}

// Through Serve, a refused dial closes the local connection and logs the
// explanation once, however often the application retries, with the
// cause as a field; Dialed hears every attempt.
func TestServeLogsRefusalOnce(t *testing.T) {
	p := newPKI(t, "db.test")
	g := startGate(t, p, gateCloseAfterHello, echo)
	core, logs := observer.New(zap.InfoLevel)
	var mu sync.Mutex
	var dialed []error
	addr := startConnector(t, newConnector(t, Options{Server: g.addr, ServerName: "db.test", RootCAs: p.pool,
		AdminURL: "https://gate.test/", Logger: zap.New(core),
		Dialed: func(err error) { mu.Lock(); dialed = append(dialed, err); mu.Unlock() }}))
	for i := range 3 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if b, err := io.ReadAll(conn); err != nil || len(b) > 0 {
			t.Errorf("attempt %d: read %q, %v; want the connection closed", i, b, err)
		}
		conn.Close()
	}
	var refusals int
	for _, e := range logs.All() {
		if strings.Contains(e.Message, "probably not allowed") && strings.Contains(e.Message, "https://gate.test/") {
			refusals++
			if cause, ok := e.ContextMap()["cause"]; !ok || cause != ErrNotAllowed.Error() {
				t.Errorf("refusal logged with cause %v", cause)
			}
		}
	}
	if refusals != 1 {
		t.Errorf("logged the refusal %d times, want once; logs: %v", refusals, logs.All())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dialed) != 3 {
		t.Fatalf("Dialed called %d times, want 3", len(dialed))
	}
	for _, err := range dialed {
		if !errors.Is(err, ErrNotAllowed) {
			t.Errorf("Dialed(%v), want a refusal", err)
		}
	}
}

// When Serve's context ends, it stops accepting, closes live connections
// (after Drain) and returns.
func TestServeStops(t *testing.T) {
	cases := []struct {
		name  string
		drain time.Duration
		// finish makes the live connection end by itself during the drain.
		finish bool
	}{
		{name: "closes live connections at once"},
		{name: "drain lets a connection finish", drain: 5 * time.Second, finish: true},
		{name: "drain expires", drain: 200 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t, "db.test")
			g := startGate(t, p, gateAllow, echo)
			c := newConnector(t, Options{Server: g.addr, ServerName: "db.test", RootCAs: p.pool, Drain: tc.drain})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- c.Serve(ctx, ln) }()

			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, "ping")
			buf := make([]byte, 4)
			if _, err := io.ReadFull(conn, buf); err != nil {
				t.Fatalf("echo before stop: %v", err)
			}
			start := time.Now()
			cancel()
			if tc.finish {
				// Still carried during the drain.
				time.Sleep(50 * time.Millisecond)
				io.WriteString(conn, "pong")
				if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "pong" {
					t.Fatalf("echo during drain: %q, %v", buf, err)
				}
				conn.(*net.TCPConn).CloseWrite()
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return")
			}
			if took := time.Since(start); !tc.finish && took > tc.drain+2*time.Second {
				t.Errorf("Serve took %v to return with drain %v", took, tc.drain)
			}
			if b, err := io.ReadAll(conn); len(b) > 0 {
				t.Errorf("after Serve returned, read %q, %v; want the connection closed", b, err)
			}
			if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
				t.Error("listener still accepts after Serve returned")
			}
		})
	}
}

func TestNewRejectsBadServer(t *testing.T) {
	for _, s := range []string{"", "gate.test", ":5433", "gate.test:"} {
		if _, err := New(Options{Server: s}); err == nil {
			t.Errorf("New(Server: %q) accepted it", s)
		}
	}
}

func TestParsePins(t *testing.T) {
	p := Pin(sha256.Sum256([]byte("key")))
	q := Pin(sha256.Sum256([]byte("other key")))
	cases := []struct {
		in      string
		want    []Pin
		wantErr string
	}{
		{in: p.String(), want: []Pin{p}},
		{in: strings.TrimPrefix(p.String(), "sha256//"), want: []Pin{p}},
		{in: p.String() + ";" + q.String(), want: []Pin{p, q}},
		{in: " " + p.String() + " ; ", want: []Pin{p}},
		{in: "", wantErr: "no pin"},
		{in: "sha256//!!!", wantErr: "not base64"},
		{in: "sha256//YWJj", wantErr: "3 bytes"},
		{in: "sha1//" + strings.TrimPrefix(p.String(), "sha256//"), wantErr: "only sha256//"},
	}
	for _, tc := range cases {
		got, err := ParsePins(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParsePins(%q) error %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParsePins(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// Errors that loopback cannot produce, classified from their shape.
func TestClassify(t *testing.T) {
	sys := func(op string, errno error) error {
		return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, errno)}
	}
	cases := []struct {
		name      string
		err       error
		handshake bool
		answered  bool
		want      error
	}{
		{"no route", sys("connect", syscall.EHOSTUNREACH), false, false, ErrUnreachable},
		{"network down", sys("connect", syscall.ENETUNREACH), false, false, ErrUnreachable},
		{"refused", sys("connect", errnoRefused[0]), false, false, ErrRefused},
		{"connect timeout", sys("connect", errnoTimedOut[0]), false, false, ErrTimeout},
		{"dns", &net.DNSError{Err: "no such host", Name: "gate.test", IsNotFound: true}, false, false, ErrUnresolved},
		{"dns timeout", &net.DNSError{Err: "timeout", Name: "gate.test", IsTimeout: true}, false, false, ErrTimeout},
		{"reset before any answer", sys("read", errnoClosed[0]), true, false, ErrNotAllowed},
		{"another socket error before any answer", sys("read", syscall.EIO), true, false, ErrNotAllowed},
		{"broken pipe writing the hello", sys("write", syscall.EPIPE), true, false, ErrNotAllowed},
		{"EOF before any answer", io.EOF, true, false, ErrNotAllowed},
		{"EOF after the server answered", io.ErrUnexpectedEOF, true, true, ErrTLS},
		{"handshake deadline", context.DeadlineExceeded, true, false, ErrTimeout},
		{"pin", &PinError{}, true, true, ErrPin},
	}
	for _, tc := range cases {
		var got error
		if tc.handshake {
			got = classifyHandshake(tc.err, tc.answered)
		} else {
			got = classifyDial(tc.err)
		}
		if got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
		msg := (&DialError{Cause: got, Server: "gate.test:5433", Err: tc.err}).Error()
		if msg == "" || !strings.Contains(msg, "gate.test:5433") {
			t.Errorf("%s: message %q does not name the server", tc.name, msg)
		}
	}
}
