package load

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// bindNoPort lets the kernel pick the source port at connect time, by the
// whole four-tuple, rather than at bind: many connections from one source
// address to several destinations then share the ephemeral ports.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
