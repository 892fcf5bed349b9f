package redisstore

import (
	"context"
	"net"
	"runtime"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/internal/rawsock"
)

// The store's connections to Redis read and write with raw system calls
// (rawDialer), on a single node and on every node of a Cluster, and
// commands work through them.
func TestConnectionsAreRaw(t *testing.T) {
	onStandaloneAndCluster(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, err := Open(ctx, url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var dial func(ctx context.Context, network, addr string) (net.Conn, error)
		var addr string
		if s.cluster != nil {
			o := s.cluster.Options()
			dial, addr = o.Dialer, o.Addrs[0]
		} else {
			o := s.single.Options()
			dial, addr = o.Dialer, o.Addr
		}
		c, err := dial(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, raw := c.(*rawsock.Conn); raw != (runtime.GOOS != "windows") {
			t.Fatalf("the store dialed a %T", c)
		}
		create(t, s, "raw")
		if d := load(t, s); len(d.Accounts) != 1 {
			t.Fatalf("loaded %d accounts, want the one created", len(d.Accounts))
		}
	})
}
