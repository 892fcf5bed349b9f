package connector

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLeaseOnRefusal: when the gate refuses this computer, Serve asks for
// a lease over the family the gate was reached over (tcp4 here) and tries
// once more, and the application's connection goes through with no human
// step. Without a lease the connection is closed as before.
func TestLeaseOnRefusal(t *testing.T) {
	p := newPKI(t, "db.test")
	g := startGate(t, p, gateCloseAfterHello, echo)
	var mu sync.Mutex
	var asked []string
	grant := true
	addr := startConnector(t, newConnector(t, Options{Server: g.addr, ServerName: "db.test", RootCAs: p.pool,
		Lease: func(ctx context.Context, network string) (time.Time, error) {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, network)
			if !grant {
				return time.Time{}, io.ErrUnexpectedEOF
			}
			g.admit.Store(true)
			return time.Now().Add(time.Hour), nil
		}}))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("through the lease: %q, %v", buf, err)
	}
	mu.Lock()
	if len(asked) != 1 || asked[0] != "tcp4" {
		t.Fatalf("lease asked %v, want once over tcp4", asked)
	}
	grant = false
	mu.Unlock()

	// The gate refuses again and no lease comes: the connection closes.
	g.admit.Store(false)
	conn2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	conn2.SetDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(conn2); err != nil || len(b) > 0 {
		t.Fatalf("without a lease: read %q, %v; want the connection closed", b, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 2 {
		t.Fatalf("lease asked %d times, want 2", len(asked))
	}
}

// TestLeaseSettles: a lease reaches the gate a moment after it is
// granted; the connector tries again while the gate still refuses, and
// the application's first connection goes through, on one lease request.
func TestLeaseSettles(t *testing.T) {
	p := newPKI(t, "db.test")
	g := startGate(t, p, gateCloseAfterHello, echo)
	var asks atomic.Int32
	addr := startConnector(t, newConnector(t, Options{Server: g.addr, ServerName: "db.test", RootCAs: p.pool,
		Lease: func(ctx context.Context, network string) (time.Time, error) {
			asks.Add(1)
			g.settle.Store(3) // the next three connections are still refused
			g.admit.Store(true)
			return time.Now().Add(time.Hour), nil
		}}))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("through a lease that took three refusals to arrive: %q, %v", buf, err)
	}
	if n := asks.Load(); n != 1 {
		t.Fatalf("lease asked %d times, want once", n)
	}
	if left := g.settle.Load(); left >= 0 {
		t.Fatalf("the gate refused %d connections after the lease, want 3 before the one that passed", 3-left)
	}
}

// TestLeaseRenewed: while a connection is open, the lease is asked for
// again before it ends.
func TestLeaseRenewed(t *testing.T) {
	p := newPKI(t, "db.test")
	g := startGate(t, p, gateCloseAfterHello, echo)
	asks := make(chan string, 100)
	c := newConnector(t, Options{Server: g.addr, ServerName: "db.test", RootCAs: p.pool,
		Lease: func(ctx context.Context, network string) (time.Time, error) {
			g.admit.Store(true)
			asks <- network
			return time.Now().Add(200 * time.Millisecond), nil
		}})
	c.renewFloor = 10 * time.Millisecond
	addr := startConnector(t, c)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn.Write([]byte("ping"))
	if _, err := io.ReadFull(conn, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // the first ask, then two renewals with the connection open
		select {
		case n := <-asks:
			if n != "tcp4" {
				t.Fatalf("ask %d over %s", i, n)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d lease requests while connected", i)
		}
	}
}
