package proxy

import (
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// rateLog lets the first burst lines of each interval through and counts
// the rest, which a summary line reports once the interval is over. It is
// what keeps a flood of denied clients from flooding the log; the check
// costs two atomic operations and allocates nothing.
type rateLog struct {
	log      *zap.Logger
	what     string // "denied connections", in the summary line
	burst    int64
	interval int64 // nanoseconds

	start      atomic.Int64 // current interval's start, Unix nanoseconds
	n          atomic.Int64 // lines asked for in the current interval
	suppressed atomic.Int64 // lines not written since the last summary
}

func newRateLog(log *zap.Logger, what string, burst int, interval time.Duration) *rateLog {
	return &rateLog{log: log, what: what, burst: int64(burst), interval: int64(interval)}
}

// allow reports whether a line may be written now.
func (r *rateLog) allow() bool {
	r.tick()
	if r.n.Add(1) <= r.burst {
		return true
	}
	r.suppressed.Add(1)
	return false
}

// tick ends the interval if it is over and writes the summary of the
// lines it suppressed. allow calls it; a ticker calls it too, so that a
// flood that stopped still gets its summary.
func (r *rateLog) tick() {
	now := time.Now().UnixNano()
	if s := r.start.Load(); now-s >= r.interval && r.start.CompareAndSwap(s, now) {
		r.n.Store(0)
		if n := r.suppressed.Swap(0); n > 0 {
			r.log.Warn("log lines suppressed", zap.String("about", r.what), zap.Int64("suppressed", n),
				zap.Duration("interval", time.Duration(r.interval)))
		}
	}
}
