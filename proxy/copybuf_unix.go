//go:build unix

package proxy

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawReader reads a plain socket: the wait happens in the poller, and a
// buffer is taken only once the socket has something to read.
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
				n, errno = rawRead(int(fd), *bp)
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

// The copy path reads and writes its sockets with raw system calls
// (syscall.RawSyscall), waiting in Go's poller through RawConn. The
// sockets are non-blocking, so a call never waits in the kernel. The
// runtime's usual entry to a system call wakes its monitor thread
// (sysmon) whenever every P was idle, which is the normal state between
// two messages of a database session: with one pgbench client that was
// 1.4 futex calls, 0.8 sleeps and two context switches per transaction
// more than HAProxy makes (docs/benchmarks.md, "Small messages").

func rawRead(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	return int(n), errno
}

func rawWrite(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	return int(n), errno
}

// sockIO reads and writes one plain socket with raw system calls. Its
// errors are RawConn's: deadlines and a closed socket read as they do
// through net.TCPConn (errors.Is os.ErrDeadlineExceeded, net.ErrClosed;
// a timeout is a temporary net.Error, as crypto/tls needs). One read and
// one write may run at once, not two of either: the callbacks RawConn
// calls are made once, with their arguments and results in the sockIO,
// because a closure per call would be an allocation per read and write.
type sockIO struct {
	tc *net.TCPConn
	rc syscall.RawConn // nil: through tc (SyscallConn fails only on a nil conn)

	rb      []byte
	rn      int
	rerr    syscall.Errno
	readFn  func(fd uintptr) bool
	wb      []byte
	wn      int
	werr    syscall.Errno
	writeFn func(fd uintptr) bool
}

func newSockIO(tc *net.TCPConn) *sockIO {
	s := &sockIO{tc: tc}
	rc, err := tc.SyscallConn()
	if err != nil {
		return s
	}
	s.rc = rc
	s.readFn = s.readSome
	s.writeFn = s.writeAll
	return s
}

func (s *sockIO) Read(b []byte) (int, error) {
	if s.rc == nil {
		return s.tc.Read(b)
	}
	if len(b) == 0 {
		return 0, nil
	}
	s.rb = b
	err := s.rc.Read(s.readFn)
	n, errno := s.rn, s.rerr
	s.rb = nil
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, os.NewSyscallError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readSome is Read's callback: one read, or false to wait for more.
func (s *sockIO) readSome(fd uintptr) bool {
	for {
		s.rn, s.rerr = rawRead(int(fd), s.rb)
		if s.rerr != syscall.EINTR {
			return s.rerr != syscall.EAGAIN
		}
	}
}

// Write writes all of b, waiting in the poller while the socket's buffer
// is full.
func (s *sockIO) Write(b []byte) (int, error) {
	if s.rc == nil {
		return s.tc.Write(b)
	}
	s.wb, s.wn, s.werr = b, 0, 0
	err := s.rc.Write(s.writeFn)
	n, errno := s.wn, s.werr
	s.wb = nil
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, os.NewSyscallError("write", errno)
	}
	return n, nil
}

// writeAll is Write's callback: writes until done or an error, or false
// to wait until the socket takes more.
func (s *sockIO) writeAll(fd uintptr) bool {
	for s.wn < len(s.wb) {
		m, errno := rawWrite(int(fd), s.wb[s.wn:])
		switch errno {
		case 0:
			s.wn += m
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.werr = errno
			return true
		}
	}
	return true
}
