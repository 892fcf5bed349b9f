package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// rawSocket is the listening socket as the raw accept loop uses it: a
// duplicate of the listener's descriptor, in blocking mode.
type rawSocket struct {
	f       *os.File
	fd      int
	closing atomic.Bool
}

// rawListener returns the socket for the raw accept loop, nil if it
// cannot be had (the portable loop is used then).
func rawListener(ln *net.TCPListener) *rawSocket {
	f, err := ln.File()
	if err != nil {
		return nil
	}
	// Fd puts the descriptor in blocking mode; it shares that with the
	// listener's own, which nothing reads any more.
	return &rawSocket{f: f, fd: int(f.Fd())}
}

// shutdown stops the socket listening and wakes the accept loop, which
// closing the descriptor would not. The descriptor stays open until
// release, so that the loop never calls accept4 on a number that may
// already name another file.
func (r *rawSocket) shutdown() {
	if r.closing.CompareAndSwap(false, true) {
		unix.Shutdown(r.fd, unix.SHUT_RD)
	}
}

// release closes the descriptor: the accept loop does on its way out, or
// stop when the loop never ran.
func (r *rawSocket) release() { r.f.Close() }

// accept is the accept loop on Linux: one goroutine blocked in accept4
// on its own thread, without the poller. A connection dropped at accept
// costs three system calls (accept4, setsockopt SO_LINGER, close) and no
// Go objects, where net.TCPListener.Accept would also go through epoll,
// read the local address and set socket options first. Connections that go
// on become *net.TCPConn in their own goroutine.
func (l *listener) accept(ctx context.Context) {
	defer close(l.done)
	if l.raw == nil {
		l.acceptPortableLoop(ctx)
		return
	}
	defer l.raw.release()
	var backoff time.Duration
	for {
		nfd, sa, err := unix.Accept4(l.raw.fd, unix.SOCK_CLOEXEC)
		if l.raw.closing.Load() {
			if err == nil {
				unix.Close(nfd)
			}
			return
		}
		switch {
		case err == nil:
			backoff = 0
			l.accepted(ctx, nfd, sockaddrAddrPort(sa))
		case err == unix.EINTR || err == unix.ECONNABORTED:
		default:
			backoff = l.acceptFailed(os.NewSyscallError("accept4", err), backoff)
		}
	}
}

// accepted drops or serves one accepted socket.
func (l *listener) accepted(ctx context.Context, fd int, peer netip.AddrPort) {
	lc := l.cfg.Load()
	if l.dropAtAccept(lc, peer.Addr()) {
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		unix.Close(fd)
		return
	}
	l.srv.conns.Add(1)
	go l.serveFD(ctx, fd, lc, peer)
}

// serveFD turns an accepted socket into a *net.TCPConn and serves it.
func (l *listener) serveFD(ctx context.Context, fd int, lc *listenerConfig, peer netip.AddrPort) {
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f) // a duplicate, with keep-alive and no delay set
	f.Close()
	tc, ok := nc.(*net.TCPConn)
	if err != nil || !ok {
		if nc != nil {
			nc.Close()
		}
		l.srv.conns.Done()
		if l.srv.denyLog.allow() {
			l.srv.log.Error("cannot use an accepted socket: " + errors.Join(err, errors.New("not TCP")).Error())
		}
		return
	}
	l.serveConn(ctx, tc, lc, peer)
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
