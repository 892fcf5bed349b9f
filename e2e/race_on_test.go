//go:build race

package e2e

// raceBuild: the binary under test is built with the race detector too.
const raceBuild = true
