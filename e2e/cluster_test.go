package e2e

// A Redis Cluster node lost on its own, under the real binary: three
// primaries with a replica each; one primary is killed, its replica takes
// over; then that one is killed too and its slots stay uncovered.
// docs/reliability.md lists what it measures.

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// TestClusterNodeLost: an instance on a Cluster of three primaries with a
// replica each loses one primary. It reports the lost shards (gauge, log,
// /readyz), writes to accounts on them answer 503 while the others work
// and their changes still reach the gate, enforcement never changes, and
// once the replica is promoted everything recovers without a restart.
// Then the promoted replica dies too: the slots stay uncovered, and the
// same holds, minus the recovery.
func TestClusterNodeLost(t *testing.T) {
	cl := redistest.StartReplicatedCluster(t, 3)
	ctx := context.Background()

	// Accounts spread over the shards, each allowing ipAllowed.
	st, err := redisstore.Open(ctx, cl.URL(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 12 {
		id := fmt.Sprintf("c%02d", i)
		ids = append(ids, id)
		if _, err := admin.CreateAccount(ctx, st, admin.NewAccount{ID: id, Password: masterPassword, Actor: "e2e",
			Role: policy.RoleOperator}, password.Default, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	seedRules(t, st, ids, ipAllowed+"/32")
	st.Close()

	// Which primary holds what.
	nodeOf := func(key string) *redistest.Server {
		for _, n := range cl.Topology() {
			if !n.Primary || n.Failed {
				continue
			}
			c := redis.NewClient(&redis.Options{Addr: n.Server.Addr()})
			found, _ := c.Keys(ctx, key).Result()
			c.Close()
			if len(found) > 0 {
				return n.Server
			}
		}
		t.Fatalf("no primary holds %s", key)
		return nil
	}
	meta := nodeOf("gk:meta")
	var lost, kept string
	var doomed *redistest.Server
	for _, id := range ids {
		n := nodeOf("*:acct:" + id)
		switch {
		case n == meta && kept == "":
			kept = id
		case n != meta && doomed == nil:
			doomed, lost = n, id
		}
	}
	if doomed == nil || kept == "" {
		t.Fatal("the accounts did not spread over the primaries")
	}
	var replica *redistest.Server
	for _, n := range cl.Topology() {
		if p := primaryOf(cl, n); p == doomed {
			replica = n.Server
		}
	}
	t.Logf("account %s lives on %s (replica %s), account %s on %s with gk:meta", lost, doomed.Addr(), replica.Addr(), kept, meta.Addr())

	up := echoServer(t)
	dbLost, dbKept, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	in := startGatekeeper(t, prepareDir(t), fmt.Sprintf(`store: {url: "%s", snapshot: ./data/policy.snapshot}
ops: {addr: "{{ops}}"}
log: {level: info, format: json}
tls: {self_signed: true}
admin: {addr: "%s", operator_token_file: ./data/operator.token}
listeners:
  - {name: lost, addr: "%s", mode: tcp, routes: [{account: %s, upstream: "%s"}]}
  - {name: kept, addr: "%s", mode: tcp, routes: [{account: %s, upstream: "%s"}]}
`, cl.URL(), adminAddr, dbLost, lost, up, dbKept, kept, up))
	mLost, mKept := login(t, adminAddr, lost, masterPassword), login(t, adminAddr, kept, masterPassword)
	for _, db := range []string{dbLost, dbKept} {
		waitFor(t, 5*time.Second, "rules enforced", func() bool { return through(ipAllowed, db) && !through(ipDenied, db) })
	}
	c := startChecker(t, []string{dbLost, dbKept}, []string{ipAllowed, ipDenied}, 2, 10*time.Millisecond)

	// write adds a rule and deletes it again: a write that changes nothing
	// the checker probes.
	write := func(m *adminClient, acct string) (int, time.Duration) {
		code, rule, took := m.addRule(acct, ipOther)
		if code == http.StatusCreated {
			m.deleteRule(acct, rule.ID)
		}
		return code, took
	}
	// changeEnforced adds a rule for ipOther, waits until the gate lets
	// ipOther through, deletes it and waits until it does not: how long
	// each took to reach the gate.
	changeEnforced := func(m *adminClient, acct, db string) (added, deleted time.Duration) {
		t.Helper()
		code, rule, _ := m.addRule(acct, ipOther)
		if code != http.StatusCreated {
			t.Fatalf("add a rule to %s: %d", acct, code)
		}
		added = waitFor(t, 5*time.Second, "rule of "+acct+" enforced", func() bool { return through(ipOther, db) })
		if code, _ := m.deleteRule(acct, rule.ID); code != http.StatusNoContent {
			t.Fatalf("delete the rule of %s: %d", acct, code)
		}
		deleted = waitFor(t, 5*time.Second, "deletion in "+acct+" enforced", func() bool { return !through(ipOther, db) })
		return added, deleted
	}
	// outage checks what an instance does while the lost account's slots
	// have no primary.
	// promoted reports whether the lost account's replica has taken over.
	promoted := func() bool {
		for _, n := range cl.Topology() {
			if n.Server == replica && n.Primary && !n.Failed {
				return true
			}
		}
		return false
	}
	outage := func(phase string, killed time.Time, writes int, mayFailOver bool) {
		t.Helper()
		waitFor(t, 15*time.Second, "gatekeeper_store_feed_shards_down above 0", func() bool {
			return in.metricValue("gatekeeper_store_feed_shards_down") > 0
		})
		code, body := in.readyz()
		t.Logf("%s: noticed %v after the kill: %v shards down, gatekeeper_store_up %v, /readyz %d %s", phase,
			time.Since(killed).Round(time.Millisecond), in.metricValue("gatekeeper_store_feed_shards_down"),
			in.metricValue("gatekeeper_store_up"), code, strings.TrimSpace(body))
		if code != http.StatusOK || !strings.Contains(body, "change feed shards") {
			t.Errorf("%s: /readyz %d %s, want 200 naming the unreachable shards", phase, code, body)
		}
		if !strings.Contains(in.log.String(), "change feed shard unreachable") {
			t.Errorf("%s: nothing logged", phase)
		}
		for range writes {
			cl, tl := write(mLost, lost)
			ck, tk := write(mKept, kept)
			t.Logf("%s: write to %s %d after %v, to %s %d after %v", phase, lost, cl, tl.Round(time.Millisecond),
				kept, ck, tk.Round(time.Millisecond))
			if cl != http.StatusServiceUnavailable && !(cl == http.StatusCreated && mayFailOver && promoted()) {
				t.Errorf("%s: a write to %s, whose slots have no primary: %d, want 503", phase, lost, cl)
			}
			if ck != http.StatusCreated {
				t.Errorf("%s: a write to %s: %d, want 201", phase, kept, ck)
			}
		}
		added, deleted := changeEnforced(mKept, kept, dbKept)
		t.Logf("%s: a change to %s reached the gate in %v (add) and %v (delete)", phase, kept, added, deleted)
	}

	// Phase 1: the primary dies; its replica takes over.
	doomed.Kill()
	killed := time.Now()
	// One write: the failover takes longer than that (cluster-node-timeout
	// is 2s, then an election), and then writes work again; a write that
	// lands after it may succeed.
	outage("primary lost", killed, 1, true)
	waitFor(t, 30*time.Second, "writes to the lost slots after the failover", func() bool {
		code, _ := write(mLost, lost)
		return code == http.StatusCreated
	})
	t.Logf("writes to %s work again %v after the kill", lost, time.Since(killed).Round(time.Millisecond))
	waitFor(t, 15*time.Second, "gatekeeper_store_feed_shards_down back to 0", func() bool {
		return in.metricValue("gatekeeper_store_feed_shards_down") == 0
	})
	waitFor(t, 15*time.Second, "gatekeeper_store_up 1", func() bool { return in.metricValue("gatekeeper_store_up") == 1 })
	t.Logf("recovered %v after the kill, no restart", time.Since(killed).Round(time.Millisecond))
	if code, body := in.readyz(); code != http.StatusOK || strings.Contains(body, "unreachable") {
		t.Errorf("/readyz after the failover: %d %s", code, body)
	}
	added, deleted := changeEnforced(mLost, lost, dbLost)
	t.Logf("after the failover a change to %s reached the gate in %v (add) and %v (delete)", lost, added, deleted)

	// Phase 2: the promoted replica dies too; the slots stay uncovered.
	replica.Kill()
	outage("slots uncovered", time.Now(), 3, false)

	c.halt()
	enforcing(t, c, []string{ipAllowed}, []string{ipDenied})
	ps := c.results()
	var wrong int
	for _, ip := range []string{ipAllowed, ipDenied} {
		through, refused := verdicts(ps, ip)
		t.Logf("%s: %d through, %d refused", ip, through, refused)
		if ip == ipAllowed {
			wrong += refused
		} else {
			wrong += through
		}
	}
	t.Logf("%d probes through both listeners, %d wrong", len(ps), wrong)
}

// primaryOf is the server a replica follows, nil for a primary.
func primaryOf(cl *redistest.Cluster, n redistest.Node) *redistest.Server {
	if n.Primary {
		return nil
	}
	for _, p := range cl.Topology() {
		if p.ID == n.PrimaryID {
			return p.Server
		}
	}
	return nil
}

// seedRules gives each account a rule.
func seedRules(t *testing.T, st policy.Store, ids []string, cidr string) {
	t.Helper()
	for _, id := range ids {
		if err := st.Update(context.Background(), id, func(tx policy.Tx) error {
			_, err := tx.PutRule(policy.Rule{Prefix: netip.MustParsePrefix(cidr), Source: policy.SourceManual,
				CreatedBy: "e2e", CreatedAt: time.Now()})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
}
