package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// TestFleetOnRedis runs two gatekeepers on one Redis, as a fleet would,
// and changes the policy through the store while they run: a rule added
// lets a client in on both, a rule deleted closes the live connections it
// allowed on both, each within a second, measured.
func TestFleetOnRedis(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	st, err := redisstore.Open(ctx, rs.URL(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ids := seedStore(t, st, map[string][]string{"acct": {ipAllowed + "/32", ipOther + "/32"}}, nil)
	up := echoServer(t)

	var fleet []*gatekeeper
	var addrs []string
	for range 2 {
		addr := freeAddr(t)
		g := startGatekeeper(t, t.TempDir(), fmt.Sprintf(`store: {url: "%s", snapshot: ./data/policy.snapshot}
ops: {addr: "{{ops}}"}
log: {level: info, format: json}
listeners:
  - {name: db, addr: "%s", mode: tcp, routes: [{account: acct, upstream: "%s"}]}
`, rs.URL(), addr, up))
		fleet = append(fleet, g)
		addrs = append(addrs, addr)
	}

	// A rule added through the store: the newcomer gets in on every
	// instance.
	added := time.Now()
	err = st.Update(ctx, "acct", func(tx policy.Tx) error {
		_, err := tx.PutRule(policy.Rule{Account: "acct", Prefix: netip.MustParsePrefix(ipDenied + "/32"),
			Source: policy.SourceManual, CreatedBy: "e2e", CreatedAt: time.Now()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, addr := range addrs {
		for {
			c, err := dialFrom(ipDenied, addr)
			if err == nil && roundTrip(c, "new") == nil {
				c.Close()
				t.Logf("instance %d: a rule added through the store let its client in after %v", i, time.Since(added))
				break
			}
			if c != nil {
				c.Close()
			}
			if time.Since(added) > time.Second {
				t.Fatalf("instance %d: added rule not enforced within 1s", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// Live connections on both instances, and a bystander each.
	var live, bystanders []net.Conn
	for _, addr := range addrs {
		for _, from := range []string{ipAllowed, ipOther} {
			c, err := dialFrom(from, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := roundTrip(c, "hello"); err != nil {
				t.Fatal(err)
			}
			if from == ipAllowed {
				live = append(live, c)
			} else {
				bystanders = append(bystanders, c)
			}
		}
	}
	err = st.Update(ctx, "acct", func(tx policy.Tx) error { return tx.DeleteRule(ids["acct "+ipAllowed+"/32"]) })
	if err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	var wg sync.WaitGroup
	latency := make([]time.Duration, len(live))
	for i, c := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(deleted.Add(time.Second))
			buf := make([]byte, 16)
			for {
				if _, err := c.Read(buf); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						latency[i] = -1
					} else {
						latency[i] = time.Since(deleted)
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, l := range latency {
		if l < 0 {
			t.Fatalf("instance %d: live connection still open 1s after its rule was deleted through the store", i)
		}
		t.Logf("instance %d: live connection closed %v after the rule was deleted through the store", i, l)
	}
	for i, c := range bystanders {
		if err := roundTrip(c, "still here"); err != nil {
			t.Errorf("instance %d: bystander: %v", i, err)
		}
	}
	for _, g := range fleet {
		g.waitMetric(1, "gatekeeper_connections_revoked_total", "account", "acct")
	}
}
