package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/bench/load"
	"github.com/gatekeeper-dev/gatekeeper/bench/report"
)

// settings are the sizes of a run; quick ones finish in a few minutes.
type settings struct {
	rounds           int
	warmup, duration time.Duration
	streamConns      int
	handshakeWorkers int
	httpConns        int
	echoConns        int
	floodRate        float64
	denyCount        int
	propagations     int
	// smallRun is the length of one echo or pgbench run (whole seconds
	// for pgbench's -T).
	smallRun time.Duration
}

var (
	fullSettings = settings{rounds: 5, warmup: time.Second, duration: 5 * time.Second,
		streamConns: 4, handshakeWorkers: 16, httpConns: 16, echoConns: 8,
		floodRate: 10000, denyCount: 60000, propagations: 100, smallRun: 5 * time.Second}
	quickSettings = settings{rounds: 3, warmup: 500 * time.Millisecond, duration: 2 * time.Second,
		streamConns: 4, handshakeWorkers: 16, httpConns: 16, echoConns: 8,
		floodRate: 10000, denyCount: 20000, propagations: 30, smallRun: time.Second}
)

// measurement is one run of bench/run's measurements.
type measurement struct {
	e      env
	s      settings
	log    io.Writer
	gkA    int // pids
	gkB    int
	hap    int
	only   map[string]bool
	report report.Report
	notes  []string

	allowed, denied *load.Sources
	x25519, hybrid  *tls.Config // client configurations
	wantX25519      load.Negotiated
	wantHybrid      load.Negotiated
}

func measureCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("measure", flag.ContinueOnError)
	dir := fs.String("dir", "", "the directory prepare wrote")
	quick := fs.Bool("quick", false, "fewer and shorter rounds")
	asJSON := fs.Bool("json", false, "print JSON instead of Markdown")
	only := fs.String("only", "", "comma-separated measurement `groups` to run: tcp,echo,db,tls,handshakes,http,flood,denycpu,propagation,memory,table,churn (default all)")
	gkA := fs.Int("gk-a", 0, "`pid` of gatekeeper A (X25519)")
	gkB := fs.Int("gk-b", 0, "`pid` of gatekeeper B (default groups)")
	hap := fs.Int("haproxy", 0, "`pid` of HAProxy")
	tableBench := fs.String("table-bench", "", "`file` with the output of the policy Build benchmark")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, err := readEnv(filepath.Join(*dir, "env"))
	if err != nil {
		return err
	}
	m := &measurement{e: e, s: fullSettings, log: os.Stderr, gkA: *gkA, gkB: *gkB, hap: *hap,
		allowed: load.Range(netip.MustParseAddr(allowedFirst), netip.MustParseAddr(allowedLast)),
		denied:  load.Range(netip.MustParseAddr(deniedFirst), netip.MustParseAddr(deniedLast)),
	}
	if *quick {
		m.s = quickSettings
	}
	if *only != "" {
		m.only = map[string]bool{}
		for _, g := range strings.Split(*only, ",") {
			m.only[strings.TrimSpace(g)] = true
		}
	}
	groups := []string{"tcp", "echo", "db", "tls", "handshakes", "http", "flood", "denycpu", "propagation", "memory", "table", "churn", "none"}
	for g := range m.only {
		if !slices.Contains(groups, g) {
			return fmt.Errorf("-only: no group %q (groups: %s)", g, strings.Join(groups, ", "))
		}
	}
	m.x25519 = &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true, // the client's share of the CPU is kept small; both proxies serve the same certificate
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.X25519},
		NextProtos:         []string{"http/1.1"},
	}
	m.hybrid = m.x25519.Clone()
	m.hybrid.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768, tls.X25519}
	m.wantX25519 = load.Negotiated{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Curve: tls.X25519}
	m.wantHybrid = load.Negotiated{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Curve: tls.X25519MLKEM768}

	start := time.Now()
	loadStart := loadAverage()
	m.logf("gkbench: %d CPUs, load average %s, settings %+v", runtime.NumCPU(), loadStart, m.s)
	if err := m.setUp(ctx); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	steps := []struct {
		group string
		fn    func(context.Context) error
	}{
		{"tcp", m.tcp},
		{"echo", m.echo},
		{"db", m.db},
		{"tls", m.tlsThroughput},
		{"handshakes", m.handshakes},
		{"http", m.http},
		{"flood", m.flood},
		{"denycpu", m.denyCPU},
		{"propagation", m.propagation},
		{"memory", m.memory},
		{"table", func(context.Context) error { return m.table(*tableBench) }},
		{"churn", m.churn},
	}
	for _, st := range steps {
		if m.only != nil && !m.only[st.group] {
			continue
		}
		if err := st.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", st.group, err)
		}
	}
	m.notes = append(m.notes, fmt.Sprintf("load average (1, 5, 15 min) at start %s, at end %s; %d CPUs; took %v",
		loadStart, loadAverage(), runtime.NumCPU(), time.Since(start).Round(time.Second)))
	if *asJSON {
		return m.report.WriteJSON(os.Stdout)
	}
	if err := m.report.WriteMarkdown(os.Stdout); err != nil {
		return err
	}
	fmt.Println()
	for _, n := range m.notes {
		fmt.Println("- " + n)
	}
	return nil
}

