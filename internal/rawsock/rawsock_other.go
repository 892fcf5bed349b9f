//go:build !unix

package rawsock

import "net"

// IO is the socket itself here.
type IO struct{ tc *net.TCPConn }

// New returns the IO of tc.
func New(tc *net.TCPConn) *IO { return &IO{tc} }

func (s *IO) raw() bool { return false }

func (s *IO) Read(b []byte) (int, error)  { return s.tc.Read(b) }
func (s *IO) Write(b []byte) (int, error) { return s.tc.Write(b) }
