package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatekeeper-dev/gatekeeper/internal/rawsock"
)

// idleHop is how long a direction of a pipe waits for bytes before it
// gives up its goroutine. Copying, TLS records above all, grows a
// goroutine's stack to 4–8 KiB, which the runtime shrinks only at a
// garbage collection, one halving at a time. On Linux the idle direction
// then needs no goroutine at all: its socket waits in the watcher's epoll
// set (watcher_linux.go), which starts a fresh goroutine when bytes come.
// Elsewhere the wait goes on in a fresh goroutine on the smallest stack,
// 2 KiB (half.resume). With thousands of idle connections, two
// directions each, those stacks were most of their memory
// (docs/benchmarks.md, "Memory per idle connection"). A hop costs a
// goroutine start and the stack's growth when bytes come again: a few
// microseconds once per idle period, never per message.
const idleHop = 250 * time.Millisecond

// piping is a pipe's two directions. Each runs in one goroutine at a
// time, or none while dormant in the watcher; the last one to end
// finishes the connection.
type piping struct {
	toClient, toUpstream half
	left                 atomic.Int32
}

// half is one direction of a pipe: what its copy loop needs, kept here so
// that a fresh goroutine can take the loop over.
type half struct {
	c        *conn
	p        *piping
	dst, src net.Conn
	out      io.Writer    // dst, through rawsock.IO when it is a plain socket
	sock     *net.TCPConn // the socket under src
	counter  prometheus.Counter
	upward   bool // client to upstream
	sniff    bool // first make sure the client sends no PROXY header

	read          reader // nil: splice
	pooled        bool   // read lends its buffers from copyBufs
	canSplice     bool
	rearmEachRead bool // read moves the deadline itself

	wid uint64 // its id in the watcher while dormant, else 0; under the watcher's mu
}

// pipe copies both ways until both directions ended, half-closing each
// side when the other is done with it. It owns the connection's end:
// the direction that ends last finishes it.
func (c *conn) pipe(client net.Conn, up *net.TCPConn, sniff bool) {
	c.touch()
	c.enter(phasePiping)
	// The dial was the context's last use: cancelling it now, rather than
	// at the end, takes it out of its parent's set of children for the
	// connection's whole life. A revocation closes the sockets (kill).
	c.cancel()
	p := &piping{}
	p.left.Store(2)
	p.toClient.init(c, client, up, c.ln.lm.out)
	p.toUpstream.init(c, up, client, c.ln.lm.in)
	p.toClient.p, p.toUpstream.p = p, p
	p.toUpstream.upward, p.toUpstream.sniff = true, sniff
	c.pipes.Store(p) // before any half can be dormant: kill ends the dormant ones
	go p.toClient.run()
	p.toUpstream.run()
}

func (h *half) init(c *conn, dst, src net.Conn, counter prometheus.Counter) {
	h.c, h.dst, h.src, h.counter = c, dst, src, counter
	h.out = dst
	dtc, dok := dst.(*net.TCPConn)
	if dok {
		h.out = rawsock.New(dtc)
	}
	h.pooled = true
	switch s := src.(type) {
	case *net.TCPConn:
		h.sock = s
		h.read, _ = rawReader(s)
		h.canSplice = dok && h.read != nil
	case *tls.Conn:
		h.sock = c.tcp
		h.read = tlsReader(s)
		h.rearmEachRead = true // tlsReader moves the deadline to drain what is decrypted
	}
	if h.read == nil && !(dok && h.sock == src) { // no raw reader here: a buffer of its own
		h.pooled = false
		buf := make([]byte, copyBufSize)
		h.read = func() (*[]byte, int, error) {
			n, err := src.Read(buf)
			return &buf, n, err
		}
	}
}

// run copies until the direction ends, or until it has been idle for
// idleHop and the watcher (or a fresh goroutine) took its wait over.
func (h *half) run() {
	if h.sniff {
		h.sniff = false
		if !h.sniffHeader() {
			h.end(errKilled)
			return
		}
	}
	hopped, err := h.copy()
	if !hopped {
		h.end(err)
	}
}

// resume is a direction's goroutine after an idle hop. It waits in the
// poller, holding no buffer and on a small stack, until the socket under
// src has bytes (or its end, or an error), then copies on. It wakes up
// every tick like the copy does.
func (h *half) resume() {
	for {
		if err := h.sock.SetReadDeadline(time.Now().Add(h.c.lc.tick)); err != nil {
			h.end(err)
			return
		}
		err := waitReadable(h.sock)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || h.c.killed.Load() {
			h.end(err)
			return
		}
	}
	h.run()
}

