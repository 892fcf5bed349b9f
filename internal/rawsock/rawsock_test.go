package rawsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func TestWrap(t *testing.T) {
	c, s := pair(t)
	w := Wrap(c)
	if runtime.GOOS == "windows" {
		if w != net.Conn(c) {
			t.Fatal("Wrap changed a connection where raw calls are not made")
		}
		return
	}
	if _, ok := w.(*Conn); !ok {
		t.Fatalf("Wrap(*net.TCPConn) = %T, want *Conn", w)
	}
	// go-redis health-checks a pooled connection that offers SyscallConn
	// through syscall.Syscall: the wrapped one must not offer it.
	if _, ok := w.(syscall.Conn); ok {
		t.Error("the wrapped connection offers SyscallConn")
	}
	if w.RemoteAddr().String() != s.LocalAddr().String() {
		t.Errorf("RemoteAddr %v, want %v", w.RemoteAddr(), s.LocalAddr())
	}

	// Not a TCP connection: unchanged.
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if Wrap(p1) != p1 {
		t.Error("Wrap changed a net.Pipe")
	}
}

// Bytes go both ways in order, a write larger than the socket buffers
// waits for the reader and completes, and the end reads as io.EOF.
func TestReadWrite(t *testing.T) {
	c, s := pair(t)
	w := Wrap(c)
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	done := make(chan error, 1)
	go func() {
		n, err := w.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		done <- err
		c.CloseWrite()
	}()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want %d in order", len(got), len(want))
	}

	if _, err := s.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	s.CloseWrite()
	got, err = io.ReadAll(w)
	if err != nil || string(got) != "pong" {
		t.Fatalf("read %q, %v; want pong and the end", got, err)
	}
	if n, err := w.Read(nil); n != 0 || err != nil {
		t.Errorf("an empty read: %d, %v", n, err)
	}
}

// A deadline reads as it does through net.TCPConn: a timeout that
// errors.Is os.ErrDeadlineExceeded; a closed connection is net.ErrClosed.
func TestDeadlineAndClose(t *testing.T) {
	c, _ := pair(t)
	w := Wrap(c)
	w.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := w.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	w.SetReadDeadline(time.Time{})
	read := make(chan error, 1)
	go func() {
		_, err := w.Read(make([]byte, 10))
		read <- err
	}()
	w.Close()
	if err := <-read; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read of a closed connection: %v, want net.ErrClosed", err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write to a closed connection: %v, want net.ErrClosed", err)
	}
}

// A connection the peer reset fails a write with the system's error.
func TestPeerReset(t *testing.T) {
	c, s := pair(t)
	w := Wrap(c)
	s.SetLinger(0)
	s.Close() // RST
	var err error
	for range 100 { // the first write may still be taken before the RST is seen
		if _, err = w.Write([]byte("after the reset")); err != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err == nil || errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after the peer's reset: %v, want the system's error", err)
	}
}
