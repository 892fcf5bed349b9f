package load

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/bench/upstream"
)

// Echo is a steady load of round trips: each of Conns connections sends
// Size bytes to the upstream's echo and waits for them to come back, one
// round trip after the other.
type Echo struct {
	Addr string
	TLS  *tls.Config // nil for plain TCP
	Want Negotiated
	From *Sources
	// Conns is how many connections run at once; Size is the message
	// size (64 bytes if zero).
	Conns, Size      int
	Warmup, Duration time.Duration
}

// Run returns the round trips per second during the measured time and
// their latencies.
func (e Echo) Run(ctx context.Context) (float64, Latencies, error) {
	size := e.Size
	if size <= 0 {
		size = 64
	}
	conns := make([]net.Conn, 0, e.Conns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range max(e.Conns, 1) {
		c, err := OpenEcho(ctx, e.Addr, e.From.Next(), e.TLS, e.Want)
		if err != nil {
			return 0, nil, fmt.Errorf("echo: %w", err)
		}
		conns = append(conns, c)
	}
	w := newWindow(e.Warmup, e.Duration)
	lat := make(Latencies, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[i], errs[i] = echoLoop(c, size, w)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, nil, fmt.Errorf("echo: %w", err)
	}
	n := 0
	for _, s := range lat {
		n += len(s)
	}
	return float64(n) / w.seconds(), lat, nil
}

func echoLoop(c net.Conn, size int, w window) ([]time.Duration, error) {
	msg := bytes.Repeat([]byte{'m'}, size)
	back := make([]byte, size)
	c.SetDeadline(w.end.Add(dialTimeout))
	var out []time.Duration
	for {
		start := time.Now()
		if !start.Before(w.end) {
			return out, nil
		}
		if _, err := c.Write(msg); err != nil {
			return out, err
		}
		if _, err := io.ReadFull(c, back); err != nil {
			return out, err
		}
		if w.in(start) && len(out) < maxSamples {
			out = append(out, time.Since(start))
		}
	}
}

// OpenEcho connects from src (with TLS if conf is set), asks the upstream
// for an echo and makes one round trip, so that the connection is known
// to reach the upstream.
func OpenEcho(ctx context.Context, addr string, src netip.Addr, conf *tls.Config, want Negotiated) (net.Conn, error) {
	var c net.Conn
	var err error
	if conf != nil {
		c, err = DialTLS(ctx, src, addr, conf, want)
	} else {
		c, err = Dial(ctx, src, addr)
	}
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(dialTimeout))
	var b [1]byte
	_, err = c.Write([]byte{upstream.Echo, 'x'})
	if err == nil {
		_, err = io.ReadFull(c, b[:])
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
