// Package servicetest helps test service definitions and Event Log
// entries where there is no Windows: it runs systemd's own unit checker,
// and records what would go to the Event Log.
package servicetest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// VerifyUnit runs "systemd-analyze verify" on unit (named name.service),
// which must pass without a word: syntax, quoting, every key known, the
// executable present. Without systemd-analyze the test is skipped, except
// in CI (CI set), where it fails: .ci/run installs it (Debian's systemd).
func VerifyUnit(t testing.TB, name string, unit []byte) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is missing (Debian package systemd); CI must have it")
		}
		t.Skip("systemd-analyze not installed; skipping the unit check")
	}
	path := filepath.Join(t.TempDir(), name+".service")
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s\nunit:\n%s", err, out, unit)
	}
}

// Event is one entry written to an Events.
type Event struct {
	Kind string // info, warning, error
	ID   uint32
	Msg  string
}

// Events records Event Log entries; it is a service.EventWriter.
type Events struct {
	mu sync.Mutex
	l  []Event
}

func (e *Events) add(kind string, id uint32, msg string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.l = append(e.l, Event{kind, id, msg})
	return nil
}

func (e *Events) Info(id uint32, msg string) error    { return e.add("info", id, msg) }
func (e *Events) Warning(id uint32, msg string) error { return e.add("warning", id, msg) }
func (e *Events) Error(id uint32, msg string) error   { return e.add("error", id, msg) }

// List returns the entries so far.
func (e *Events) List() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.l...)
}
