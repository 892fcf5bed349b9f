package policy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// An engine that started on a new, empty store (no generation yet) learns
// the generation the first account gives it, so that a store that later
// loses its data is refused like any other. Found by e2e
// TestRedisRestartedEmpty: such an instance took an emptied Redis for an
// empty policy and closed every gate.
func TestEngineLearnsGenerationOfNewStore(t *testing.T) {
	st := openBolt(t)
	src := &flaky{Source: st}
	e := runEngine(t, policy.Options{Source: src})
	if ok, _ := e.Ready(); !ok {
		t.Fatal("not ready on an empty store")
	}
	createAccount(t, st, "a")
	addRule(t, st, "a", client.String(), time.Time{})
	eventually(t, time.Second, "rule", func() bool { return e.Check("a", client).Verdict == policy.Allowed })

	empty := ""
	src.gen.Store(&empty)
	src.down.Store(true) // force a reload...
	eventually(t, time.Second, "outage", func() bool { return !e.StoreUp() })
	src.down.Store(false) // ...against a store whose generation is gone
	eventually(t, 2*time.Second, "mismatch not reported", func() bool {
		_, why := e.Ready()
		return why != "" && e.StoreUp()
	})
	if e.Check("a", client).Verdict != policy.Allowed {
		t.Fatal("an engine started on a new store dropped its policy for a store that lost its data")
	}
}

// An instance that starts while the store is reachable but lost its data
// (a generation other than its snapshot's) enforces its snapshot and raises
// the alarm, as a running instance does, instead of loading the empty
// store and closing every gate.
func TestEngineStartRefusesStoreThatLostItsData(t *testing.T) {
	st := openBolt(t)
	createAccount(t, st, "a")
	addRule(t, st, "a", client.String(), time.Time{})
	snap := filepath.Join(t.TempDir(), "policy.snapshot")
	first := runEngine(t, policy.Options{Source: st, SnapshotPath: snap})
	eventually(t, time.Second, "rule", func() bool { return first.Check("a", client).Verdict == policy.Allowed })
	eventually(t, 2*time.Second, "snapshot file not written", func() bool { _, err := os.Stat(snap); return err == nil })

	for _, gen := range []string{"", "another"} {
		lost := &flaky{Source: openBolt(t)} // reachable, and empty
		lost.gen.Store(&gen)
		e := runEngine(t, policy.Options{Source: lost, SnapshotPath: snap})
		if e.Check("a", client).Verdict != policy.Allowed || e.Check("a", stranger).Verdict != policy.Denied {
			t.Fatalf("store with generation %q: the snapshot is not enforced", gen)
		}
		ok, why := e.Ready()
		if !ok || !strings.Contains(why, "generation") || !e.GenerationMismatch() {
			t.Errorf("store with generation %q: Ready() = %v, %q, mismatch %v; want ready, enforcing the snapshot, with the alarm",
				gen, ok, why, e.GenerationMismatch())
		}
		// It keeps refusing it.
		time.Sleep(200 * time.Millisecond)
		if e.Check("a", client).Verdict != policy.Allowed {
			t.Fatalf("store with generation %q: the snapshot was dropped for the empty store", gen)
		}
	}
}
