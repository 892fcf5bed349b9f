// Package rawsock reads and writes plain TCP sockets with raw system
// calls, waiting in Go's poller as net.TCPConn does.
//
// The runtime's usual entry to a system call (syscall.Syscall) wakes its
// monitor thread, sysmon, whenever every P was idle, and sysmon then polls
// every 20 µs for a millisecond. That is the normal state of a process
// that answers small messages now and then: between two messages of a
// database session for the proxy, between two batches of the change feed
// for an instance following Redis. The sockets are non-blocking, so a raw
// call (syscall.RawSyscall) never waits in the kernel and needs no entry:
// the wait happens in the poller through syscall.RawConn, where deadlines
// still hold. With one pgbench client the usual entry was 1.4 futex calls,
// 0.8 sleeps and two context switches per transaction more than HAProxy
// makes (docs/benchmarks.md, "Small messages").
package rawsock

import "net"

// Wrap returns c reading and writing through an IO when it is a plain TCP
// connection on a system where that works, and c itself otherwise (TLS,
// unix sockets, Windows).
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	io := New(tc)
	if !io.raw() {
		return c
	}
	return &Conn{Conn: tc, io: io}
}

// Conn is a TCP connection whose Read and Write are an IO's; its other
// methods are net.Conn's. Like IO, it takes one Read and one Write at a
// time, which is how a client of a request-reply protocol uses a
// connection.
//
// It offers no SyscallConn, on purpose: go-redis checks a pooled
// connection that has one before every use with a recvfrom through
// syscall.Syscall, which is the wake-up of the monitor thread this
// package exists to avoid. Without it the check is skipped, as it is for
// TLS connections; a connection the server closed fails its next command,
// which go-redis retries on another.
type Conn struct {
	net.Conn // the *net.TCPConn, as an interface: its other methods stay hidden
	io       *IO
}

func (c *Conn) Read(b []byte) (int, error)  { return c.io.Read(b) }
func (c *Conn) Write(b []byte) (int, error) { return c.io.Write(b) }
