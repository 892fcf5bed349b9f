package load

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/bench/upstream"
)

// Stream measures throughput: Conns connections to an upstream.Server
// (through a proxy or not), half of them uploading to its sink and half
// downloading from its source, as fast as they can.
type Stream struct {
	Addr string
	// TLS, if set, makes the connections TLS clients with this
	// configuration; Want is checked on each.
	TLS  *tls.Config
	Want Negotiated
	From *Sources
	// Conns is how many connections; at least 2 (one each way).
	Conns int
	// Warmup runs before Duration, the measured time.
	Warmup, Duration time.Duration
}

// streamBuf is the size of each read and write.
const streamBuf = 256 << 10

// Run opens the connections, streams and returns the bytes per second
// moved during the measured time, both directions summed.
func (s Stream) Run(ctx context.Context) (float64, error) {
	n := max(s.Conns, 2)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		var c net.Conn
		var err error
		if s.TLS != nil {
			c, err = DialTLS(ctx, s.From.Next(), s.Addr, s.TLS, s.Want)
		} else {
			c, err = Dial(ctx, s.From.Next(), s.Addr)
		}
		if err != nil {
			return 0, fmt.Errorf("stream: connect: %w", err)
		}
		conns = append(conns, c)
		cmd := byte(upstream.Sink)
		if i%2 == 1 {
			cmd = upstream.Source
		}
		if _, err := c.Write([]byte{cmd}); err != nil {
			return 0, fmt.Errorf("stream: %w", err)
		}
	}
	w := newWindow(s.Warmup, s.Duration)
	counts := make([]atomic.Int64, n)
	var stop atomic.Bool
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = streamConn(c, i%2 == 0, &counts[i], &stop)
		}()
	}
	sum := func() int64 {
		var t int64
		for i := range counts {
			t += counts[i].Load()
		}
		return t
	}
	err := SleepUntil(ctx, w.start)
	before := sum()
	if err == nil {
		err = SleepUntil(ctx, w.end)
	}
	after := sum()
	stop.Store(true)
	for _, c := range conns {
		c.SetDeadline(time.Now()) // wakes the blocked reads and writes
	}
	wg.Wait()
	if err != nil {
		return 0, err
	}
	for _, e := range errs {
		if e != nil {
			return 0, fmt.Errorf("stream: %w", e)
		}
	}
	return float64(after-before) / w.seconds(), nil
}

// streamConn uploads or downloads until stop, adding every byte moved to
// count.
func streamConn(c net.Conn, upload bool, count *atomic.Int64, stop *atomic.Bool) error {
	buf := make([]byte, streamBuf)
	for !stop.Load() {
		var n int
		var err error
		if upload {
			n, err = c.Write(buf)
		} else {
			n, err = c.Read(buf)
		}
		count.Add(int64(n))
		if err != nil {
			if stop.Load() && isTimeout(err) {
				return nil
			}
			return err
		}
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
