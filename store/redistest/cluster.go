package redistest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of primaries without replicas, each a Server.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts n cluster nodes and joins them with redis-cli
// --cluster create, which spreads the 16384 slots over them. Like Start,
// it skips without redis-server or redis-cli, or fails under CI.
func StartCluster(t testing.TB, n int) *Cluster {
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
	for range n {
		s := Start(t, ClusterNode())
		c.Nodes = append(c.Nodes, s)
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	deadline := time.Now().Add(startTimeout)
	for _, s := range c.Nodes {
		for {
			info, err := s.bulk("CLUSTER INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ready within %v: %q %v", s.Addr(), startTimeout, info, err)
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
