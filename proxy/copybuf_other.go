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
