package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SentinelMaster is the name the Sentinels of StartSentinel monitor the
// primary under: the master_name of URL.
const SentinelMaster = "gk"

// Sentinel is a primary with replicas, monitored by a group of Sentinels,
// each a Server on its own loopback port.
type Sentinel struct {
	// Nodes are the data servers: Nodes[0] started as the primary, the
	// others as its replicas. After a failover another one is the primary.
	Nodes []*Server
	// Sentinels watch the nodes and fail over.
	Sentinels []*Server
}

// Sentinel timing: quick enough for tests, slow enough not to fail over on
// a scheduling hiccup of a loaded machine.
const (
	sentinelDownAfter       = 2000 * time.Millisecond
	sentinelFailoverTimeout = 5000 * time.Millisecond
)

// StartSentinel starts a primary (with opts), replicas of it, and
// sentinels Sentinels watching it with a quorum of a majority, and waits
// until the replicas are in sync and every Sentinel knows the replicas and
// the other Sentinels, so that a failover can be asked for at once. Like
// Start, it skips without redis-server, or fails under CI.
func StartSentinel(t testing.TB, replicas, sentinels int, opts ...Option) *Sentinel {
	t.Helper()
	if replicas < 1 || sentinels < 1 {
		t.Fatalf("StartSentinel(%d replicas, %d sentinels): want at least one of each", replicas, sentinels)
	}
	s := &Sentinel{}
	// No pause before a full sync: the default waits 5s for more replicas.
	opts = append([]Option{Args("--repl-diskless-sync-delay", "0")}, opts...)
	primary := Start(t, opts...)
	s.Nodes = append(s.Nodes, primary)
	for range replicas {
		ro := append(append([]Option(nil), opts...), Args("--replicaof", "127.0.0.1", strconv.Itoa(primary.port)))
		s.Nodes = append(s.Nodes, Start(t, ro...))
	}
	conf := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d\n", SentinelMaster, primary.port, sentinels/2+1) +
		fmt.Sprintf("sentinel down-after-milliseconds %s %d\n", SentinelMaster, sentinelDownAfter.Milliseconds()) +
		fmt.Sprintf("sentinel failover-timeout %s %d\n", SentinelMaster, sentinelFailoverTimeout.Milliseconds()) +
		fmt.Sprintf("sentinel parallel-syncs %s 1\n", SentinelMaster)
	for range sentinels {
		s.Sentinels = append(s.Sentinels, Start(t, func(c *config) { c.sentinel = conf }))
	}
	deadline := time.Now().Add(4 * startTimeout)
	for _, n := range s.Nodes[1:] {
		waitFor(t, deadline, "replica "+n.Addr()+" in sync", func() (bool, string) {
			info, err := n.bulk("INFO replication")
			return err == nil && strings.Contains(info, "master_link_status:up"), info
		})
	}
	for _, sn := range s.Sentinels {
		want := fmt.Sprintf("status=ok,address=%s,slaves=%d,sentinels=%d", primary.Addr(), replicas, sentinels)
		waitFor(t, deadline, "sentinel "+sn.Addr()+" knows the group", func() (bool, string) {
			info, err := sn.bulk("INFO sentinel")
			return err == nil && strings.Contains(info, want), info
		})
	}
	return s
}

// URL names the Sentinels and the master: redis://s1,s2,s3/0?master_name=gk.
func (s *Sentinel) URL() string {
	addrs := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		addrs[i] = sn.Addr()
	}
	return "redis://" + strings.Join(addrs, ",") + "/0?master_name=" + SentinelMaster
}

// Primary returns the node the first Sentinel that answers names as the
// primary.
func (s *Sentinel) Primary(t testing.TB) *Server {
	t.Helper()
	var last error
	for _, sn := range s.Sentinels {
		addr, err := sn.masterAddr()
		if err != nil {
			last = err
			continue
		}
		for _, n := range s.Nodes {
			if n.Addr() == addr {
				return n
			}
		}
		t.Fatalf("sentinel %s names %s as the primary, which is none of the nodes", sn.Addr(), addr)
	}
	t.Fatalf("no sentinel names a primary: %v", last)
	return nil
}

