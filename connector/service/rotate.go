package service

import (
	"fmt"
	"os"
	"strconv"
	"sync"
)

// Defaults of OpenRotating.
const (
	DefaultMaxBytes = 10 << 20
	DefaultKeep     = 5
)

// RotatingFile is a log file that keeps itself small: when a write would
// take it past its size limit, it is renamed to NAME.1 (NAME.1 to NAME.2,
// and so on, the oldest beyond the number to keep removed) and a new one
// started. One write is never split between two files, so each log entry
// stays whole. It is safe for concurrent use.
type RotatingFile struct {
	path     string
	maxBytes int64
	keep     int

	mu     sync.Mutex
	f      *os.File
	size   int64
	closed bool
}

// OpenRotating opens (appends to) path, rotating at maxBytes and keeping
// keep old files. Zero values take DefaultMaxBytes and DefaultKeep.
func OpenRotating(path string, maxBytes int64, keep int) (*RotatingFile, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if keep <= 0 {
		keep = DefaultKeep
	}
	r := &RotatingFile{path: path, maxBytes: maxBytes, keep: keep}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("log file: %w", err)
	}
	r.f, r.size = f, fi.Size()
	return nil
}

// Write appends p, rotating first if p would take the file past its limit
// (a file with nothing in it takes p whatever its size).
func (r *RotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, os.ErrClosed
	}
	if r.f == nil {
		// A rotation failed to reopen: try again rather than lose the log.
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	if r.size > 0 && r.size+int64(len(p)) > r.maxBytes {
		if err := r.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

// rotate shifts the old files up by one and starts a new file. The file is
// closed first: Windows cannot rename an open file.
func (r *RotatingFile) rotate() error {
	r.f.Close()
	r.f = nil
	os.Remove(r.old(r.keep))
	for i := r.keep - 1; i >= 1; i-- {
		os.Rename(r.old(i), r.old(i+1)) // a missing one is fine
	}
	if err := os.Rename(r.path, r.old(1)); err != nil && !os.IsNotExist(err) {
		// Cannot move it aside: keep writing to it, past the limit,
		// rather than lose entries.
		if oerr := r.open(); oerr != nil {
			return oerr
		}
		r.size = 0 // try again after another maxBytes
		return nil
	}
	return r.open()
}

func (r *RotatingFile) old(i int) string { return r.path + "." + strconv.Itoa(i) }

// Sync flushes the file to disk.
func (r *RotatingFile) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	return r.f.Sync()
}

// Close closes the file.
func (r *RotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
