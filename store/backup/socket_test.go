//go:build linux

package backup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
)

// exportFunc is an Exporter from a function, for the socket's error paths.
type exportFunc func(ctx context.Context, w RecordWriter) (Manifest, error)

func (f exportFunc) Export(ctx context.Context, w RecordWriter) (Manifest, error) { return f(ctx, w) }

// TestSocket: a backup through the socket is the exporter's records and
// manifest; one the exporter fails half-way is refused and no file is
// left, and so is one from a server that went away.
func TestSocket(t *testing.T) {
	dir := t.TempDir()
	var fail atomic.Bool
	src := exportFunc(func(ctx context.Context, w RecordWriter) (Manifest, error) {
		for range 3 {
			if err := w.Write(Record{Tag: 'k', Fields: [][]byte{[]byte("k"), []byte("v")}}); err != nil {
				return Manifest{}, err
			}
		}
		if fail.Load() {
			return Manifest{}, errors.New("disk on fire")
		}
		return Manifest{Backend: "test", Generation: "g1", Counts: map[string]int64{"k": 3}}, nil
	})
	sock := SocketPath(filepath.Join(dir, "gk.db"))
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, src, zap.NewNop()) }()

	out := filepath.Join(dir, "b.gkbackup")
	m, err := WriteFile(t.Context(), out, Remote{Path: sock}, nil, "test")
	if err != nil || m.Records != 3 || m.Generation != "g1" {
		t.Fatalf("backup through the socket: %+v %v", m, err)
	}
	if b, err := ReadFile(out, nil); err != nil || len(b.Records) != 3 {
		t.Fatalf("read it back: %v", err)
	}

	fail.Store(true)
	out2 := filepath.Join(dir, "c.gkbackup")
	if _, err := WriteFile(t.Context(), out2, Remote{Path: sock}, nil, "test"); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("a backup the server failed: %v", err)
	}
	if _, err := os.Stat(out2); !os.IsNotExist(err) {
		t.Errorf("a failed backup left a file: %v", err)
	}
	if names, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(names) != 0 {
		t.Errorf("temporary files left: %v", names)
	}

	// A second serve on the same file's socket is refused.
	if _, err := Listen(sock); err == nil {
		t.Error("a second listener took over a socket another process answers on")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFile(t.Context(), out2, Remote{Path: sock}, nil, "test"); err == nil {
		t.Fatal("a backup from a server that stopped")
	}
	// A stale socket from a process that died is replaced.
	ln, err = Listen(sock)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	ln.Close()
}
