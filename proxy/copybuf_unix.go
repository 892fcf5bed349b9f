//go:build unix

package proxy

import (
	"io"
	"net"
	"os"
	"syscall"

	"github.com/gatekeeper-dev/gatekeeper/internal/rawsock"
)

// rawReader reads a plain socket with raw system calls (rawsock): the
// wait happens in the poller, and a buffer is taken only once the socket
// has something to read.
func rawReader(tc interface {
	SyscallConn() (syscall.RawConn, error)
}) (reader, error) {
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	return func() (*[]byte, int, error) {
		var bp *[]byte
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			bp = copyBufs.Get().(*[]byte)
			for {
				var errno syscall.Errno
				n, errno = rawsock.Read(int(fd), *bp)
				rerr = nil
				if errno != 0 {
					rerr = errno
				}
				if errno != syscall.EINTR {
					break
				}
			}
			if rerr == syscall.EAGAIN {
				copyBufs.Put(bp)
				bp = nil
				return false // wait until readable, then call again
			}
			return true
		})
		switch {
		case err != nil: // a deadline, or closed
			return nil, 0, err
		case rerr != nil:
			copyBufs.Put(bp)
			return nil, 0, os.NewSyscallError("read", rerr)
		case n <= 0:
			copyBufs.Put(bp)
			return nil, 0, io.EOF
		}
		return bp, n, nil
	}, nil
}

// idleHops says whether an idle direction of a pipe moves to a fresh
// goroutine (half.resume), which needs waitReadable.
const idleHops = true

// waitReadable waits in the poller until s has bytes to read, its end or
// an error, and reads nothing: the wait takes no buffer and little stack.
// The socket's read deadline bounds it.
func waitReadable(s *net.TCPConn) error {
	rc, err := s.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(func(fd uintptr) bool {
		var b [1]byte
		for {
			_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err != syscall.EINTR {
				return err != syscall.EAGAIN
			}
		}
	})
}
