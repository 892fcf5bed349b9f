package connector

import "syscall"

// Windows Sockets error codes (winerror.h): package syscall's ECONNRESET
// and friends are invented values on Windows that no socket returns.
var (
	errnoRefused  = []error{syscall.Errno(10061)}                           // WSAECONNREFUSED
	errnoClosed   = []error{syscall.WSAECONNRESET, syscall.WSAECONNABORTED} // 10054, 10053
	errnoTimedOut = []error{syscall.Errno(10060)}                           // WSAETIMEDOUT
)
