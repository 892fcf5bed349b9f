//go:build !unix

package proxy

import "testing"

// processCPU is written with getrusage, which this system lacks: the
// benchmarks that report the proxy's CPU time do not run here.
func processCPU(b *testing.B) int64 {
	b.Skip("no getrusage on this system")
	return 0
}
