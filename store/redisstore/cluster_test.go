package redisstore

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// TestFollowClusterNodeLost: with a Cluster primary gone (the one holding
// gk:meta), accounts on the other nodes can still be written, Follow goes
// on reading the other shards, so that their accounts' changes still
// arrive, and reports the lost ones (gauge, FeedHealth); writes to the
// lost shards' accounts fail as unavailable; once the replica is promoted
// the shards are read again.
//
//	go test -run TestFollowClusterNodeLost -v ./store/redisstore
func TestFollowClusterNodeLost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a six-node Redis Cluster: skipped with -short")
	}
	cl := redistest.StartReplicatedCluster(t, 3)
	reg := prometheus.NewRegistry()
	s, err := Open(t.Context(), cl.URL(), Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.followBlock = 200 * time.Millisecond
	// One account per shard.
	var ids []string
	for i := 0; len(ids) < shards; i++ {
		id := "a" + strconv.Itoa(i)
		if shardOf(id) == len(ids) {
			ids = append(ids, id)
			create(t, s, id)
		}
	}
	f := startFollow(t, s, load(t, s).Cursor)

	// The doomed primary holds gk:meta, and some shards' feeds: the
	// other shards' accounts are still written.
	doomed, err := s.cluster.MasterForKey(t.Context(), metaKey)
	if err != nil {
		t.Fatal(err)
	}
	var lost, kept []string
	for sh, id := range ids {
		n, err := s.cluster.MasterForKey(t.Context(), feedKey(sh))
		if err != nil {
			t.Fatal(err)
		}
		if n.Options().Addr == doomed.Options().Addr {
			lost = append(lost, id)
		} else {
			kept = append(kept, id)
		}
	}
	for _, n := range cl.Nodes {
		if n.Addr() == doomed.Options().Addr {
			n.Kill()
		}
	}
	killed := time.Now()
	gauge := func() float64 {
		var m dto.Metric
		s.feedDown.gauge.Write(&m)
		return m.GetGauge().GetValue()
	}
	for gauge() != float64(len(lost)) {
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("gatekeeper_store_feed_shards_down %v, want %d", gauge(), len(lost))
		}
		time.Sleep(10 * time.Millisecond)
	}
	ok, detail := s.FeedHealth()
	t.Logf("%v after the kill: %s", time.Since(killed).Round(time.Millisecond), detail)
	if !ok || !strings.Contains(detail, "unreachable") {
		t.Errorf("FeedHealth: %v %q", ok, detail)
	}
	// A change to an account on a shard still served arrives.
	if err := addRule(t.Context(), s, kept[0], 1); err != nil {
		t.Fatal(err)
	}
	if c := f.next(t); c.Account != kept[0] {
		t.Errorf("change of %s, want %s", c.Account, kept[0])
	}
	// A write to an account on the lost node answers unavailable, unless
	// the replica took its slots over in the meantime (the Cluster's
	// node timeout is short here, and a loaded machine can be slower than
	// the failover): then the new primary took it, and the slot is no
	// longer the dead node's.
	switch err := addRule(t.Context(), s, lost[0], 1); {
	case errors.Is(err, policy.ErrUnavailable):
	case err != nil:
		t.Errorf("a write to %s, on the lost node: %v, want unavailable", lost[0], err)
	default:
		n, merr := s.cluster.MasterForKey(t.Context(), keysFor(lost[0]).acct)
		if merr != nil || n.Options().Addr == doomed.Options().Addr {
			t.Errorf("a write to %s succeeded on the lost node (%v)", lost[0], merr)
		}
		t.Logf("the replica had already taken over when %s was written", lost[0])
	}
	// The replica takes over: every shard is read again, or Follow asks
	// for a reload (the promoted replica may lack the newest changes).
	for gauge() != 0 {
		select {
		case <-f.done:
			t.Logf("Follow ended after the failover: %v", f.err)
		default:
		}
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("shards still down 30s after the kill: %v", gauge())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("every shard read again %v after the kill", time.Since(killed).Round(time.Millisecond))
	if ok, detail := s.FeedHealth(); !ok || detail != "" {
		t.Errorf("FeedHealth after the failover: %v %q", ok, detail)
	}
}
