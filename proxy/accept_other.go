//go:build !linux

package proxy

import (
	"context"
	"net"
)

// rawSocket exists only where a raw accept loop is written.
type rawSocket struct{}

func rawListener(*net.TCPListener) *rawSocket { return nil }

func (*rawSocket) close() {}

// accept is the accept loop where no cheaper one is written.
func (l *listener) accept(ctx context.Context) { l.acceptPortable(ctx) }
