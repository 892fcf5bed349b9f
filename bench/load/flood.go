package load

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Flood connects again and again from addresses the proxy denies; each
// attempt waits for the proxy to close the connection (a reset or an end
// of stream) and then closes its side. With a Rate it is an open loop,
// attempts started at that pace whether or not earlier ones are done
// (those that find every worker busy are skipped and counted); without, a
// closed loop as fast as the workers go.
type Flood struct {
	Addr string
	From *Sources
	// Workers is how many attempts may be under way at once.
	Workers int
	// Rate is attempts per second; zero means as fast as possible.
	Rate float64
	// Count bounds the attempts; Duration bounds the time. At least one
	// of them must be set.
	Count    int
	Duration time.Duration
}

// FloodResult is what a flood did.
type FloodResult struct {
	Attempts int64         // started
	Refused  int64         // reset or closed by the proxy, as they should be
	Admitted int64         // still open after a second: the proxy let them in
	Failed   int64         // could not connect (nothing listens, a full backlog)
	Skipped  int64         // due by the rate but no worker was free
	Elapsed  time.Duration // from the first attempt to the last one's end
}

// RefusedRate is the refused connections per second.
func (r FloodResult) RefusedRate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Refused) / r.Elapsed.Seconds()
}

// refuseWait is how long an attempt waits for the proxy to close it.
const refuseWait = time.Second

// Run floods until Count attempts were made or Duration passed, or ctx
// ends.
func (f Flood) Run(ctx context.Context) (FloodResult, error) {
	if f.Count <= 0 && f.Duration <= 0 {
		return FloodResult{}, errors.New("flood: neither a count nor a duration")
	}
	if f.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.Duration)
		defer cancel()
	}
	count := int64(f.Count)
	if count <= 0 {
		count = 1 << 62
	}
	var r FloodResult
	var attempts, refused, admitted, failed, skipped atomic.Int64
	tokens := make(chan struct{}, max(f.Workers, 1))
	start := time.Now()
	var wg sync.WaitGroup
	for range max(f.Workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if f.Rate > 0 {
					select {
					case _, ok := <-tokens:
						if !ok {
							return
						}
					case <-ctx.Done():
						return
					}
				} else if ctx.Err() != nil {
					return
				}
				if attempts.Add(1) > count {
					return
				}
				switch f.once(ctx) {
				case outcomeRefused:
					refused.Add(1)
				case outcomeAdmitted:
					admitted.Add(1)
				case outcomeFailed:
					if ctx.Err() == nil { // not cut short by the end of the run
						failed.Add(1)
					}
				}
			}
		}()
	}
	if f.Rate > 0 {
		pace(ctx, f.Rate, count, tokens, &skipped)
		close(tokens)
	}
	wg.Wait()
	r.Elapsed = time.Since(start)
	r.Attempts = min(attempts.Load(), count)
	r.Refused, r.Admitted, r.Failed, r.Skipped = refused.Load(), admitted.Load(), failed.Load(), skipped.Load()
	return r, nil
}

// pace hands out count tokens at rate per second until ctx ends; a token
// no worker is ready for is skipped.
func pace(ctx context.Context, rate float64, count int64, tokens chan<- struct{}, skipped *atomic.Int64) {
	const tick = time.Millisecond
	start := time.Now()
	var sent int64
	t := time.NewTicker(tick)
	defer t.Stop()
	for sent < count {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due := min(int64(now.Sub(start).Seconds()*rate), count)
			for ; sent < due; sent++ {
				select {
				case tokens <- struct{}{}:
				default:
					skipped.Add(1)
				}
			}
		}
	}
}

type outcome int

const (
	outcomeRefused outcome = iota
	outcomeAdmitted
	outcomeFailed
)

func (f Flood) once(ctx context.Context) outcome {
	c, err := Dial(ctx, f.From.Next(), f.Addr)
	if errors.Is(err, syscall.ECONNRESET) {
		// On loopback the proxy's reset can beat connect's return.
		return outcomeRefused
	}
	if err != nil {
		return outcomeFailed
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(refuseWait))
	var b [1]byte
	_, err = c.Read(b[:])
	if isTimeout(err) {
		return outcomeAdmitted
	}
	return outcomeRefused
}
