//go:build !linux

package backup

import (
	"errors"
	"net"
)

// peerCredentials: without SO_PEERCRED the socket is not offered (Listen
// refuses); a backup of the embedded store then needs serve stopped.
const peerCredentials = false

func peerUID(*net.UnixConn) (int, error) {
	return -1, errors.New("peer credentials are not available on this system")
}