// Failover asks a Sentinel to fail over (SENTINEL FAILOVER: a replica is
// promoted without the old primary being down) and waits until every
// Sentinel names the new primary and it says it is one. It returns the new
// primary. The old primary becomes a replica later, when a Sentinel next
// looks at it (up to 10s): see AwaitReplica.
func (s *Sentinel) Failover(t testing.TB) *Server {
	t.Helper()
	old := s.Primary(t)
	if reply, err := s.Sentinels[0].command("SENTINEL FAILOVER " + SentinelMaster); err != nil || reply != "+OK" {
		t.Fatalf("SENTINEL FAILOVER %s: %q %v", SentinelMaster, reply, err)
	}
	return s.AwaitNewPrimary(t, old)
}

// AwaitNewPrimary waits until every Sentinel names a primary other than
// old (after old was killed, say) and that node says it is the primary;
// it returns the new primary.
func (s *Sentinel) AwaitNewPrimary(t testing.TB, old *Server) *Server {
	t.Helper()
	deadline := time.Now().Add(sentinelDownAfter + 3*sentinelFailoverTimeout)
	var next *Server
	waitFor(t, deadline, "the sentinels agreeing on a new primary", func() (bool, string) {
		next = nil
		for _, sn := range s.Sentinels {
			addr, err := sn.masterAddr()
			if err != nil || addr == old.Addr() || (next != nil && next.Addr() != addr) {
				return false, fmt.Sprintf("sentinel %s: %s %v", sn.Addr(), addr, err)
			}
			for _, n := range s.Nodes {
				if n.Addr() == addr {
					next = n
				}
			}
		}
		return next != nil, ""
	})
	waitFor(t, deadline, "the new primary "+next.Addr()+" in role master", func() (bool, string) {
		info, err := next.bulk("INFO replication")
		return err == nil && strings.Contains(info, "role:master"), info
	})
	return next
}

// AwaitReplica waits until node replicates the current primary, in sync.
func (s *Sentinel) AwaitReplica(t testing.TB, node *Server) {
	t.Helper()
	p := s.Primary(t)
	deadline := time.Now().Add(30 * time.Second)
	waitFor(t, deadline, node.Addr()+" replicating the primary "+p.Addr(), func() (bool, string) {
		info, err := node.bulk("INFO replication")
		return err == nil && strings.Contains(info, "role:slave") &&
			strings.Contains(info, "master_port:"+strconv.Itoa(p.port)) &&
			strings.Contains(info, "master_link_status:up"), info
	})
}

// masterAddr asks a Sentinel for the primary's address.
func (s *Server) masterAddr() (string, error) {
	v, err := s.array("SENTINEL GET-MASTER-ADDR-BY-NAME " + SentinelMaster)
	if err != nil {
		return "", err
	}
	if len(v) != 2 {
		return "", fmt.Errorf("sentinel %s does not know %s: %q", s.Addr(), SentinelMaster, v)
	}
	return net.JoinHostPort(v[0], v[1]), nil
}

// array sends one inline command whose reply is an array of bulk strings.
func (s *Server) array(cmd string) ([]string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	head = strings.TrimRight(head, "\r\n")
	if head == "*-1" {
		return nil, nil
	}
	n, err := strconv.Atoi(strings.TrimPrefix(head, "*"))
	if !strings.HasPrefix(head, "*") || err != nil || n < 0 {
		return nil, fmt.Errorf("%s: unexpected reply %q", cmd, head)
	}
	out := make([]string, 0, n)
	for range n {
		h, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		l, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(h, "$")))
		if !strings.HasPrefix(h, "$") || err != nil || l < 0 {
			return nil, fmt.Errorf("%s: unexpected element %q", cmd, h)
		}
		b := make([]byte, l+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		out = append(out, string(b[:l]))
	}
	return out, nil
}

// waitFor polls cond until it holds or the deadline passes, then fails
// with what it waited for and cond's last detail.
func waitFor(t testing.TB, deadline time.Time, what string, cond func() (bool, string)) {
	t.Helper()
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: timed out waiting for %s: %s", what, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
