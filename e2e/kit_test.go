package e2e

// Helpers of the resilience tests (faults_test.go, fleet_test.go,
// sentinel_test.go, hostile_test.go): instances with an admin API on a
// Redis store, an admin client, a continuous checker of what each
// instance lets through, and process measurements.

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// operatorToken is every resilience instance's operator token.
const operatorToken = "e2e-operator-token-0123456789abcdef"

// instance is a gatekeeper with a tcp listener for account "acct" in front
// of an echo server, an admin API and its ops endpoints.
type instance struct {
	*gatekeeper
	db    string // the tcp listener
	admin string // the admin listener
}

// fleetConfig is the configuration of an instance on storeURL.
func fleetConfig(storeURL, db, admin, upstream, extra string) string {
	return fmt.Sprintf(`store: {url: "%s", snapshot: ./data/policy.snapshot}
ops: {addr: "{{ops}}"}
log: {level: info, format: json}
tls: {self_signed: true}
admin: {addr: "%s", operator_token_file: ./data/operator.token}
listeners:
  - {name: db, addr: "%s", mode: tcp, routes: [{account: acct, upstream: "%s"}]}
%s`, storeURL, admin, db, upstream, extra)
}

// prepareDir makes an instance directory with the operator token file.
func prepareDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "operator.token"), []byte(operatorToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startInstance runs an instance on storeURL and waits until it is ready.
func startInstance(t *testing.T, storeURL, upstream string) *instance {
	t.Helper()
	in := &instance{db: freeAddr(t), admin: freeAddr(t)}
	in.gatekeeper = startGatekeeper(t, prepareDir(t), fleetConfig(storeURL, in.db, in.admin, upstream, ""))
	return in
}

// launch starts gatekeeper like startGatekeeper but does not wait for it to
// be ready: for a start that must not become ready.
func launch(t *testing.T, dir, config string) *gatekeeper {
	t.Helper()
	g := &gatekeeper{t: t, dir: dir, ops: freeAddr(t), log: &syncBuffer{}}
	g.config = filepath.Join(dir, "gatekeeper.yaml")
	g.writeConfig(config)
	g.spawn()
	return g
}

// spawn runs `gatekeeper serve` with g's configuration and stops it when
// the test ends.
func (g *gatekeeper) spawn() {
	g.t.Helper()
	g.exited = make(chan struct{})
	cmd := exec.Command(gkBinary, "serve", "-config", g.config)
	cmd.Dir = g.dir
	cmd.Stdout = g.log
	cmd.Stderr = g.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	g.cmd = cmd
	exited := g.exited
	go func() { g.err = cmd.Wait(); close(exited) }()
	t := g.t
	t.Cleanup(func() {
		if g.cmd == cmd {
			g.stop(40 * time.Second)
		}
		if t.Failed() && g.cmd == cmd {
			t.Logf("gatekeeper log (%s):\n%s", g.dir, g.log.String())
		}
	})
}

// restart stops the process (SIGTERM) and starts it again with the same
// configuration, directory and ops address, and waits until it is ready.
func (g *gatekeeper) restart() {
	g.t.Helper()
	g.stop(40 * time.Second)
	g.spawn()
	g.waitReady()
}

// readyz returns /readyz's status and body.
func (g *gatekeeper) readyz() (int, string) {
	resp, err := http.Get("http://" + g.ops + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond every 10ms for up to d and fails with what.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// rss is the process's resident memory in bytes, from /proc.
func (g *gatekeeper) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		g.t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	g.t.Fatal("no VmRSS in /proc/PID/status")
	return 0
}

// usage is one measurement of a process.
type usage struct {
	rss        int64
	heap       int64 // go_memstats_heap_inuse_bytes
	stack      int64 // go_memstats_stack_inuse_bytes
	goroutines int
}

func (g *gatekeeper) usage() usage {
	return usage{rss: g.rss(), heap: int64(g.metricValue("go_memstats_heap_inuse_bytes")),
		stack: int64(g.metricValue("go_memstats_stack_inuse_bytes")), goroutines: int(g.metricValue("go_goroutines"))}
}

func (u usage) String() string {
	return fmt.Sprintf("RSS %s, heap %s, %d goroutines", mib(u.rss), mib(u.heap), u.goroutines)
}

// adminClient calls one instance's admin API.
type adminClient struct {
	base  string
	token string
	from  string // local address, if set
	c     *http.Client
}

func newAdmin(addr, token string) *adminClient {
	return newAdminFrom("", addr, token)
}

// newAdminFrom is an admin client whose connections come from a loopback
// address of the test's choosing.
func newAdminFrom(from, addr, token string) *adminClient {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	return &adminClient{base: "https://" + addr, token: token, from: from, c: &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext: d.DialContext,
			// The instances' certificates are throwaway self-signed ones.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		},
	}}
}

// call sends a request with a JSON body (nil for none) and returns the
// status, the body, and how long it took.
func (a *adminClient) call(method, path string, body any) (int, []byte, time.Duration) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			panic(err)
		}
		r = bytes.NewReader(b)
	}
	return a.raw(method, path, "application/json", r)
}

