//go:build !unix

package proxy

import (
	"errors"
	"syscall"
)

// rawReader is not written here: the copy keeps a buffer of its own.
func rawReader(interface {
	SyscallConn() (syscall.RawConn, error)
}) (reader, error) {
	return nil, errors.ErrUnsupported
}
