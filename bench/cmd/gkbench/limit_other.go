//go:build !unix

package main

// fileLimit is a guess where there is no rlimit: bench/run needs Linux.
func fileLimit() (int, error) { return 2048, nil }
