package policy

import (
	"errors"
	"strings"
	"testing"
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