// endDormant ends the directions of a killed connection that are dormant
// in the watcher: nothing else would, as a closed socket leaves the epoll
// set without an event. A direction that is running notices the closed
// socket itself.
func (p *piping) endDormant(w *watcher) {
	if w.claim(&p.toClient) {
		p.toClient.end(errKilled)
	}
	if w.claim(&p.toUpstream) {
		p.toUpstream.end(errKilled)
	}
}

// end closes what the direction's end closes: on an error, the whole
// connection; else the write side of its destination, so that the other
// end learns that no more is coming, while the other direction goes on.
func (h *half) end(err error) {
	c := h.c
	switch {
	case err != nil:
		c.kill()
	case h.upward:
		h.dst.(*net.TCPConn).CloseWrite()
	default:
		if tc, ok := h.dst.(*tls.Conn); ok {
			tc.CloseWrite() // close_notify
		}
		c.tcp.CloseWrite()
	}
	if h.p.left.Add(-1) == 0 {
		c.finish()
	}
}

// sniffHeader makes sure an untrusted peer of a fixed tcp route sends no
// PROXY header, and sends what it read to the upstream. It reports
// whether the connection may go on.
func (h *half) sniffHeader() bool {
	c := h.c
	var b []byte
	for {
		h.src.SetReadDeadline(time.Now().Add(c.lc.tick))
		var err error
		b, err = sniffProxyHeader(c, b)
		if err == nil {
			break
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && !c.killed.Load() {
			continue
		}
		if errors.Is(err, errUntrustedProxyHeader) {
			c.refuse(reasonProxyHeader, "", err)
		}
		return false
	}
	if _, err := h.dst.Write(b); err != nil {
		return false
	}
	c.ln.lm.in.Add(float64(len(b)))
	c.touch()
	return true
}

// copy copies src to dst until src ends (nil) or either fails, or until
// it handed its wait over (hopped): to the watcher, or else to a fresh
// goroutine. While bytes move it wakes up at least every tick to count
// them and mark the connection active; the idle sweep closes it when
// nothing moved for the idle timeout, dormant or not. The bytes go
// through a buffer lent only while there is something to copy
// (copyBufs). Between two sockets, once a read fills that buffer (a bulk
// transfer), the kernel moves the next bytes itself (splice, up to
// spliceChunk): for the small messages of a database session a splice is
// the same number of system calls as a read and a write, each costlier,
// plus a pipe (issue 12, docs/benchmarks.md).
func (h *half) copy() (hopped bool, err error) {
	c := h.c
	dtc, _ := h.dst.(*net.TCPConn)
	period := min(c.lc.tick, idleHop)
	// The read deadline of a socket is moved once per half period, not
	// before every read: a deadline is a runtime timer to reset, and a
	// busy connection reads thousands of times a second. It is never more
	// than a tick away, so the wake-ups the idle sweep relies on stay.
	var rearm time.Time
	bulk := false
	for {
		if now := time.Now(); !now.Before(rearm) {
			if err := h.src.SetReadDeadline(now.Add(period)); err != nil {
				return false, err
			}
			rearm = now.Add(period / 2)
			if h.rearmEachRead {
				rearm = now
			}
		}
		var n int64
		var err error
		if h.read == nil || bulk {
			bulk = false
			n, err = io.CopyN(dtc, h.sock, spliceChunk)
		} else {
			var bp *[]byte
			var m int
			bp, m, err = h.read()
			if m > 0 {
				var werr error
				if tc, ok := h.dst.(*tls.Conn); ok && tc.NetConn() == c {
					m, werr = c.corked(tc, (*bp)[:m])
				} else {
					m, werr = h.out.Write((*bp)[:m])
				}
				if werr != nil {
					err = werr
				}
			}
			if bp != nil && h.pooled {
				bulk = h.canSplice && m == len(*bp)
				copyBufs.Put(bp)
			}
			n = int64(m)
		}
		if n > 0 {
			h.counter.Add(float64(n))
			c.touch()
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return false, nil
		case errors.Is(err, os.ErrDeadlineExceeded) && !c.killed.Load():
			// Nothing for a while: the idle sweep decides when it is too
			// long; until then the wait goes on in the watcher, without a
			// goroutine, or else in a fresh one.
			if idleHops && n == 0 {
				if !c.ln.srv.watcher.park(h) {
					go h.resume()
				}
				return true, nil
			}
		default:
			return false, err
		}
	}
}
