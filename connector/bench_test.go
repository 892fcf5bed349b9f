package connector

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkThroughput moves bytes from a client to the stand-in gate, which
// discards them: over TLS directly (what an application that speaks TLS
// would do), and as plain TCP through the connector (one more hop on
// loopback). The ratio of the two is the connector's cost.
//
//	go test ./connector -run XXX -bench Throughput -benchtime 2s
func BenchmarkThroughput(b *testing.B) {
	p := newPKI(b, "db.test")
	received := make(chan int64, 1)
	g := startGate(b, p, gateAllow, func(c *tls.Conn) {
		n, _ := io.Copy(io.Discard, c)
		received <- n
	})
	chunk := make([]byte, 1<<20)

	run := func(b *testing.B, conn net.Conn, closeWrite func() error) {
		b.SetBytes(int64(len(chunk)))
		b.ResetTimer()
		for range b.N {
			if _, err := conn.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		if err := closeWrite(); err != nil {
			b.Fatal(err)
		}
		select {
		case n := <-received:
			if n != int64(b.N)*int64(len(chunk)) {
				b.Fatalf("gate received %d bytes, want %d", n, b.N*len(chunk))
			}
		case <-time.After(30 * time.Second):
			b.Fatal("gate never finished reading")
		}
		b.StopTimer()
		conn.Close()
	}

	b.Run("direct-tls", func(b *testing.B) {
		conn, err := tls.Dial("tcp", g.addr, &tls.Config{ServerName: "db.test", RootCAs: p.pool})
		if err != nil {
			b.Fatal(err)
		}
		run(b, conn, conn.CloseWrite)
	})
	b.Run("connector", func(b *testing.B) {
		addr := startConnector(b, newConnector(b, Options{Server: g.addr, ServerName: "db.test", RootCAs: p.pool}))
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		run(b, conn, conn.(*net.TCPConn).CloseWrite)
	})
}
