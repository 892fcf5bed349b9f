package load

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/bench/upstream"
)

// Handshakes measures new TLS connections per second: each worker
// connects, completes a full handshake (the client keeps no session, so
// nothing resumes), makes one echo round trip through to the upstream,
// so that the server has finished its side too, waits for the upstream
// to close (see upstream.Once) and closes; then again.
type Handshakes struct {
	Addr string
	TLS  *tls.Config // its ClientSessionCache must be nil
	Want Negotiated
	From *Sources
	// Workers is how many connect at once.
	Workers          int
	Warmup, Duration time.Duration
	// MaxErrors ends the run with an error once exceeded. If zero, 100.
	MaxErrors int
}

// Run returns the connections completed per second during the measured
// time.
func (h Handshakes) Run(ctx context.Context) (float64, error) {
	if h.TLS.ClientSessionCache != nil {
		return 0, fmt.Errorf("handshakes: the client configuration resumes sessions")
	}
	maxErrors := int64(h.MaxErrors)
	if maxErrors == 0 {
		maxErrors = 100
	}
	w := newWindow(h.Warmup, h.Duration)
	ctx, cancel := context.WithDeadline(ctx, w.end.Add(dialTimeout))
	defer cancel()
	var done, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range max(h.Workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(w.end) && ctx.Err() == nil {
				err := h.once(ctx)
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					if failed.Add(1) > maxErrors {
						cancel()
					}
					continue
				}
				if w.in(time.Now()) {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > maxErrors {
		return 0, fmt.Errorf("handshakes: %d failed, the first: %w", n, *firstErr.Load())
	}
	return float64(done.Load()) / w.seconds(), nil
}

func (h Handshakes) once(ctx context.Context) error {
	c, err := DialTLS(ctx, h.From.Next(), h.Addr, h.TLS, h.Want)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(dialTimeout))
	if _, err := c.Write([]byte{upstream.Once, 'x'}); err != nil {
		return err
	}
	b, err := io.ReadAll(c)
	if err == nil && string(b) != "x" {
		err = fmt.Errorf("got %q back, want x", b)
	}
	return err
}
