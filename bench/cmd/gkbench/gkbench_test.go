package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/config"
)

// TestPrepare checks that what prepare writes is what the run needs:
// gatekeeper configurations that config.Load accepts, with the groups
// and limits the comparisons rely on, and an HAProxy configuration with
// the same ACL.
func TestPrepare(t *testing.T) {
	dir := t.TempDir()
	if err := prepareCmd([]string{"-dir", dir}); err != nil {
		t.Fatal(err)
	}
	e, err := readEnv(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, k := range ports {
		p := e.get(k)
		if other, dup := seen[p]; dup {
			t.Errorf("%s and %s both got port %s", k, other, p)
		}
		seen[p] = k
	}
	if n := e.int("IDLE_CONNS"); n <= 0 || n > 10000 {
		t.Errorf("IDLE_CONNS = %d", n)
	}
	for inst, curves := range map[string][]string{"gk-a": {"X25519"}, "gk-b": nil} {
		c, err := config.Load(filepath.Join(dir, inst, "gatekeeper.yaml"))
		if err != nil {
			t.Fatalf("%s: %v", inst, err)
		}
		if strings.Join(c.TLS.Curves, ",") != strings.Join(curves, ",") {
			t.Errorf("%s: curves %v, want %v", inst, c.TLS.Curves, curves)
		}
		modes := map[string]string{}
		for _, l := range c.Listeners {
			modes[l.Name] = l.Mode
			if l.Name != "prop" && (l.Limits.PerAccount < e.int("IDLE_CONNS") || l.Routes[0].Account != benchAccount) {
				t.Errorf("%s: listener %s: limits %+v, routes %+v", inst, l.Name, l.Limits, l.Routes)
			}
		}
		if want := "http tcp tls tcp"; modes["http"]+" "+modes["tcp"]+" "+modes["tls"]+" "+modes["prop"] != want {
			t.Errorf("%s: listener modes %v", inst, modes)
		}
	}
	hap, err := os.ReadFile(filepath.Join(dir, "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ssl-default-bind-curves X25519", "ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256",
		"tcp-request connection reject unless { src -f " + dir + "/allow.lst }", "option splice-request", "option splice-response",
		"bind 127.0.0.1:" + e.get("HAP_TLS") + " ssl crt " + dir + "/haproxy.pem",
	} {
		if !strings.Contains(string(hap), want) {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
	if allow, _ := os.ReadFile(filepath.Join(dir, "allow.lst")); strings.TrimSpace(string(allow)) != allowedNet {
		t.Errorf("allow.lst = %q", allow)
	}
}

func TestProc(t *testing.T) {
	pid := os.Getpid()
	for i := 0; i < 20_000_000; i++ { // burn a little CPU so the figure is not zero
		_ = i * i
	}
	if cpu, err := cpuTime(pid); err != nil || cpu < 0 {
		t.Errorf("cpuTime = %v, %v", cpu, err)
	}
	if r, err := rss(pid); err != nil || r < 1<<20 {
		t.Errorf("rss = %v, %v", r, err)
	}
	if n := countFDs(pid); n < 3 {
		t.Errorf("countFDs = %d", n)
	}
	if _, err := cpuTime(-1); err == nil {
		t.Error("cpuTime of no process")
	}
	// The machine's busy time counts this process's: spinning for 200 ms
	// of its own CPU moves it by at least most of that.
	m0, err := machineBusy()
	own0, _ := cpuTime(pid)
	if err != nil || m0 <= 0 {
		t.Fatalf("machineBusy = %v, %v", m0, err)
	}
	for own, _ := cpuTime(pid); own-own0 < 200*time.Millisecond; own, _ = cpuTime(pid) {
		for i := 0; i < 1_000_000; i++ {
			_ = i * i
		}
	}
	if m1, _ := machineBusy(); m1-m0 < 150*time.Millisecond {
		t.Errorf("machine busy time grew by %v while this process used 200ms", m1-m0)
	}
}

func TestTableFigure(t *testing.T) {
	f := filepath.Join(t.TempDir(), "bench.txt")
	os.WriteFile(f, []byte("BenchmarkBuild/mix=realistic-2   1   190000000 ns/op   97.43 bytes/rule   1 B/op\nPASS\n"), 0o600)
	m := &measurement{log: os.Stderr}
	if err := m.table(f); err != nil {
		t.Fatal(err)
	}
	if c := m.report.Comparisons[0]; c.Name != "table-bytes-per-rule" || c.Gatekeeper != 97.43 || !c.Met(1.0) {
		t.Errorf("%+v", c)
	}
}
