package redistest

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster, each node a Server.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts n cluster nodes and joins them with redis-cli
// --cluster create, which spreads the 16384 slots over them. Like Start,
// it skips without redis-server or redis-cli, or fails under CI.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return startCluster(t, n, 0)
}

// StartReplicatedCluster starts n primaries, each with one replica, that
// fail over on their own (cluster-node-timeout 2s), and that keep serving
// the slots they cover when others are lost
// (cluster-require-full-coverage no), as a production Cluster should.
func StartReplicatedCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return startCluster(t, n, 1, Args("--cluster-require-full-coverage", "no", "--repl-diskless-sync-delay", "0"))
}

func startCluster(t testing.TB, n, replicas int, opts ...Option) *Cluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-cli not found on PATH (required when CI is set): %v", err)
		}
		t.Skipf("redis-cli not found on PATH, skipping Redis Cluster test: %v", err)
	}
	c := &Cluster{}
	args := []string{"--cluster", "create"}
	for range n * (1 + replicas) {
		s := Start(t, append([]Option{ClusterNode()}, opts...)...)
		c.Nodes = append(c.Nodes, s)
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	// Ready once every node says so, knows every replica as one, and
	// every replica has its primary's data: until then a failover would
	// not happen.
	deadline := time.Now().Add(startTimeout)
	for _, s := range c.Nodes {
		for {
			info, err := s.bulk("CLUSTER INFO")
			nodes, err2 := s.bulk("CLUSTER NODES")
			repl, err3 := s.bulk("INFO replication")
			// A replica that never synchronised with its primary would
			// not take over from it.
			synced := !strings.Contains(repl, "role:slave") || strings.Contains(repl, "master_link_status:up")
			if err == nil && err2 == nil && err3 == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Count(nodes, "slave") == n*replicas && synced {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ready within %v: %q %v\n%s", s.Addr(), startTimeout, info, err, nodes)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// URL lists every node: redis://h1:p1,h2:p2,h3:p3/0.
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		addrs[i] = s.Addr()
	}
	return "redis://" + strings.Join(addrs, ",") + "/0"
}

// Flush deletes every key on every node.
func (c *Cluster) Flush() {
	for _, s := range c.Nodes {
		s.Flush()
	}
}

// Node is one node as the cluster sees it.
type Node struct {
	Server  *Server
	ID      string
	Primary bool
	// PrimaryID is the primary a replica follows; "" for a primary.
	PrimaryID string
	Failed    bool
}

// Topology asks the first node that answers (CLUSTER NODES) who is a
// primary and who follows whom.
func (c *Cluster) Topology() []Node {
	byAddr := map[string]*Server{}
	for _, s := range c.Nodes {
		byAddr[s.Addr()] = s
	}
	for _, s := range c.Nodes {
		out, err := s.bulk("CLUSTER NODES")
		if err != nil {
			continue
		}
		var nodes []Node
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			n := Node{Server: byAddr[addr], ID: f[0], Primary: strings.Contains(f[2], "master"),
				Failed: strings.Contains(f[2], "fail")}
			if f[3] != "-" {
				n.PrimaryID = f[3]
			}
			nodes = append(nodes, n)
		}
		return nodes
	}
	c.Nodes[0].t.Fatalf("no cluster node answers CLUSTER NODES")
	return nil
}
