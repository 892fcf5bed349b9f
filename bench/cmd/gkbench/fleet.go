package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/bench/load"
	"github.com/gatekeeper-dev/gatekeeper/bench/report"
)

// enforceTimeout bounds the wait for one change to show on instance B.
const enforceTimeout = 5 * time.Second

// propagation adds a rule through gatekeeper A's admin API and times how
// long until instance B lets the newly allowed address in; then deletes
// it and times how long until B closes the connection it let in. Each
// round uses a fresh address from 127.0.1.0/24.
func (m *measurement) propagation(ctx context.Context) error {
	token, err := readToken(filepath.Join(m.e.get("DIR"), "gk-a", "operator.token"))
	if err != nil {
		return err
	}
	master, err := newAdminClient(m.e.addr("GKA_ADMIN"), token).createAccount(ctx, propAccount, "gkbench-master-"+propAccount)
	if err != nil {
		return err
	}
	b := m.e.addr("GKB_PROP")
	var prop, revoke []time.Duration
	base := netip.MustParsePrefix(probeNet).Addr()
	for i := range m.s.propagations {
		src := base
		for range i%250 + 1 {
			src = src.Next()
		}
		if c, err := load.OpenEcho(ctx, b, src, nil, load.Negotiated{}); err == nil {
			c.Close()
			return fmt.Errorf("%v gets through before its rule exists", src)
		}
		type probed struct {
			c   net.Conn
			at  time.Time
			err error
		}
		pc := make(chan probed, 1)
		t0 := time.Now()
		go func() {
			c, at, err := probe(ctx, b, src, t0.Add(enforceTimeout))
			pc <- probed{c, at, err}
		}()
		id, err := master.addRule(ctx, propAccount, src.String()+"/32")
		p := <-pc
		if err != nil {
			if p.c != nil {
				p.c.Close()
			}
			return err
		}
		if p.err != nil {
			return fmt.Errorf("rule for %v added on A: not enforced on B within %v: %w", src, enforceTimeout, p.err)
		}
		prop = append(prop, p.at.Sub(t0))

		closed := make(chan error, 1)
		var closedAt time.Time
		go func() {
			p.c.SetReadDeadline(time.Now().Add(enforceTimeout))
			var buf [16]byte
			for {
				if _, err := p.c.Read(buf[:]); err != nil {
					closedAt = time.Now()
					if isTimeoutErr(err) {
						closed <- err
					} else {
						closed <- nil
					}
					return
				}
			}
		}()
		t2 := time.Now()
		err = master.deleteRule(ctx, propAccount, id)
		cerr := <-closed
		p.c.Close()
		if err != nil {
			return err
		}
		if cerr != nil {
			return fmt.Errorf("rule for %v deleted on A: live connection on B still open after %v", src, enforceTimeout)
		}
		revoke = append(revoke, closedAt.Sub(t2))
	}
	pp99, rp99 := report.Percentile(prop, 99), report.Percentile(revoke, 99)
	pp50, rp50 := report.Percentile(prop, 50), report.Percentile(revoke, 50)
	m.logf("propagation: %d rounds, p50 %v p99 %v; revocation p50 %v p99 %v", len(prop), pp50, pp99, rp50, rp99)
	goal := func(name string, v time.Duration, goal float64, detail string) {
		c := report.Compare(name, "ms", report.Ms(v), report.PeerGoal, goal, false)
		m.add(c, fmt.Sprintf("≤ %s ms", report.Format(goal)), detail)
	}
	goal("propagation-p99-ms", pp99, 100, fmt.Sprintf("%d rule additions: POST on A's admin API → B lets the address in (probed every ms); p50 %.1f ms, max %.1f ms",
		len(prop), report.Ms(pp50), report.Ms(report.Percentile(prop, 100))))
	goal("revocation-p99-ms", rp99, 1000, fmt.Sprintf("%d rule deletions: DELETE on A's admin API → B closes the live connection; p50 %.1f ms, max %.1f ms",
		len(revoke), report.Ms(rp50), report.Ms(report.Percentile(revoke, 100))))
	return nil
}

// probe connects from src to addr every millisecond until an echo gets
// through, and returns that connection and when.
func probe(ctx context.Context, addr string, src netip.Addr, deadline time.Time) (net.Conn, time.Time, error) {
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		c, err := load.OpenEcho(ctx, addr, src, nil, load.Negotiated{})
		if err == nil {
			return c, time.Now(), nil
		}
		last = err
		time.Sleep(time.Millisecond)
	}
	return nil, time.Time{}, errors.Join(errors.New("timed out"), last)
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// memory opens many idle TLS connections through each proxy and reports
// the growth of its resident memory per connection.
func (m *measurement) memory(ctx context.Context) error {
	n := m.e.int("IDLE_CONNS")
	gk, err := m.idleMemory(ctx, m.e.addr("GKA_TLS"), m.gkA, n)
	if err != nil {
		return fmt.Errorf("gatekeeper: %w", err)
	}
	hap, err := m.idleMemory(ctx, m.e.addr("HAP_TLS"), m.hap, n)
	if err != nil {
		return fmt.Errorf("haproxy: %w", err)
	}
	detail := fmt.Sprintf("RSS growth with %s idle TLS connections, each with its upstream connection", report.Format(float64(n)))
	if n < 10000 {
		detail += fmt.Sprintf(" (not 10,000: the descriptor limit here is %s and each takes two)", m.e.get("NOFILE"))
	}
	m.add(report.Compare("memory-per-conn", "KiB", gk, report.PeerHAProxy, hap, false), "", detail)
	return nil
}

func (m *measurement) idleMemory(ctx context.Context, addr string, pid, n int) (float64, error) {
	if pid == 0 {
		return 0, errors.New("no pid")
	}
	fds0 := countFDs(pid)
	before, err := rss(pid)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	conns, err := load.OpenIdle(ctx, addr, m.allowed, m.x25519, m.wantX25519, n, 32)
	if err != nil {
		return 0, err
	}
	time.Sleep(2 * time.Second)
	after, err := rss(pid)
	load.CloseAll(conns)
	if err != nil {
		return 0, err
	}
	per := float64(after-before) / 1024 / float64(n)
	m.logf("memory: %d idle connections to %s opened in %v: RSS %d → %d MiB, %.1f KiB each", n, addr,
		time.Since(start).Round(time.Millisecond), before>>20, after>>20, per)
	// Let the proxy let go of them before the next one starts: the
	// upstream holds a descriptor for each.
	for deadline := time.Now().Add(30 * time.Second); countFDs(pid) > fds0+10 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	return per, nil
}

func countFDs(pid int) int {
	es, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(es)
}

var bytesPerRule = regexp.MustCompile(`([0-9.]+) bytes/rule`)

// table reports the policy table's size per rule at 1,000,000 rules, from
// the output of the policy package's Build benchmark.
func (m *measurement) table(path string) error {
	if path == "" {
		return errors.New("no -table-bench file")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	match := bytesPerRule.FindSubmatch(b)
	if match == nil {
		return fmt.Errorf("%s: no bytes/rule figure in:\n%s", path, b)
	}
	v, err := strconv.ParseFloat(string(match[1]), 64)
	if err != nil {
		return err
	}
	m.add(report.Compare("table-bytes-per-rule", "bytes/rule", v, report.PeerGoal, 100, false), "≤ 100 bytes/rule",
		"heap of the lookup table with 1,000,000 rules over 100,000 accounts (go test ./policy -bench Build/mix=realistic)")
	return nil
}
