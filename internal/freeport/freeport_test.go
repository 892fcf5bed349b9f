package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestLoopback(t *testing.T) {
	lo := ephemeralLow()
	seen := map[int]bool{}
	for range 50 {
		p, err := Loopback(true)
		if err != nil {
			t.Fatal(err)
		}
		if p < 10000 || p+10000 >= lo {
			t.Fatalf("port %d (bus %d) not below the ephemeral range from %d", p, p+10000, lo)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	// A port in use is never handed out.
	p, err := Loopback(false)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if free(p) {
		t.Errorf("port %d is listened on, but free says it is free", p)
	}
}
