package policy_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

func openRedis(t *testing.T, url string) *redisstore.Store {
	t.Helper()
	// Few retries, so that an outage is noticed quickly.
	st, err := redisstore.Open(context.Background(), url+"?max_retries=1&dial_timeout=200ms", redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Two instances on one Redis: a change written through one store client
// reaches the other instance's matcher within milliseconds.
func TestRedisPropagationBetweenInstances(t *testing.T) {
	srv := redistest.Start(t)
	a, b := openRedis(t, srv.URL()), openRedis(t, srv.URL())
	createAccount(t, a, "10042")
	eb := runEngine(t, policy.Options{Source: b})
	eventually(t, 2*time.Second, "account not loaded", func() bool { _, ok := eb.Table().Mode("10042"); return ok })

	const n = 200
	lags := make([]time.Duration, 0, n)
	for i := range n {
		addr := netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})
		start := time.Now()
		id := addRule(t, a, "10042", addr.String(), time.Time{})
		eventually(t, time.Second, "rule not propagated", func() bool { return eb.Check("10042", addr).Verdict == policy.Allowed })
		lags = append(lags, time.Since(start))
		if i%2 == 1 {
			deleteRule(t, a, "10042", id)
		}
	}
	slices.Sort(lags)
	p50, p99 := lags[n/2], lags[n*99/100]
	t.Logf("write on instance A to enforcement on instance B over %d changes: p50 %v, p99 %v, max %v", n, p50, p99, lags[n-1])
	// SPEC's goal is 100ms; a loaded CI machine is not a benchmark, so
	// only a tenfold miss fails here. bench/ measures it properly.
	if p99 > time.Second {
		t.Errorf("p99 propagation %v, goal 100ms", p99)
	}
}

// Redis stopped and restarted under a running instance: lookups keep
// answering from what the instance had, it resynchronises afterwards, and
// a change made while it was away arrives.
func TestRedisRestartUnderRunningInstance(t *testing.T) {
	srv := redistest.Start(t, redistest.AppendOnly())
	writer := openRedis(t, srv.URL())
	createAccount(t, writer, "a")
	kept := addRule(t, writer, "a", client.String(), time.Time{})
	reader := openRedis(t, srv.URL())
	snap := filepath.Join(t.TempDir(), "snap")
	e := runEngine(t, policy.Options{Source: reader, SnapshotPath: snap})
	eventually(t, 2*time.Second, "initial rule", func() bool { return e.Check("a", client).Verdict == policy.Allowed })

	srv.Stop()
	eventually(t, 5*time.Second, "outage not noticed", func() bool { return !e.StoreUp() })
	for range 100 {
		if e.Check("a", client).Verdict != policy.Allowed || e.Check("a", stranger).Verdict != policy.Denied {
			t.Fatal("enforcement changed while Redis was down")
		}
		time.Sleep(time.Millisecond)
	}
	srv.Restart()
	// A change made by another instance once Redis is back, which this one
	// must pick up whether it has reconnected yet or not.
	eventually(t, 5*time.Second, "writer cannot reach the restarted Redis", func() bool {
		return writer.Update(context.Background(), "a", func(tx policy.Tx) error { return tx.DeleteRule(kept) }) == nil
	})
	addRule(t, writer, "a", stranger.String(), time.Time{})
	eventually(t, 10*time.Second, "no resync after the restart", func() bool {
		return e.Check("a", stranger).Verdict == policy.Allowed && e.Check("a", client).Verdict == policy.Denied
	})
	eventually(t, 5*time.Second, "store not reported up", e.StoreUp)
	if ok, why := e.Ready(); !ok || why != "" {
		t.Errorf("after resync Ready() = %v, %q; want ready with no problem", ok, why)
	}
}

// Start with Redis down: the snapshot's rules are enforced; without a
// snapshot everything is denied and the instance is not ready.
func TestRedisDownAtStart(t *testing.T) {
	srv := redistest.Start(t)
	st := openRedis(t, srv.URL())
	createAccount(t, st, "a")
	addRule(t, st, "a", client.String(), time.Time{})
	snap := filepath.Join(t.TempDir(), "snap")
	{
		e, err := policy.NewEngine(policy.Options{Source: st, SnapshotPath: snap})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := policy.WriteSnapshotFile(snap, e.Table(), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	srv.Stop()

	down := openRedis(t, srv.URL())
	withSnap := runEngine(t, policy.Options{Source: down, SnapshotPath: snap, LoadTimeout: 2 * time.Second})
	if withSnap.Check("a", client).Verdict != policy.Allowed || withSnap.Check("a", stranger).Verdict != policy.Denied {
		t.Error("snapshot not enforced with Redis down")
	}
	if ok, _ := withSnap.Ready(); !ok {
		t.Error("not ready though serving from the snapshot")
	}

	bare := runEngine(t, policy.Options{Source: down, SnapshotPath: filepath.Join(t.TempDir(), "none"), LoadTimeout: 2 * time.Second})
	if bare.Check("a", client).Verdict != policy.Denied {
		t.Error("allowed with neither Redis nor a snapshot")
	}
	if ok, why := bare.Ready(); ok {
		t.Errorf("ready with neither Redis nor a snapshot (%q)", why)
	}
}
