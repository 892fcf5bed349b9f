package backup

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"go.uber.org/zap"
)

// The embedded store's file is locked by the one process that has it open
// (bbolt takes an exclusive flock, and its read-only open a shared one, so
// neither opens alongside serve). A backup of a running serve therefore
// goes through serve itself: it answers on a unix socket beside the file
// with the record stream of one read transaction. The socket is mode 0600
// and each peer's uid is checked (SO_PEERCRED): only the file's owner (or
// root) can read a backup, as only they can read the file.

// SocketPath is the backup socket of the embedded store at dbPath.
func SocketPath(dbPath string) string { return dbPath + ".backup.sock" }

// Listen opens the backup socket at path, replacing a stale one left by a
// process that died.
func Listen(path string) (net.Listener, error) {
	if !peerCredentials {
		return nil, errors.New("backup socket: this system cannot tell who connects (SO_PEERCRED is Linux's)")
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("backup socket %s: a file that is not a socket is in the way", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("backup socket %s: another process answers on it", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("backup socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("backup socket: %w", err)
	}
	return ln, nil
}

// Serve answers backup requests on ln with src's records until ctx ends.
func Serve(ctx context.Context, ln net.Listener, src Exporter, log *zap.Logger) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Out of file descriptors, say: the gate must not stop for it.
			log.Warn("backup socket: accept failed", zap.Error(err))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		serveBackupConn(ctx, c.(*net.UnixConn), src, log)
	}
}

// serveBackupConn streams one backup, one at a time: a second request
// waits, which bounds the work a local client can cause.
func serveBackupConn(ctx context.Context, c *net.UnixConn, src Exporter, log *zap.Logger) {
	defer c.Close()
	// A client that stops reading must not hold serve's shutdown.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	uid, err := peerUID(c)
	if err != nil || (uid != os.Getuid() && uid != 0) {
		log.Warn("backup socket: refused a peer of another user", zap.Int("uid", uid), zap.Error(err))
		return
	}
	start := time.Now()
	bw := bufio.NewWriterSize(c, 64<<10)
	sw := &encoder{w: bw}
	m, err := src.Export(ctx, sw)
	if err == nil {
		var mj []byte
		mj, err = json.Marshal(m)
		if err == nil {
			err = sw.put(Record{Tag: tagManifest, Fields: [][]byte{mj}})
		}
	}
	if err != nil {
		sw.put(Record{Tag: tagError, Fields: [][]byte{[]byte(err.Error())}})
		log.Error("backup through the socket failed", zap.Error(err))
	}
	if ferr := bw.Flush(); ferr != nil && err == nil {
		log.Warn("backup through the socket: client went away", zap.Error(ferr))
		return
	}
	if err == nil {
		log.Info("backup taken through the socket", zap.Int64("records", sw.records), zap.Duration("took", time.Since(start)))
	}
}

// Remote is an Exporter that asks the process serving the socket at Path.
type Remote struct{ Path string }

// Export implements Exporter.
func (r Remote) Export(ctx context.Context, w RecordWriter) (Manifest, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", r.Path)
	if err != nil {
		return Manifest{}, fmt.Errorf("ask the running gatekeeper through %s: %w", r.Path, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	br := bufio.NewReaderSize(c, 64<<10)
	for {
		rec, err := readRecord(br, maxStreamFields, maxStreamField)
		if errors.Is(err, io.EOF) {
			return Manifest{}, errors.New("the running gatekeeper ended the backup early (see its log)")
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("backup from the running gatekeeper: %w", err)
		}
		switch rec.Tag {
		case tagError:
			return Manifest{}, fmt.Errorf("the running gatekeeper: %s", rec.Fields[0])
		case tagManifest:
			var m Manifest
			if err := json.Unmarshal(rec.Fields[0], &m); err != nil {
				return Manifest{}, fmt.Errorf("backup from the running gatekeeper: manifest: %w", err)
			}
			return m, nil
		}
		if err := w.Write(rec); err != nil {
			return Manifest{}, err
		}
	}
}

// maxStreamFields and maxStreamField bound one record read from the
// socket.
const (
	maxStreamFields = 1 << 20
	maxStreamField  = 1 << 30
)
