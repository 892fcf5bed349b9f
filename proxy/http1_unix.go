//go:build unix

package proxy

import (
	"net"

	"golang.org/x/sys/unix"
)

// upstreamGone reports whether the upstream closed up, or sent something
// unasked, while it was unused: a read that does not wait, of what is
// there without taking it.
func upstreamGone(up *net.TCPConn) bool {
	rc, err := up.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	err = rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		gone = err != unix.EAGAIN || n > 0
	})
	return err != nil || gone
}
