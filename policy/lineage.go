package policy

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"sync"
)

// Lineage is the one place that decides whether a store may be given a
// new generation. A store that never held gatekeeper data gets one with
// its first account; a store that lost its data (a Redis restarted empty,
// a file replaced) must not, since the fleet and the snapshots still
// enforce the old generation and only Store.Reseed (or restoring a
// backup) can give it back. Both look the same from inside the store, so
// the store keeps a Lineage: the generation it is known to have held,
// learnt from this machine's snapshot when it was opened and from every
// generation it reads. A store mints a generation only through Mint, which
// refuses once one is known; Reseed and a restore set theirs explicitly
// and record it with Saw.
//
// Every entry point that can create an account (the operator API, the CLI,
// serve's bootstrap) goes through Store.CreateAccount, and so inherits the
// rule. A machine with no snapshot, opening a store that already lost its
// data, knows no generation and would mint one: that is a first start as
// far as anything on it can tell.
type Lineage struct {
	mu    sync.Mutex
	known string // the generation the store held; "" if none is known
	from  string // where known was learnt, for the error
	// snapshot, if set, is a snapshot file to learn from when Mint is
	// first called with nothing known: only a store found without a
	// generation needs it, so a large file is not read otherwise.
	snapshot string
}

// NewLineage returns a Lineage that knows gen, learnt from from (a
// snapshot file's name, say); "" knows nothing yet: a first start.
func NewLineage(gen, from string) *Lineage {
	return &Lineage{known: gen, from: from}
}

// LineageFromSnapshot returns a Lineage that knows the generation in this
// machine's snapshot file at path, read when it is first needed. A file
// that does not exist knows nothing (a first start); one that exists but
// cannot be read was written from some generation, so it refuses a new one.
func LineageFromSnapshot(path string) *Lineage {
	return &Lineage{snapshot: path}
}

// learn reads the snapshot, once; l.mu is held.
func (l *Lineage) learn() {
	path := l.snapshot
	if path == "" || l.known != "" {
		return
	}
	l.snapshot = ""
	d, _, err := ReadSnapshotFile(path)
	switch {
	case err == nil && d.Generation != "":
		l.known, l.from = d.Generation, "the snapshot "+path
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		l.known, l.from = "(unreadable)", fmt.Sprintf("the snapshot %s, which cannot be read: %v", path, err)
	}
}

// Saw records a generation the store holds (read from it, or set by a
// reseed or a restore). An empty one is ignored: it says the store has
// none now, not that it never had one.
func (l *Lineage) Saw(gen string) {
	if gen == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.known != gen {
		l.known, l.from = gen, "the store itself"
	}
}

// Known returns the generation the store is known to have held, "" if
// none.
func (l *Lineage) Known() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.learn()
	return l.known
}

// Mint returns a new generation for a store found holding none, or an
// error wrapping ErrNoData and ErrUnavailable (so that the admin API
// answers 503 store_lost_data and changes nothing) when the store is known
// to have held one. The caller writes the generation only if the store
// still has none, and then calls Saw with what the store holds.
func (l *Lineage) Mint() (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.learn()
	if l.known != "" {
		return "", fmt.Errorf("%w: %w; it held generation %s (known from %s), which only a reseed gives back",
			ErrUnavailable, ErrNoData, l.known, l.from)
	}
	return rand.Text(), nil
}
