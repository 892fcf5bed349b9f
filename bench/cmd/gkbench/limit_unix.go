//go:build unix

package main

import "golang.org/x/sys/unix"

// fileLimit is the hard limit on open descriptors, which bench/run raises
// the soft one to.
func fileLimit() (int, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return int(min(lim.Max, 1<<20)), nil
}
