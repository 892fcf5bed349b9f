//go:build !windows

package connector

import "syscall"

var (
	errnoRefused  = []error{syscall.ECONNREFUSED}
	errnoClosed   = []error{syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNABORTED}
	errnoTimedOut = []error{syscall.ETIMEDOUT}
)
