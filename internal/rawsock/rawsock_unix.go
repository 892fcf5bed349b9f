//go:build unix

package rawsock

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Read reads fd once with a raw system call.
func Read(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	return int(n), errno
}

// Write writes fd once with a raw system call.
func Write(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	return int(n), errno
}

// IO reads and writes one plain socket with raw system calls. Its errors
// are RawConn's: deadlines and a closed socket read as they do through
// net.TCPConn (errors.Is os.ErrDeadlineExceeded, net.ErrClosed; a timeout
// is a temporary net.Error, as crypto/tls needs). One Read and one Write
// may run at once, not two of either: the callbacks RawConn calls are
// made once, with their arguments and results in the IO, because a
// closure per call would be an allocation per read and write.
type IO struct {
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

// New returns the IO of tc.
func New(tc *net.TCPConn) *IO {
	s := &IO{tc: tc}
	rc, err := tc.SyscallConn()
	if err != nil {
		return s
	}
	s.rc = rc
	s.readFn = s.readSome
	s.writeFn = s.writeAll
	return s
}

func (s *IO) raw() bool { return s.rc != nil }

// Read reads what the socket has, up to len(b), waiting in the poller
// while it has nothing.
func (s *IO) Read(b []byte) (int, error) {
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
func (s *IO) readSome(fd uintptr) bool {
	for {
		s.rn, s.rerr = Read(int(fd), s.rb)
		if s.rerr != syscall.EINTR {
			return s.rerr != syscall.EAGAIN
		}
	}
}

// Write writes all of b, waiting in the poller while the socket's buffer
// is full.
func (s *IO) Write(b []byte) (int, error) {
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
func (s *IO) writeAll(fd uintptr) bool {
	for s.wn < len(s.wb) {
		m, errno := Write(int(fd), s.wb[s.wn:])
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