// raw sends a request with a body of the given content type.
func (a *adminClient) raw(method, path, contentType string, body io.Reader) (int, []byte, time.Duration) {
	req, err := http.NewRequest(method, a.base+path, body)
	if err != nil {
		return 0, []byte(err.Error()), 0
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	start := time.Now()
	resp, err := a.c.Do(req)
	took := time.Since(start)
	if err != nil {
		return 0, []byte(err.Error()), took
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, took
}

// createAccount creates an account with a master password through the
// operator API and returns a master session on the same instance.
func createAccount(t *testing.T, adminAddr, id, password string) *adminClient {
	t.Helper()
	op := newAdmin(adminAddr, operatorToken)
	if code, b, _ := op.call("POST", "/api/v1/accounts", map[string]any{"id": id, "name": id, "password": password}); code != http.StatusCreated {
		t.Fatalf("create account %s: %d %s", id, code, b)
	}
	return login(t, adminAddr, id, password)
}

// login logs the master of account in on an instance.
func login(t *testing.T, adminAddr, account, password string) *adminClient {
	t.Helper()
	code, b, _ := newAdmin(adminAddr, "").call("POST", "/api/v1/login", map[string]any{"account": account, "password": password})
	if code != http.StatusOK {
		t.Fatalf("login to %s: %d %s", account, code, b)
	}
	var res struct{ Token string }
	if err := json.Unmarshal(b, &res); err != nil || res.Token == "" {
		t.Fatalf("login answer %s: %v", b, err)
	}
	return newAdmin(adminAddr, res.Token)
}

// on is the same session on another instance (sessions live in the store).
func (a *adminClient) on(adminAddr string) *adminClient {
	return newAdminFrom(a.from, adminAddr, a.token)
}

// apiRule is a rule as the API shows it.
type apiRule struct {
	ID   uint64 `json:"id"`
	CIDR string `json:"cidr"`
}

// addRule adds a rule and returns the status and the rule.
func (a *adminClient) addRule(acct, cidr string) (int, apiRule, time.Duration) {
	code, b, took := a.call("POST", "/api/v1/accounts/"+acct+"/firewall/rules", map[string]any{"cidr": cidr})
	var r apiRule
	if code == http.StatusCreated {
		json.Unmarshal(b, &r)
	}
	return code, r, took
}

func (a *adminClient) deleteRule(acct string, id uint64) (int, time.Duration) {
	code, _, took := a.call("DELETE", fmt.Sprintf("/api/v1/accounts/%s/firewall/rules/%d", acct, id), nil)
	return code, took
}

// rules lists an account's rules; the status is not 200 when it failed.
func (a *adminClient) rules(acct string) (int, []apiRule) {
	code, b, _ := a.call("GET", "/api/v1/accounts/"+acct+"/firewall", nil)
	var fw struct{ Rules []apiRule }
	if code == http.StatusOK {
		json.Unmarshal(b, &fw)
	}
	return code, fw.Rules
}

// through reports whether a client from ip gets an echo through the tcp
// listener at addr: true only if bytes went to the upstream and back.
func through(ip, addr string) bool {
	c, err := dialFrom(ip, addr)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetLinger(0)
	return roundTrip(c, "ping") == nil
}

// probe is one attempt of the checker.
type probe struct {
	inst       int
	ip         string
	start, end time.Time
	ok         bool
}

// checker dials every instance from every client address, over and over,
// until stopped, and keeps every result.
type checker struct {
	mu     sync.Mutex
	probes []probe
	stop   chan struct{}
	wg     sync.WaitGroup
	n      atomic.Int64
}

// startChecker runs workers goroutines cycling through every (instance,
// address) pair, with a pause between two attempts of one worker.
func startChecker(t *testing.T, addrs, ips []string, workers int, pause time.Duration) *checker {
	c := &checker{stop: make(chan struct{})}
	type pair struct {
		inst int
		ip   string
	}
	var pairs []pair
	for i := range addrs {
		for _, ip := range ips {
			pairs = append(pairs, pair{i, ip})
		}
	}
	var next atomic.Int64
	for range workers {
		c.wg.Go(func() {
			for {
				select {
				case <-c.stop:
					return
				default:
				}
				p := pairs[int(next.Add(1))%len(pairs)]
				start := time.Now()
				ok := through(p.ip, addrs[p.inst])
				c.mu.Lock()
				c.probes = append(c.probes, probe{p.inst, p.ip, start, time.Now(), ok})
				c.mu.Unlock()
				c.n.Add(1)
				time.Sleep(pause)
			}
		})
	}
	t.Cleanup(c.halt)
	return c
}

// halt stops the checker and waits for its workers; safe to call twice.
func (c *checker) halt() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.wg.Wait()
}

// results returns the probes so far.
func (c *checker) results() []probe {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.probes)
}

