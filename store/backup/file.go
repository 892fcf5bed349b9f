package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// RecordWriter takes a backend's data records.
type RecordWriter interface {
	Write(Record) error
}

// Exporter is a store that can write out everything it holds, read
// consistently, and say what it wrote. Both backends implement it; so does
// Dial's client of a running process.
type Exporter interface {
	Export(ctx context.Context, w RecordWriter) (Manifest, error)
}

// WriteFile takes a backup from src into path, atomically: it is written
// to a temporary file in the same directory, synced, and renamed over path
// only once whole. key, when not nil, encrypts it. It returns the manifest.
func WriteFile(ctx context.Context, path string, src Exporter, key []byte, version string) (Manifest, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return Manifest{}, fmt.Errorf("create backup file: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// A backup holds password hashes: only its owner reads it.
	if err := tmp.Chmod(0o600); err != nil {
		return Manifest{}, fmt.Errorf("backup file: %w", err)
	}
	w, err := NewWriter(tmp, key)
	if err != nil {
		return Manifest{}, err
	}
	m, err := src.Export(ctx, w)
	if err != nil {
		return Manifest{}, fmt.Errorf("export: %w", err)
	}
	if m.Generation == "" || IsProvisional(m.Generation) {
		// An emptied store, or a restore under way: such a file must
		// never replace a good backup.
		return Manifest{}, ErrNoData
	}
	m.Version = version
	if err := w.Close(m); err != nil {
		return Manifest{}, fmt.Errorf("write backup file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return Manifest{}, fmt.Errorf("sync backup file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return Manifest{}, fmt.Errorf("close backup file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return Manifest{}, fmt.Errorf("rename backup file: %w", err)
	}
	done = true
	if d, err := os.Open(dir); err == nil {
		d.Sync() // make the rename itself durable
		d.Close()
	}
	m.Format, m.Records = FormatVersion, w.Records()
	return m, nil
}

// ReadFile reads and verifies a whole backup file (see Decode).
func ReadFile(path string, key []byte) (*Backup, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read backup: %w", err)
	}
	b, err := Decode(data, key)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", path, err)
	}
	return b, nil
}

// Errors of a backup or restore that would lose data.
var (
	// ErrNoData means the store holds no gatekeeper data (no generation,
	// or a restore is under way): no backup is written.
	ErrNoData = errors.New("the store holds no gatekeeper data (a Redis that lost it?): no backup written")
	// ErrPopulated means the target store holds accounts: a restore goes
	// only into an empty store or one that lost its data.
	ErrPopulated = errors.New("the store holds data: restore only into an empty store or one that lost its data")
	// ErrOtherGeneration means the target store belongs to another
	// generation than the backup; -force overrides it for an empty store.
	ErrOtherGeneration = errors.New("the store holds another generation than the backup")
)

// provisionalPrefix marks the generation a store holds while a restore is
// under way: no instance takes it for its own.
const provisionalPrefix = "restoring:"

// Provisional is the generation a store holds while a backup of gen is
// being restored into it.
func Provisional(gen string) string { return provisionalPrefix + gen }

// IsProvisional reports whether gen is a restore's provisional generation.
func IsProvisional(gen string) bool { return strings.HasPrefix(gen, provisionalPrefix) }
