package upstream

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := Serve(ln)
	dial := func(cmd byte) net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte{cmd}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	echo := dial(Echo)
	io.WriteString(echo, "ping")
	b := make([]byte, 4)
	if _, err := io.ReadFull(echo, b); err != nil || string(b) != "ping" {
		t.Errorf("echo: %q, %v", b, err)
	}
	once := dial(Once)
	io.WriteString(once, "x")
	if b, err := io.ReadAll(once); err != nil || string(b) != "x" {
		t.Errorf("once: %q, %v; want x and the end", b, err)
	}
	src := dial(Source)
	if n, err := io.ReadFull(src, make([]byte, 1<<20)); err != nil {
		t.Errorf("source: %d bytes, %v", n, err)
	}
	sink := dial(Sink)
	if _, err := sink.Write(make([]byte, 1<<20)); err != nil {
		t.Errorf("sink: %v", err)
	}
	// Close ends every connection, idle ones included.
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := echo.Read(b); err == nil {
		t.Error("echo connection still open after Close")
	}
}

func TestForward(t *testing.T) {
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	up := Serve(listen())
	defer up.Close()
	fl := listen()
	fwd := Forward(fl, up.ln.Addr().String())
	c, err := net.Dial("tcp", fl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := append([]byte{Echo}, make([]byte, 1<<20)...)
	go c.Write(msg)
	if n, err := io.ReadFull(c, make([]byte, 1<<20)); err != nil {
		t.Fatalf("echo through the forwarder: %d bytes, %v", n, err)
	}
	if err := fwd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("connection still open after Close")
	}
}

func TestHTTPHandler(t *testing.T) {
	srv := httptest.NewServer(HTTPHandler([]byte("hello")))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "hello" || resp.ContentLength != 5 {
		t.Errorf("%s %q (length %d)", resp.Status, b, resp.ContentLength)
	}
}
