package load

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
)

// OpenIdle opens n echo connections (TLS with conf if set), workers at a
// time, each making one round trip so that it is known to reach the
// upstream, and returns them open and idle. On error it closes what it
// opened.
func OpenIdle(ctx context.Context, addr string, from *Sources, conf *tls.Config, want Negotiated, n, workers int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	errs := make([]error, max(workers, 1))
	var next int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := OpenEcho(ctx, addr, from.Next(), conf, want)
				if err != nil {
					errs[w] = fmt.Errorf("connection %d of %d: %w", i+1, n, err)
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			CloseAll(conns)
			return nil, fmt.Errorf("open idle connections: %w", err)
		}
	}
	return conns, ctx.Err()
}

// CloseAll closes every connection that is not nil.
func CloseAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
