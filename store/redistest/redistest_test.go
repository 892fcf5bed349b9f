package redistest

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
		want string // GET reply after Restart
	}{
		{"volatile", nil, "$-1"},
		{"append-only", []Option{AppendOnly()}, "$1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Start(t, tc.opts...)
			if !strings.HasPrefix(s.URL(), "redis://127.0.0.1:") || strings.Contains(s.Addr(), ":6379") {
				t.Fatalf("URL %s: want a private loopback port", s.URL())
			}
			mustReply(t, s, "SET k v", "+OK")
			s.Restart()
			mustReply(t, s, "GET k", tc.want)
		})
	}
}

func TestPauseResumeFlush(t *testing.T) {
	s := Start(t)
	mustReply(t, s, "SET k v", "+OK")
	s.Pause()
	if reply, err := s.commandWithin("PING", 200*time.Millisecond); err == nil {
		t.Fatalf("PING to a paused server answered %q", reply)
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("PING to a paused server: %v, want a timeout", err)
	}
	s.Resume()
	mustReply(t, s, "PING", "+PONG")
	s.Flush()
	mustReply(t, s, "EXISTS k", ":0")
	s.Stop()
	s.Stop() // stopping twice is harmless
	if _, err := s.command("PING"); err == nil {
		t.Fatal("PING answered after Stop")
	}
}

func mustReply(t *testing.T, s *Server, cmd, want string) {
	t.Helper()
	reply, err := s.command(cmd)
	if err != nil || reply != want {
		t.Fatalf("%s: got %q, %v; want %q", cmd, reply, err, want)
	}
}

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Redis Cluster: skipped with -short")
	}
	c := StartCluster(t, 3)
	for _, s := range c.Nodes {
		mustReply(t, s, "CLUSTER KEYSLOT {gk:07}:feed", ":"+strconv.Itoa(slotOfTag(t, s, "gk:07")))
	}
	if !strings.HasPrefix(c.URL(), "redis://127.0.0.1:") || strings.Count(c.URL(), ",") != 2 {
		t.Fatalf("URL %s", c.URL())
	}
	c.Flush()
}

func slotOfTag(t *testing.T, s *Server, tag string) int {
	reply, err := s.command("CLUSTER KEYSLOT " + tag)
	if err != nil || !strings.HasPrefix(reply, ":") {
		t.Fatalf("CLUSTER KEYSLOT %s: %q %v", tag, reply, err)
	}
	n, _ := strconv.Atoi(reply[1:])
	return n
}

func TestKill(t *testing.T) {
	s := Start(t, AppendOnly())
	mustReply(t, s, "SET k v", "+OK")
	s.Kill()
	if _, err := s.command("PING"); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Restart()
	mustReply(t, s, "GET k", "$1")
}

func TestSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two servers and three Sentinels: skipped with -short")
	}
	s := StartSentinel(t, 1, 3)
	if got := s.Primary(t); got != s.Nodes[0] {
		t.Fatalf("primary %s, want %s", got.Addr(), s.Nodes[0].Addr())
	}
	if !strings.HasSuffix(s.URL(), "/0?master_name="+SentinelMaster) || strings.Count(s.URL(), ",") != 2 {
		t.Fatalf("URL %s", s.URL())
	}
	mustReply(t, s.Nodes[0], "SET k v", "+OK")
	start := time.Now()
	next := s.Failover(t)
	t.Logf("failover took %v", time.Since(start))
	if next != s.Nodes[1] {
		t.Fatalf("new primary %s, want the replica %s", next.Addr(), s.Nodes[1].Addr())
	}
	mustReply(t, next, "GET k", "$1")
	mustReply(t, next, "SET k w", "+OK")
}
