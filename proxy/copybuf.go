package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// copyBufSize is the size of the buffers tls listeners copy through: two
// TLS records' worth of plaintext.
const copyBufSize = 32 << 10

// copyBufs lends those buffers. A connection holds one only while it has
// bytes to move: an idle connection, waiting for its client or its
// upstream, holds none. Two buffers of its own, one per direction, were
// 64 KiB of every idle connection's ~52 KiB of resident memory (the pages
// it never touched excepted) and 90% of the heap in use with 5,000 idle
// connections.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// aLongTimeAgo is a read deadline that has passed: a read then takes only
// what needs no waiting.
var aLongTimeAgo = time.Unix(1, 0)

// reader reads one chunk into a lent buffer, waiting for data without
// holding one. It returns the buffer (nil when n is 0) and, with the last
// bytes, io.EOF.
type reader func() (buf *[]byte, n int, err error)

// tlsReader reads a TLS connection: it waits for the first plaintext
// byte with a one-byte buffer, then takes a lent buffer for the rest of
// what is already decrypted or received, without waiting for the socket:
// as many records as fill the buffer, so that they go upstream in one
// write.
func tlsReader(tc *tls.Conn) reader {
	return func() (*[]byte, int, error) {
		var first [1]byte
		n, err := tc.Read(first[:])
		if n == 0 {
			if err == nil {
				err = io.ErrNoProgress
			}
			return nil, 0, err
		}
		bp := copyBufs.Get().(*[]byte)
		b := *bp
		b[0] = first[0]
		if err != nil { // the last byte, with io.EOF or an error
			return bp, 1, err
		}
		tc.SetReadDeadline(aLongTimeAgo)
		n = 1
		for n < len(b) { // the records already received, up to a buffer's worth
			m, err := tc.Read(b[n:])
			n += m
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break // nothing more without waiting; the caller resets the deadline
			}
			if err != nil || m == 0 {
				return bp, n, err
			}
		}
		return bp, n, nil
	}
}
