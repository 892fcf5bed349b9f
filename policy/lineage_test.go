package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLineage: a store mints a generation only while none is known; once
// it has seen one, from a snapshot or from itself, a store without one
// lost its data and Mint says so.
func TestLineage(t *testing.T) {
	first := NewLineage("", "")
	gen, err := first.Mint()
	if err != nil || gen == "" {
		t.Fatalf("first start: Mint %q, %v; want a new generation", gen, err)
	}
	first.Saw("")
	if again, err := first.Mint(); err != nil || again == gen {
		t.Fatalf("Saw(\"\") taught it something: %q, %v", again, err)
	}
	first.Saw(gen)
	if _, err := first.Mint(); !errors.Is(err, ErrNoData) || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), gen) {
		t.Fatalf("Mint after Saw(%s): %v; want ErrNoData, ErrUnavailable, naming the generation", gen, err)
	}
	snap := NewLineage("G1", "the snapshot x")
	_, err = snap.Mint()
	if !errors.Is(err, ErrNoData) || !strings.Contains(err.Error(), "the snapshot x") {
		t.Fatalf("Mint knowing G1 from a snapshot: %v", err)
	}
	snap.Saw("G2") // a reseed or restore set another one explicitly
	if snap.Known() != "G2" {
		t.Fatalf("Known after Saw(G2): %q", snap.Known())
	}
}

// TestLineageFromSnapshot: the machine's snapshot says which generation the
// store held; no snapshot is a first start; an unreadable one is not.
func TestLineageFromSnapshot(t *testing.T) {
	dir := t.TempDir()
	if gen, err := LineageFromSnapshot(filepath.Join(dir, "none")).Mint(); err != nil || gen == "" {
		t.Fatalf("no snapshot: Mint %q, %v; want a new generation", gen, err)
	}
	_, path := snapshotFile(t, time.Now()) // generation g1
	l := LineageFromSnapshot(path)
	if _, err := l.Mint(); !errors.Is(err, ErrNoData) || !strings.Contains(err.Error(), "g1") || !strings.Contains(err.Error(), path) {
		t.Fatalf("snapshot of g1: Mint %v; want ErrNoData naming g1 and the file", err)
	}
	if l.Known() != "g1" {
		t.Fatalf("Known %q", l.Known())
	}
	b, _ := os.ReadFile(path)
	os.WriteFile(path, b[:len(b)/2], 0o600)
	if _, err := LineageFromSnapshot(path).Mint(); !errors.Is(err, ErrNoData) || !strings.Contains(err.Error(), "cannot be read") {
		t.Fatalf("a truncated snapshot: Mint %v; want a refusal", err)
	}
}
