// Package freeport hands out loopback ports for the servers that tests
// start as child processes (gatekeeper, redis-server).
//
// A port taken from the kernel with a listen on :0 and closed again comes
// from the ephemeral range, where any other process's connection or listen
// on :0 can take it before the child binds it: test packages run side by
// side, and the child then fails with "address already in use". Ports
// below the ephemeral range are never handed out that way.
package freeport

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// given are the ports Loopback has returned in this process, so two
// servers of one test never get the same one.
var given sync.Map

// Loopback returns a port that nobody listens on now on 127.0.0.1, below
// the kernel's ephemeral range, and not returned before in this process.
// With bus, port+10000 (a Redis Cluster node's bus port) is free and below
// the range too.
func Loopback(bus bool) (int, error) {
	lo := ephemeralLow()
	for range 1000 {
		port := 10000 + rand.IntN(lo-20000)
		if !free(port) || bus && !free(port+10000) {
			continue
		}
		if _, taken := given.LoadOrStore(port, true); !taken {
			return port, nil
		}
	}
	return 0, errors.New("no free loopback port below the ephemeral range in 1000 tries")
}

func free(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// ephemeralLow is the lowest port the kernel hands out for connections and
// listens on :0 (Linux's default where it cannot be read).
func ephemeralLow() int {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n >= 24000 {
				return n
			}
		}
	}
	return 32768
}
