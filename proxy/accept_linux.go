package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// rawSocket is the listening socket as the raw accept loop uses it: a
// duplicate of the listener's descriptor in Go's poller as an os.File. A
// TCPListener's own RawConn cannot wait for readiness (its Read is
// refused), an os.File's can.
type rawSocket struct {
	f *os.File
}

// rawListener returns the socket for the raw accept loop, nil if it
// cannot be had (the portable loop is used then).
func rawListener(ln *net.TCPListener) *rawSocket {
	rc, err := ln.SyscallConn()
	if err != nil {
		return nil
	}
	dup, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) { dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		return nil
	}
	// The duplicate shares the listener's non-blocking mode, so NewFile
	// puts it in the poller.
	return &rawSocket{f: os.NewFile(uintptr(dup), "listener")}
}

// close wakes the accept loop's wait and closes the descriptor once the
// wait has returned, so that accept4 never runs on a number that may
// already name another file.
func (r *rawSocket) close() { r.f.Close() }

// accept is the accept loop on Linux, the portable one if the raw socket
// could not be had.
func (l *listener) accept(ctx context.Context) {
	if l.raw == nil {
		l.acceptPortable(ctx)
		return
	}
	l.acceptPolled(ctx)
}

// acceptPolled is the accept loop on Linux: the listening socket stays
// non-blocking in Go's poller, and each time it is ready accept4 drains
// its queue, up to acceptBatch sockets, before waiting again. A connection
// dropped at accept costs three system calls (accept4, setsockopt
// SO_LINGER, close) and no Go objects, where net.TCPListener.Accept would
// also register it with epoll, read its local address and set socket
// options first; a flood costs one poller wake-up per batch. Connections
// that go on become *net.TCPConn in their own goroutine.
//
// A goroutine blocked in accept4 on a blocking duplicate did as well per
// denied connection, but kept allowed clients' throughput less well under
// a flood (docs/benchmarks.md) and held a thread per listener.
func (l *listener) acceptPolled(ctx context.Context) {
	defer close(l.done)
	rc, err := l.raw.f.SyscallConn()
	if err != nil {
		l.raw.close()
		l.acceptPortableLoop(ctx)
		return
	}
	var backoff time.Duration
	for {
		var acceptErr error
		err := rc.Read(func(fd uintptr) bool {
			for range acceptBatch {
				// Blocking: os.NewFile in serveFD would register a
				// non-blocking socket with the poller only to drop it
				// again, and net.FileConn makes its duplicate
				// non-blocking anyway.
				nfd, sa, err := unix.Accept4(int(fd), unix.SOCK_CLOEXEC)
				switch {
				case err == nil:
					l.accepted(ctx, nfd, sockaddrAddrPort(sa))
				case err == unix.EAGAIN:
					return false // wait until the socket is ready again
				case err == unix.EINTR || err == unix.ECONNABORTED:
				default:
					acceptErr = os.NewSyscallError("accept4", err)
					return true
				}
			}
			return true // let other goroutines run, then go on
		})
		switch {
		case err != nil:
			l.raw.close()
			return // the listener is closed
		case acceptErr != nil:
			backoff = l.acceptFailed(acceptErr, backoff)
		default:
			backoff = 0
		}
	}
}

// acceptBatch bounds how many sockets one wake-up accepts, so that a
// flood cannot keep the loop from yielding.
const acceptBatch = 64

// accepted drops or serves one accepted socket.
func (l *listener) accepted(ctx context.Context, fd int, peer netip.AddrPort) {
	lc := l.cfg.Load()
	if l.dropAtAccept(lc, peer.Addr()) {
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		unix.Close(fd)
		return
	}
	key, ok := l.enterPending(lc, peer.Addr())
	if !ok {
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		unix.Close(fd)
		return
	}
	l.srv.conns.Add(1)
	go l.serveFD(ctx, fd, lc, peer, key)
}

// serveFD turns an accepted socket into a *net.TCPConn and serves it.
func (l *listener) serveFD(ctx context.Context, fd int, lc *listenerConfig, peer netip.AddrPort, pendingKey netip.Addr) {
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f) // a duplicate, with keep-alive and no delay set
	f.Close()
	tc, ok := nc.(*net.TCPConn)
	if err != nil || !ok {
		if nc != nil {
			nc.Close()
		}
		l.srv.conns.Done()
		l.leavePending(pendingKey)
		if l.srv.denyLog.allow() {
			l.srv.log.Error("cannot use an accepted socket: " + errors.Join(err, errors.New("not TCP")).Error())
		}
		return
	}
	l.serveConn(ctx, tc, lc, peer, pendingKey)
}

func sockaddrAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{} // fails every check
}
