// Package redistest starts private redis-server processes for tests.
//
// Each Server is a real redis-server from PATH, listening only on a free
// 127.0.0.1 port with its own temporary directory, stopped when the test
// ends. It never touches a Redis the machine already runs (such as the one
// on :6379), so tests may flush, pause, restart and trim at will.
//
// StartCluster joins several such servers into a Redis Cluster of
// primaries; StartSentinel runs a primary with replicas under a group of
// Sentinels. It does not provide a client or a fake Redis.
//
//	srv := redistest.Start(t)
//	st, err := redisstore.Open(ctx, srv.URL(), redisstore.Options{})
package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/internal/freeport"
)

// Option changes how Start runs redis-server.
type Option func(*config)

type config struct {
	appendOnly  bool
	clusterNode bool
	args        []string
	// sentinel, when set, is the Sentinel configuration the server starts
	// from (in Sentinel mode), written once: Sentinel rewrites it.
	sentinel string
}

// AppendOnly turns on the append-only file, so that Restart keeps the data.
// Without it the server persists nothing and restarts empty.
func AppendOnly() Option { return func(c *config) { c.appendOnly = true } }

// ClusterNode starts the server with cluster mode on, as a node for
// StartCluster. Its cluster bus port (port+10000) is free too.
func ClusterNode() Option {
	return func(c *config) {
		c.clusterNode = true
		c.args = append(c.args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000")
	}
}

// Args adds redis-server command-line arguments ("--maxmemory", "10mb").
func Args(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// startTimeout bounds how long a server may take to answer PING, including
// replaying its append-only file on Restart.
const startTimeout = 15 * time.Second

// Server is one running redis-server.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	cfg  config

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	paused bool
}

// Start runs a redis-server on a free loopback port and stops it when the
// test ends. Without redis-server on PATH the test is skipped, or fails
// when the CI environment variable is set, so that CI cannot pass by
// silently testing nothing.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found on PATH (required when CI is set): %v", err)
		}
		t.Skipf("redis-server not found on PATH, skipping Redis test (install redis-server to run it): %v", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	for _, o := range opts {
		o(&s.cfg)
	}
	// Another process may take the free port between our probe and the
	// server's bind; a fresh port usually fixes that.
	for attempt := 1; ; attempt++ {
		s.port, err = freePort(s.cfg.clusterNode)
		if err == nil {
			err = s.start()
		}
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatalf("start redis-server: %v", err)
		}
	}
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is a redis:// URL for database 0 of the server.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Dir is the server's working directory.
func (s *Server) Dir() string { return s.dir }

// Stop shuts the server down and waits for it to exit. It is safe to call
// on a stopped server.
func (s *Server) Stop() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	if s.paused {
		s.cmd.Process.Signal(syscall.SIGCONT)
		s.paused = false
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		s.t.Errorf("redis-server on %s ignored SIGTERM for 10s and was killed", s.Addr())
	}
	s.cmd = nil
}

// Restart stops the server and starts it again on the same port and
// directory: it keeps its data only with AppendOnly.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("restart redis-server: %v", err)
	}
}

// Pause freezes the server (SIGSTOP): connections stay open but nothing is
// answered, like a host that hangs.
func (s *Server) Pause() {
	s.t.Helper()
	s.signal(syscall.SIGSTOP, true)
}

// Kill ends the server with SIGKILL, as a crash or the OOM killer would,
// and waits for it to exit. Restart brings it back.
func (s *Server) Kill() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd, s.paused = nil, false
}

// Resume undoes Pause.
func (s *Server) Resume() {
	s.t.Helper()
	s.signal(syscall.SIGCONT, false)
}

func (s *Server) signal(sig syscall.Signal, paused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatalf("redis-server on %s is not running", s.Addr())
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal redis-server: %v", err)
	}
	s.paused = paused
}

// PauseWrites makes the server hold every client's writes for d while it
// goes on answering reads (CLIENT PAUSE … WRITE): a transaction sent
// meanwhile stays unanswered, so its sender cannot know whether it will
// apply.
func (s *Server) PauseWrites(d time.Duration) {
	s.t.Helper()
	if reply, err := s.command("CLIENT PAUSE " + strconv.FormatInt(d.Milliseconds(), 10) + " WRITE"); err != nil || reply != "+OK" {
		s.t.Fatalf("CLIENT PAUSE WRITE on %s: %q %v", s.Addr(), reply, err)
	}
}

// Flush deletes every key of every database.
func (s *Server) Flush() {
	s.t.Helper()
	if reply, err := s.command("FLUSHALL"); err != nil || reply != "+OK" {
		s.t.Fatalf("FLUSHALL on %s: %q %v", s.Addr(), reply, err)
	}
}

func (s *Server) start() error {
	aof := "no"
	if s.cfg.appendOnly {
		aof = "yes"
	}
	var args []string
	if s.cfg.sentinel != "" {
		conf := filepath.Join(s.dir, "sentinel.conf")
		if _, err := os.Stat(conf); err != nil {
			if err := os.WriteFile(conf, []byte(s.cfg.sentinel), 0o600); err != nil {
				return err
			}
		}
		args = append(args, conf, "--sentinel")
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"),
		"--save", "",
		"--appendonly", aof,
		"--daemonize", "no",
	)
	args = append(args, s.cfg.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go waitExit(cmd, exited)

	deadline := time.Now().Add(startTimeout)
	for {
		reply, err := s.command("PING")
		if err == nil && reply == "+PONG" {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited at start: %s", s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on %s did not answer PING within %v (last: %q %v): %s",
				s.Addr(), startTimeout, reply, err, s.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	s.cmd, s.exited, s.paused = cmd, exited, false
	s.mu.Unlock()
	return nil
}

// waitExit reaps the server process.
func waitExit(cmd *exec.Cmd, exited chan<- struct{}) {
	cmd.Wait()
	close(exited)
}

// command sends one inline command and returns the first reply line, so
// that the helper needs no Redis client of its own.
func (s *Server) command(cmd string) (string, error) {
	return s.commandWithin(cmd, 5*time.Second)
}

func (s *Server) commandWithin(cmd string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// bulk sends one inline command whose reply is a bulk string, and returns
// the string.
func (s *Server) bulk(cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
	if !strings.HasPrefix(head, "$") || err != nil || n < 0 {
		return "", fmt.Errorf("%s: unexpected reply %q", cmd, head)
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// freePort finds a free loopback port for a redis-server, and with
// withBus its cluster bus port, 10000 above, too. The shared Redis port
// (6379) lies in no range freeport hands out.
func freePort(withBus bool) (int, error) {
	return freeport.Loopback(withBus)
}
