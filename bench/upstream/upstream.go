// Package upstream is the server bench/run puts behind the proxies: a raw
// TCP server whose client picks, with its first byte, whether the
// connection is a sink, a source or an echo, and an HTTP server that
// answers every request with the same small body.
//
// It is a load target for loopback benchmarks, not a general server: it
// has no limits and no timeouts.
package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// What a client asks for with its first byte.
const (
	Sink   = 'u' // the client uploads; everything it sends is read and dropped
	Source = 'd' // the client downloads; the server writes until the client goes
	Echo   = 'e' // every byte comes back
	// Once echoes what the first read gets and closes: the upstream, not
	// the proxy, then holds the connection's TIME_WAIT. Short connections
	// that the proxy closed first would pile up TIME_WAITs on the proxy's
	// side of its one upstream address, and connect(2) would slow down as
	// it searched the ephemeral ports around them.
	Once = 'o'
)

// bufSize is the read and write size of sinks and sources: large, so
// that the upstream's share of the CPU stays small.
const bufSize = 256 << 10

// Server serves raw connections on one listener.
type Server struct {
	ln     net.Listener
	handle func(net.Conn)
	wg     sync.WaitGroup
	mu     sync.Mutex
	cs     map[net.Conn]struct{}
	closed bool // under mu: a connection accepted now is closed at once
}

// Serve accepts on ln until it is closed (Close), handling each
// connection in its own goroutine.
func Serve(ln net.Listener) *Server {
	return serve(ln, serveCommand)
}

// Forward accepts on ln until it is closed (Close) and joins each
// connection to a new one to the address to, with nothing but io.Copy
// each way: between two TCP connections on Linux that is splice(2). It is
// the floor bench/run measures the proxies against, the least a user-space
// forwarder can do; it checks nothing.
func Forward(ln net.Listener, to string) *Server {
	return serve(ln, func(c net.Conn) {
		up, err := net.Dial("tcp", to)
		if err != nil {
			return
		}
		defer up.Close()
		done := make(chan struct{})
		go func() {
			io.Copy(c, up)
			c.(*net.TCPConn).CloseWrite()
			close(done)
		}()
		io.Copy(up, c)
		up.(*net.TCPConn).CloseWrite()
		<-done
	})
}

func serve(ln net.Listener, handle func(net.Conn)) *Server {
	s := &Server{ln: ln, handle: handle, cs: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // out of descriptors, say
			continue
		}
		// A connection accepted while Close ran would miss its closing
		// and keep Close waiting for its goroutine.
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.cs[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// Close stops accepting, closes every connection and waits for their
// goroutines.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.cs {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.cs, c)
		s.mu.Unlock()
	}()
	s.handle(c)
}

// serveCommand serves what the client's first byte asks for.
func serveCommand(c net.Conn) {
	var cmd [1]byte
	if _, err := io.ReadFull(c, cmd[:]); err != nil {
		return
	}
	switch cmd[0] {
	case Sink:
		sink(c)
	case Source:
		source(c)
	case Echo:
		echo(c)
	case Once:
		buf := make([]byte, 512)
		if n, err := c.Read(buf); n > 0 && err == nil {
			c.Write(buf[:n])
		}
	}
}

func sink(c net.Conn) {
	buf := make([]byte, bufSize)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

func source(c net.Conn) {
	buf := make([]byte, bufSize)
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// echo copies with a small buffer rather than io.Copy, which would splice
// through a pipe: costlier for the small messages echoes carry.
func echo(c net.Conn) {
	buf := make([]byte, 16<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// HTTPHandler answers every request with 200 and body, with a
// Content-Length.
func HTTPHandler(body []byte) http.Handler {
	n := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"] = []string{"application/octet-stream"}
		h["Content-Length"] = []string{n}
		w.Write(body)
	})
}

// ServeHTTP serves HTTPHandler(body) on ln until ctx ends.
func ServeHTTP(ctx context.Context, ln net.Listener, body []byte) error {
	srv := &http.Server{Handler: HTTPHandler(body), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return nil
}