// verdicts sums up probes of ip: how many got through, how many did not.
func verdicts(ps []probe, ip string) (through, refused int) {
	for _, p := range ps {
		if p.ip != ip {
			continue
		}
		if p.ok {
			through++
		} else {
			refused++
		}
	}
	return
}

// latencies returns the p50, p99 and max duration of the probes of ip that
// got through.
func latencies(ps []probe, ip string) (p50, p99, maxd time.Duration) {
	var ds []time.Duration
	for _, p := range ps {
		if p.ip == ip && p.ok {
			ds = append(ds, p.end.Sub(p.start))
		}
	}
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	return ds[len(ds)/2], ds[len(ds)*99/100], ds[len(ds)-1]
}

// mib formats bytes as MiB.
func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// runBinary runs the gatekeeper binary in dir with stdin and returns its
// output.
func runBinary(dir, stdin string, args ...string) (string, error) {
	cmd := exec.Command(gkBinary, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// when polls a condition in the background, every 5ms for up to d, and
// returns a function that waits for the first moment it held (zero if it
// never did).
func when(d time.Duration, cond func() bool) func() time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			if cond() {
				ch <- time.Now()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		ch <- time.Time{}
	}()
	var at time.Time
	var once sync.Once
	return func() time.Time { once.Do(func() { at = <-ch }); return at }
}

// metricValue is metric without failing the test, for background pollers.
func (g *gatekeeper) metricValue(name string) float64 {
	resp, err := http.Get("http://" + g.ops + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// metricSum adds up every series of a metric.
func (g *gatekeeper) metricSum(name string) float64 {
	resp, err := http.Get("http://" + g.ops + "/metrics")
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for l := range strings.Lines(string(b)) {
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}
