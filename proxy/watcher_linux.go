package proxy

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// watcher holds the dormant directions of idle pipes without a goroutine
// each: a dormant half is its socket in an epoll set of the proxy's own,
// and one goroutine waits in epoll_wait for any of them to be readable.
// Two goroutines, one per direction of an idle connection, were 4.7 KiB
// of stacks and descriptors (docs/benchmarks.md, "Memory per idle
// connection").
//
// A half is dormant while it is in the dormant map. The rule that keeps
// each half in exactly one owner's hands: whoever takes it out of the map
// (claim, under mu) owns it. The watcher takes it out on an event and
// starts its copy again; a connection's kill takes it out and ends it; so
// does the watcher's close. A half that nobody took out stays dormant.
type watcher struct {
	log  *zap.Logger
	epfd int
	wake int // an eventfd in the set, registered as id 0: close writes to it
	done chan struct{}

	mu      sync.Mutex
	closed  bool // no new half is taken; epfd may be closed
	next    uint64
	dormant map[uint64]*half
	stats   watchStats
}

// watchStats count what the watcher did, for tests: work, not time.
type watchStats struct {
	parked int // halves registered
	woken  int // halves whose socket became readable
	ended  int // dormant halves a kill or the watcher's close ended
}

// idleEvents are what a dormant half waits for: bytes, the peer's end,
// and (always reported) an error or hang-up. Level-triggered, so that
// bytes that arrived before the registration are reported at once;
// one-shot, so that a half is reported once per registration and its
// socket stays in the set, disabled, until the next one.
const idleEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// newWatcher creates the epoll set; start starts the goroutine that
// waits on it.
func newWatcher(log *zap.Logger) (*watcher, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create the epoll set of idle connections: %w", os.NewSyscallError("epoll_create1", err))
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("create the epoll set of idle connections: %w", os.NewSyscallError("eventfd", err))
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN} // data 0: the wake-up
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(wake)
		unix.Close(epfd)
		return nil, fmt.Errorf("create the epoll set of idle connections: %w", os.NewSyscallError("epoll_ctl", err))
	}
	return &watcher{log: log, epfd: epfd, wake: wake, done: make(chan struct{}), dormant: make(map[uint64]*half)}, nil
}

// start starts the goroutine that waits for events. Until then no half is
// parked: there is no connection before the server runs.
func (w *watcher) start() {
	if w != nil {
		go w.run()
	}
}

// park makes h dormant: its copy goroutine may return, and the watcher
// starts h.run again once h's socket is readable. It reports false if h
// could not be registered (the watcher is closed or absent, the socket
// closed meanwhile, or epoll_ctl failed); the caller then still owns h.
func (w *watcher) park(h *half) bool {
	if w == nil {
		return false
	}
	rc, err := h.sock.SyscallConn()
	if err != nil {
		return false
	}
	// The registration happens under mu: an event for it cannot be
	// claimed before it is in the map, and close cannot close epfd under
	// it.
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.next++
	id := w.next
	ev := unix.EpollEvent{Events: idleEvents, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	var cerr error
	// Inside Control the descriptor is the socket's and cannot be closed
	// and reused meanwhile; once the socket is closed, Control fails and
	// nothing is registered. A socket parked before is still in the set,
	// disabled by its one-shot event: it is re-armed with the new id.
	if err := rc.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
		if cerr == unix.ENOENT {
			cerr = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		}
	}); err != nil || cerr != nil {
		return false
	}
	w.dormant[id] = h
	h.wid = id
	w.stats.parked++
	return true
}

// claim takes h out of the watcher if it is dormant, and reports whether
// it did: the caller then owns h. The event that may still come for its
// socket finds no half and is dropped.
func (w *watcher) claim(h *half) bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if h.wid == 0 {
		return false
	}
	delete(w.dormant, h.wid)
	h.wid = 0
	w.stats.ended++
	return true
}

// count says how many halves are dormant, and what the watcher did.
func (w *watcher) count() (int, watchStats) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.dormant), w.stats
}

// run waits for events and starts the copy of each half whose socket is
// readable, until close wakes it. Then, or if epoll_wait fails, it ends
// what is still dormant.
func (w *watcher) run() {
	defer close(w.done)
	events := make([]unix.EpollEvent, 128)
	var failed error
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			failed = os.NewSyscallError("epoll_wait", err)
			break
		}
		stop := false
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				stop = true
				continue
			}
			w.mu.Lock()
			h := w.dormant[id]
			if h != nil {
				delete(w.dormant, id)
				h.wid = 0
				w.stats.woken++
			}
			w.mu.Unlock()
			if h != nil { // else stale: the half was ended, or parked again under a new id
				go h.run()
			}
		}
		if stop {
			break
		}
	}
	w.mu.Lock()
	w.closed = true
	left := w.dormant
	w.dormant = nil
	for _, h := range left {
		h.wid = 0
	}
	if failed == nil {
		w.stats.ended += len(left)
	} else {
		w.stats.woken += len(left)
	}
	w.mu.Unlock()
	unix.Close(w.wake)
	unix.Close(w.epfd)
	if failed != nil {
		// Nothing watches them any more: their copies go on, and wait in
		// goroutines of their own from now on (half.resume).
		w.log.Error("the watcher of idle connections failed: idle connections keep a goroutine each from now on", zap.Error(failed))
		for _, h := range left {
			go h.run()
		}
		return
	}
	for _, h := range left {
		h.end(errKilled)
	}
}

// close stops the watcher, once started, and ends every half still
// dormant. The server calls it once its connections are gone, when there
// should be none.
func (w *watcher) close() {
	if w == nil {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	w.mu.Lock()
	if !w.closed {
		unix.Write(w.wake, one[:])
	}
	w.mu.Unlock()
	<-w.done
}
