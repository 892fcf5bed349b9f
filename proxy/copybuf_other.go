//go:build !unix

package proxy

import (
	"errors"
	"net"
	"syscall"
)

// rawReader is not written here: the copy keeps a buffer of its own.
func rawReader(interface {
	SyscallConn() (syscall.RawConn, error)
}) (reader, error) {
	return nil, errors.ErrUnsupported
}

// idleHops is false here: waitReadable is not written, so an idle
// direction of a pipe keeps its goroutine.
const idleHops = false

func waitReadable(*net.TCPConn) error { return errors.ErrUnsupported }

// sockIO is the socket itself here.
type sockIO struct{ tc *net.TCPConn }

func newSockIO(tc *net.TCPConn) *sockIO { return &sockIO{tc} }

func (s *sockIO) Read(b []byte) (int, error)  { return s.tc.Read(b) }
func (s *sockIO) Write(b []byte) (int, error) { return s.tc.Write(b) }
