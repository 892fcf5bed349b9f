package load

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// HTTP measures requests per second and their latency over keep-alive
// HTTP/1.1 connections, each sending one GET after the other. The client
// is a minimal one (a fixed request, a response parsed for its status and
// Content-Length) so that it takes little of the CPU it shares with the
// servers.
type HTTP struct {
	Addr string
	TLS  *tls.Config // nil for plain HTTP; NextProtos should be http/1.1
	Want Negotiated
	From *Sources
	Host string // the Host header; "bench" if empty
	// Conns is how many connections run at once.
	Conns            int
	Warmup, Duration time.Duration
}

// Latencies are the round trips measured, one slice per worker.
type Latencies [][]time.Duration

// All is every sample in one slice.
func (l Latencies) All() []time.Duration {
	var out []time.Duration
	for _, s := range l {
		out = append(out, s...)
	}
	return out
}

// maxSamples bounds the latencies kept per worker.
const maxSamples = 1 << 20

// Run returns the requests per second during the measured time and the
// latency of each.
func (h HTTP) Run(ctx context.Context) (float64, Latencies, error) {
	host := h.Host
	if host == "" {
		host = "bench"
	}
	req := []byte("GET / HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: gkbench\r\n\r\n")
	w := newWindow(h.Warmup, h.Duration)
	lat := make(Latencies, max(h.Conns, 1))
	errs := make([]error, len(lat))
	var wg sync.WaitGroup
	for i := range lat {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[i], errs[i] = h.worker(ctx, req, w)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, nil, fmt.Errorf("http: %w", err)
	}
	n := 0
	for _, s := range lat {
		n += len(s)
	}
	return float64(n) / w.seconds(), lat, nil
}

func (h HTTP) worker(ctx context.Context, req []byte, w window) ([]time.Duration, error) {
	var out []time.Duration
	for time.Now().Before(w.end) {
		c, err := h.connect(ctx)
		if err != nil {
			return out, err
		}
		c.SetDeadline(w.end.Add(dialTimeout))
		br := bufio.NewReaderSize(c, 16<<10)
		for {
			start := time.Now()
			if !start.Before(w.end) {
				c.Close()
				return out, nil
			}
			if _, err := c.Write(req); err != nil {
				c.Close()
				return out, err
			}
			keep, err := readResponse(br)
			if err != nil {
				c.Close()
				return out, err
			}
			if end := time.Now(); w.in(start) && len(out) < maxSamples {
				out = append(out, end.Sub(start))
			}
			if !keep {
				break
			}
		}
		c.Close()
	}
	return out, nil
}

func (h HTTP) connect(ctx context.Context) (net.Conn, error) {
	if h.TLS != nil {
		return DialTLS(ctx, h.From.Next(), h.Addr, h.TLS, h.Want)
	}
	return Dial(ctx, h.From.Next(), h.Addr)
}

// readResponse reads one response with a Content-Length body (or none),
// which must have status 200, and reports whether the connection may be
// used again.
func readResponse(br *bufio.Reader) (keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return false, fmt.Errorf("bad status line %q", line)
	}
	if string(line[9:12]) != "200" {
		return false, fmt.Errorf("status %q", bytes.TrimSpace(line))
	}
	keep = line[7] == '1'
	length := -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return false, err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return false, fmt.Errorf("bad header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			length, err = strconv.Atoi(string(value))
			if err != nil {
				return false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			keep = false
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return false, errors.New("chunked responses are not supported")
		}
	}
	if length < 0 {
		return false, errors.New("response without Content-Length")
	}
	_, err = br.Discard(length)
	return keep, err
}