func (m *measurement) logf(format string, args ...any) {
	fmt.Fprintf(m.log, format+"\n", args...)
}

func (m *measurement) add(c report.Comparison, goal, detail string) {
	c.Goal, c.Detail = goal, detail
	m.report.Comparisons = append(m.report.Comparisons, c)
	ratio := "—"
	if c.Ratio != nil {
		ratio = fmt.Sprintf("%.2f×", *c.Ratio)
	}
	m.logf("==> %s: gatekeeper %s %s, ratio %s (%s)", c.Name, report.Format(c.Gatekeeper), c.Unit, ratio, detail)
}

// setUp waits for every server, creates the accounts through
// gatekeeper A's admin API and checks that both proxies enforce the same
// ACL: allowed clients through, denied ones refused.
func (m *measurement) setUp(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for _, k := range []string{"UP_RAW", "UP_HTTP", "HAP_TCP", "HAP_TLS", "HAP_HTTP", "HAP_ECHO"} {
		if err := waitTCP(ctx, m.e.addr(k), deadline); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	for _, k := range []string{"GKA_OPS", "GKB_OPS"} {
		if err := waitReady(ctx, m.e.addr(k), deadline); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	token, err := readToken(filepath.Join(m.e.get("DIR"), "gk-a", "operator.token"))
	if err != nil {
		return err
	}
	op := newAdminClient(m.e.addr("GKA_ADMIN"), token)
	master, err := op.createAccount(ctx, benchAccount, "gkbench-master-"+benchAccount)
	if err != nil {
		return err
	}
	if _, err := master.addRule(ctx, benchAccount, allowedNet); err != nil && !strings.Contains(err.Error(), "already_exists") {
		return err
	}
	if _, err := op.createAccount(ctx, propAccount, "gkbench-master-"+propAccount); err != nil {
		return err
	}
	allowed, denied := netip.MustParseAddr(allowedFirst), netip.MustParseAddr(deniedFirst)
	for _, k := range []string{"GKA_TCP", "GKB_TCP", "HAP_TCP", "HAP_ECHO"} {
		if err := waitThrough(ctx, m.e.addr(k), allowed, deadline); err != nil {
			return fmt.Errorf("%s: an allowed client does not get through: %w", k, err)
		}
		if c, err := load.OpenEcho(ctx, m.e.addr(k), denied, nil, load.Negotiated{}); err == nil {
			c.Close()
			return fmt.Errorf("%s: a denied client gets through", k)
		}
	}
	for _, k := range []string{"GKA_TLS", "HAP_TLS"} {
		c, err := load.OpenEcho(ctx, m.e.addr(k), allowed, m.x25519, m.wantX25519)
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		c.Close()
	}
	c, err := load.OpenEcho(ctx, m.e.addr("GKB_TLS"), allowed, m.hybrid, m.wantHybrid)
	if err != nil {
		return fmt.Errorf("GKB_TLS: %w", err)
	}
	c.Close()
	return nil
}

func waitTCP(ctx context.Context, addr string, deadline time.Time) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("nothing listens on %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitReady(ctx context.Context, addr string, deadline time.Time) error {
	var last string
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status + " " + strings.TrimSpace(string(b))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("gatekeeper on %s not ready: %s", addr, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitThrough waits until a client from src gets an echo through addr.
func waitThrough(ctx context.Context, addr string, src netip.Addr, deadline time.Time) error {
	for {
		c, err := load.OpenEcho(ctx, addr, src, nil, load.Negotiated{})
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// system is one thing measured in a comparison: a proxy, or the direct
// path.
type system struct {
	name string
	// run measures once; its first value is the figure compared, the rest
	// are details (a p99, a rate) that are reported as medians too.
	run func(ctx context.Context) ([]float64, error)
}

// alternate measures each system once per round, in turn (A B C A B C
// …), so that whatever else loads the machine weighs on all alike, and
// returns each system's medians over the rounds.
func (m *measurement) alternate(ctx context.Context, what string, systems ...system) (map[string][]float64, error) {
	samples := map[string][][]float64{}
	for round := 1; round <= m.s.rounds; round++ {
		var line []string
		for _, sys := range systems {
			v, err := sys.run(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s, %s, round %d: %w", what, sys.name, round, err)
			}
			samples[sys.name] = append(samples[sys.name], v)
			line = append(line, fmt.Sprintf("%s %s", sys.name, report.Format(v[0])))
		}
		m.logf("%s round %d/%d: %s (load %s)", what, round, m.s.rounds, strings.Join(line, ", "), loadAverage())
	}
	out := map[string][]float64{}
	for name, rounds := range samples {
		med := make([]float64, len(rounds[0]))
		for i := range med {
			col := make([]float64, len(rounds))
			for r := range rounds {
				col[r] = rounds[r][i]
			}
			med[i] = report.Median(col)
		}
		out[name] = med
	}
	return out, nil
}

const mib = 1 << 20

func (m *measurement) stream(addr string, conf *tls.Config, want load.Negotiated) func(context.Context) ([]float64, error) {
	return func(ctx context.Context) ([]float64, error) {
		bps, err := load.Stream{Addr: addr, TLS: conf, Want: want, From: m.allowed, Conns: m.s.streamConns,
			Warmup: m.s.warmup, Duration: m.s.duration}.Run(ctx)
		return []float64{bps / mib}, err
	}
}

// streamCPU is stream with the CPU it took: the proxy process's (pid,
// none for 0) and the whole machine's, in seconds per GiB moved. Both
// are taken over the warm-up too, at the same rate as the measured part.
func (m *measurement) streamCPU(addr string, pid int) func(context.Context) ([]float64, error) {
	return func(ctx context.Context) ([]float64, error) {
		cpu := func() (proc, machine time.Duration, err error) {
			if pid != 0 {
				if proc, err = cpuTime(pid); err != nil {
					return 0, 0, err
				}
			}
			machine, err = machineBusy()
			return proc, machine, err
		}
		p0, m0, err := cpu()
		if err != nil {
			return nil, err
		}
		v, err := m.stream(addr, nil, load.Negotiated{})(ctx)
		if err != nil {
			return nil, err
		}
		p1, m1, err := cpu()
		if err != nil {
			return nil, err
		}
		gib := v[0] / 1024 * (m.s.warmup + m.s.duration).Seconds()
		return []float64{v[0], (p1 - p0).Seconds() / gib, (m1 - m0).Seconds() / gib}, nil
	}
}

func (m *measurement) tcp(ctx context.Context) error {
	r, err := m.alternate(ctx, "tcp-throughput",
		system{"gatekeeper", m.streamCPU(m.e.addr("GKA_TCP"), m.gkA)},
		system{"haproxy", m.streamCPU(m.e.addr("HAP_TCP"), m.hap)},
		system{"direct", m.streamCPU(m.e.addr("UP_RAW"), 0)},
		system{"bare-splice", m.streamCPU(m.e.addr("UP_SPLICE"), 0)},
	)
	if err != nil {
		return err
	}
	gk, hap, direct, bare := r["gatekeeper"], r["haproxy"], r["direct"], r["bare-splice"]
	detail := fmt.Sprintf("%d connections, half up, half down; vs direct: haproxy %.2f×, a bare Go splice forwarder %.2f×; "+
		"CPU s/GiB, proxy process: gatekeeper %.3f, haproxy %.3f; whole machine: gatekeeper %.3f, haproxy %.3f, bare splice %.3f, direct %.3f",
		m.s.streamConns, hap[0]/direct[0], bare[0]/direct[0], gk[1], hap[1], gk[2], hap[2], bare[2], direct[2])
	m.add(report.Compare("tcp-throughput", "MiB/s", gk[0], report.PeerHAProxy, hap[0], true), "≥ 1.0×", detail)
	// On two shared cores the kernel's work for the second connection
	// caps any user-space forwarder near 0.65× direct (docs/benchmarks.md),
	// so the goal is the least a forwarder can do, measured in the same run.
	m.add(report.Compare("tcp-vs-splice", "MiB/s", gk[0], report.PeerBareSplice, bare[0], true), "≥ 0.95×", detail)
	m.add(report.Compare("tcp-vs-direct", "MiB/s", gk[0], report.PeerDirect, direct[0], true), "", detail)
	return nil
}

func (m *measurement) tlsThroughput(ctx context.Context) error {
	r, err := m.alternate(ctx, "tls-throughput",
		system{"gatekeeper", m.stream(m.e.addr("GKA_TLS"), m.x25519, m.wantX25519)},
		system{"haproxy", m.stream(m.e.addr("HAP_TLS"), m.x25519, m.wantX25519)},
	)
	if err != nil {
		return err
	}
	m.add(report.Compare("tls-throughput", "MiB/s", r["gatekeeper"][0], report.PeerHAProxy, r["haproxy"][0], true), "≥ 1.0×",
		fmt.Sprintf("%d connections, half up, half down; TLS 1.3 AES-128-GCM", m.s.streamConns))
	return nil
}

func (m *measurement) handshaker(addr string, conf *tls.Config, want load.Negotiated) func(context.Context) ([]float64, error) {
	return func(ctx context.Context) ([]float64, error) {
		v, err := load.Handshakes{Addr: addr, TLS: conf, Want: want, From: m.allowed, Workers: m.s.handshakeWorkers,
			Warmup: m.s.warmup, Duration: m.s.duration}.Run(ctx)
		return []float64{v}, err
	}
}

func (m *measurement) handshakes(ctx context.Context) error {
	r, err := m.alternate(ctx, "tls-handshakes",
		system{"gatekeeper", m.handshaker(m.e.addr("GKA_TLS"), m.x25519, m.wantX25519)},
		system{"haproxy", m.handshaker(m.e.addr("HAP_TLS"), m.x25519, m.wantX25519)},
		system{"gatekeeper-pq", m.handshaker(m.e.addr("GKB_TLS"), m.hybrid, m.wantHybrid)},
	)
	if err != nil {
		return err
	}
	detail := fmt.Sprintf("%d clients; full handshake (no resumption), ECDSA P-256, then one echo round trip", m.s.handshakeWorkers)
	m.add(report.Compare("tls-handshakes", "handshakes/s", r["gatekeeper"][0], report.PeerHAProxy, r["haproxy"][0], true),
		"≥ 1.0×", detail+"; X25519 both")
	m.add(report.Compare("tls-handshakes-pq", "handshakes/s", r["gatekeeper-pq"][0], report.PeerHAProxy, r["haproxy"][0], true),
		"", detail+"; gatekeeper X25519MLKEM768 (its default), HAProxy X25519 (OpenSSL 3.0 has no hybrid group)")
	return nil
}

func (m *measurement) httpLoad(addr string) func(context.Context) ([]float64, error) {
	return func(ctx context.Context) ([]float64, error) {
		rps, lat, err := load.HTTP{Addr: addr, TLS: m.x25519, Want: m.wantX25519, From: m.allowed, Conns: m.s.httpConns,
			Warmup: m.s.warmup, Duration: m.s.duration}.Run(ctx)
		if err != nil {
			return nil, err
		}
		return []float64{rps, report.Ms(report.Percentile(lat.All(), 99))}, nil
	}
}

// wrkLoad is wrk, an independent load generator, against addr: a second
// opinion on http-requests that owes nothing to gkbench's own client.
// Each run starts with a second of wrk unmeasured, as gkbench's warm-up.
func (m *measurement) wrkLoad(addr string) func(context.Context) ([]float64, error) {
	return func(ctx context.Context) ([]float64, error) {
		w := wrk{addr: addr, threads: 2, conns: m.s.httpConns, duration: time.Second}
		if _, err := w.run(ctx); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		w.duration = m.s.duration
		r, err := w.run(ctx)
		if err != nil {
			return nil, err
		}
		return []float64{r.RPS, report.Ms(r.P99)}, nil
	}
}

func (m *measurement) http(ctx context.Context) error {
	r, err := m.alternate(ctx, "http-requests",
		system{"gatekeeper", m.httpLoad(m.e.addr("GKA_HTTP"))},
		system{"haproxy", m.httpLoad(m.e.addr("HAP_HTTP"))},
		system{"gatekeeper-wrk", m.wrkLoad(m.e.addr("GKA_HTTP"))},
		system{"haproxy-wrk", m.wrkLoad(m.e.addr("HAP_HTTP"))},
	)
	if err != nil {
		return err
	}
	detail := fmt.Sprintf("%d keep-alive HTTP/1.1 connections over TLS, GET of a 1 KiB body", m.s.httpConns)
	m.add(report.Compare("http-requests", "requests/s", r["gatekeeper"][0], report.PeerHAProxy, r["haproxy"][0], true), "≥ 1.0×", detail)
	m.add(report.Compare("http-p99-ms", "ms", r["gatekeeper"][1], report.PeerHAProxy, r["haproxy"][1], false), "", detail)
	wrkDetail := fmt.Sprintf("wrk (Debian's), 2 threads, %d keep-alive HTTP/1.1 connections over TLS from 127.0.0.1, GET of a 1 KiB body", m.s.httpConns)
	m.add(report.Compare("http-requests-wrk", "requests/s", r["gatekeeper-wrk"][0], report.PeerHAProxy, r["haproxy-wrk"][0], true), "≥ 1.0×", wrkDetail)
	m.add(report.Compare("http-p99-ms-wrk", "ms", r["gatekeeper-wrk"][1], report.PeerHAProxy, r["haproxy-wrk"][1], false), "", wrkDetail)
	return nil
}

// echoUnderFlood is the steady load of allowed TLS clients, with or
// without a flood of denied connections to the same listener at the same
// time. Its values: round trips/s, p99 ms, refused flood connections/s.
func (m *measurement) echoUnderFlood(addr string, flood bool) func(context.Context) ([]float64, error) {
	return func(ctx context.Context) ([]float64, error) {
		type floodOut struct {
			r   load.FloodResult
			err error
		}
		fc := make(chan floodOut, 1)
		fctx, stopFlood := context.WithCancel(ctx)
		defer stopFlood()
		if flood {
			go func() {
				r, err := load.Flood{Addr: addr, From: m.denied, Workers: 64, Rate: m.s.floodRate,
					Duration: m.s.warmup + m.s.duration}.Run(fctx)
				fc <- floodOut{r, err}
			}()
		}
		rtps, lat, err := load.Echo{Addr: addr, TLS: m.x25519, Want: m.wantX25519, From: m.allowed, Conns: m.s.echoConns,
			Warmup: m.s.warmup, Duration: m.s.duration}.Run(ctx)
		rate := 0.0
		if flood {
			stopFlood()
			f := <-fc
			if f.err != nil {
				return nil, f.err
			}
			if f.r.Admitted > 0 {
				return nil, fmt.Errorf("%d flood connections from denied addresses were let in", f.r.Admitted)
			}
			rate = f.r.RefusedRate()
		}
		if err != nil {
			return nil, err
		}
		return []float64{rtps, report.Ms(report.Percentile(lat.All(), 99)), rate}, nil
	}
}

func (m *measurement) flood(ctx context.Context) error {
	gk, hap := m.e.addr("GKA_TLS"), m.e.addr("HAP_TLS")
	r, err := m.alternate(ctx, "deny-flood",
		system{"gatekeeper", m.echoUnderFlood(gk, false)},
		system{"gatekeeper+flood", m.echoUnderFlood(gk, true)},
		system{"haproxy", m.echoUnderFlood(hap, false)},
		system{"haproxy+flood", m.echoUnderFlood(hap, true)},
	)
	if err != nil {
		return err
	}
	kept := func(sys string) float64 { return 100 * r[sys+"+flood"][0] / r[sys][0] }
	detail := fmt.Sprintf("%d allowed TLS clients doing 64-byte echo round trips, flood of %s denied connects/s offered from %s–%s; "+
		"without flood: gatekeeper %s/s p99 %.2f ms, haproxy %s/s p99 %.2f ms; with: gatekeeper %s/s (%s refused/s), haproxy %s/s (%s refused/s)",
		m.s.echoConns, report.Format(m.s.floodRate), deniedFirst, deniedLast,
		report.Format(r["gatekeeper"][0]), r["gatekeeper"][1], report.Format(r["haproxy"][0]), r["haproxy"][1],
		report.Format(r["gatekeeper+flood"][0]), report.Format(r["gatekeeper+flood"][2]),
		report.Format(r["haproxy+flood"][0]), report.Format(r["haproxy+flood"][2]))
	m.add(report.Compare("deny-flood", "% of unflooded round trips/s", kept("gatekeeper"), report.PeerHAProxy, kept("haproxy"), true), "", detail)
	m.add(report.Compare("deny-flood-p99-ms", "ms", r["gatekeeper+flood"][1], report.PeerHAProxy, r["haproxy+flood"][1], false), "",
		"the allowed clients' p99 round trip under the flood")
	return nil
}

// denyCPUOf floods a proxy's tcp listener with denied connections and
// returns its CPU time per refused connection, in µs.
func (m *measurement) denyCPUOf(addr string, pid int) func(context.Context) ([]float64, error) {
	return func(ctx context.Context) ([]float64, error) {
		before, err := cpuTime(pid)
		if err != nil {
			return nil, err
		}
		r, err := load.Flood{Addr: addr, From: m.denied, Workers: 8, Count: m.s.denyCount, Duration: time.Minute}.Run(ctx)
		if err != nil {
			return nil, err
		}
		time.Sleep(20 * time.Millisecond) // the last resets' close
		after, err := cpuTime(pid)
		if err != nil {
			return nil, err
		}
		if r.Admitted > 0 || r.Refused == 0 {
			return nil, fmt.Errorf("flood: %+v", r)
		}
		return []float64{float64(after-before) / float64(time.Microsecond) / float64(r.Refused), r.RefusedRate()}, nil
	}
}

func (m *measurement) denyCPU(ctx context.Context) error {
	if m.gkA == 0 || m.hap == 0 {
		return errors.New("the pids of gatekeeper A and HAProxy are needed (-gk-a, -haproxy)")
	}
	r, err := m.alternate(ctx, "deny-cpu",
		system{"gatekeeper", m.denyCPUOf(m.e.addr("GKA_TCP"), m.gkA)},
		system{"haproxy", m.denyCPUOf(m.e.addr("HAP_TCP"), m.hap)},
	)
	if err != nil {
		return err
	}
	m.add(report.Compare("deny-cpu", "µs CPU/denied conn", r["gatekeeper"][0], report.PeerHAProxy, r["haproxy"][0], false), "≤ 1.0×",
		fmt.Sprintf("%d denied connects per round, 8 at a time, as fast as they go (gatekeeper %s/s, haproxy %s/s); utime+stime from /proc/PID/stat",
			m.s.denyCount, report.Format(r["gatekeeper"][1]), report.Format(r["haproxy"][1])))
	return nil
}
