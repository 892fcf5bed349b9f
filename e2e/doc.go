// Package e2e holds end-to-end tests that build the gatekeeper binary,
// run it with generated configurations on free loopback ports, and drive
// it with real clients: psql, curl, Go TLS clients bound to their own
// loopback addresses, a local ACME server (pebble) and Redis.
//
// It has no code of its own; see the _test.go files. Run it with
//
//	go test ./e2e/
//
// Tests that need a tool the machine lacks (psql with a PostgreSQL on
// 127.0.0.1:5432, curl, redis-server) skip, except when the CI environment
// variable is set, where they fail.
package e2e
