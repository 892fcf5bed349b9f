package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/bench/load"
	"github.com/gatekeeper-dev/gatekeeper/bench/report"
)

// The db group: pgbench against the run's PostgreSQL through each path.
// dbClients and dbThreads are the load (8 clients, 2 threads);
// a single client measures what each path adds to one round trip.
const (
	dbClients = 8
	dbThreads = 2
)

// pgbenchOf runs one pgbench through port and returns, in this order:
// transactions/s, average and p99 latency in µs, the CPU of the proxy
// process (pid, none for 0) per transaction in µs, and the median latency
// in µs.
func (m *measurement) pgbenchOf(port string, pid int, selectOnly bool, clients int) func(context.Context) ([]float64, error) {
	return func(ctx context.Context) ([]float64, error) {
		var before time.Duration
		if pid != 0 {
			var err error
			if before, err = cpuTime(pid); err != nil {
				return nil, err
			}
		}
		p := pgbench{port: port, db: m.e.get("PG_DB"), selectS: selectOnly, clients: clients,
			threads: min(clients, dbThreads), duration: m.s.smallRun}
		r, ds, err := p.run(ctx)
		if err != nil {
			return nil, err
		}
		cpu := 0.0
		if pid != 0 {
			after, err := cpuTime(pid)
			if err != nil {
				return nil, err
			}
			cpu = float64(after-before) / float64(time.Microsecond) / float64(r.Transactions)
		}
		return []float64{r.TPS, mean(ds), us(report.Percentile(ds, 99)), cpu, us(report.Percentile(ds, 50))}, nil
	}
}

func mean(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return us(sum / time.Duration(len(ds)))
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func (m *measurement) db(ctx context.Context) error {
	if m.gkA == 0 || m.hap == 0 {
		return errors.New("the pids of gatekeeper A and HAProxy are needed (-gk-a, -haproxy)")
	}
	if _, ok := m.e["PG_DB"]; !ok {
		return errors.New("no PG_DB in the env file: bench/run sets up the database")
	}
	paths := []struct {
		name, port string
		pid        int
	}{
		{"gatekeeper-tcp", m.e.get("GKA_DB_TCP"), m.gkA},
		{"haproxy-tcp", m.e.get("HAP_DB_TCP"), m.hap},
		{"direct", m.e.get("PG_PORT"), 0},
		{"gatekeeper-tls", m.e.get("CONN_GK"), m.gkA},
		{"haproxy-tls", m.e.get("CONN_HAP"), m.hap},
	}
	run := func(what string, selectOnly bool, clients int) (map[string][]float64, error) {
		var systems []system
		for _, p := range paths {
			systems = append(systems, system{p.name, m.pgbenchOf(p.port, p.pid, selectOnly, clients)})
		}
		return m.alternate(ctx, what, systems...)
	}
	sel, err := run("db-select-only", true, dbClients)
	if err != nil {
		return err
	}
	single, err := run("db-select-only-1-client", true, 1)
	if err != nil {
		return err
	}
	tpcb, err := run("db-tpcb", false, dbClients)
	if err != nil {
		return err
	}
	line := func(r map[string][]float64, name string) string {
		v := r[name]
		s := fmt.Sprintf("%s %s tps, avg %.0f µs, p50 %.0f µs, p99 %.0f µs", name, report.Format(v[0]), v[1], v[4], v[2])
		if v[3] > 0 {
			s += fmt.Sprintf(", proxy CPU %.1f µs/tx", v[3])
		}
		return s
	}
	all := func(r map[string][]float64) string {
		var out string
		for i, p := range paths {
			if i > 0 {
				out += "; "
			}
			out += line(r, p.name)
		}
		return out
	}
	direct := sel["direct"][0]
	load := fmt.Sprintf("pgbench scale 10, %d clients, %d threads, %v a run", dbClients, dbThreads, m.s.smallRun)
	m.add(report.Compare("db-tps-tcp", "transactions/s", sel["gatekeeper-tcp"][0], report.PeerHAProxy, sel["haproxy-tcp"][0], true), "≥ 1.0×",
		fmt.Sprintf("pgbench -S, %s; vs direct: gatekeeper %.2f×, haproxy %.2f×; %s", load,
			sel["gatekeeper-tcp"][0]/direct, sel["haproxy-tcp"][0]/direct, all(sel)))
	m.add(report.Compare("db-tps-tls", "transactions/s", sel["gatekeeper-tls"][0], report.PeerHAProxy, sel["haproxy-tls"][0], true), "≥ 1.0×",
		fmt.Sprintf("pgbench -S, %s, each through its own gatekeeper connect (plain TCP in, TLS 1.3 out)", load))
	m.add(report.Compare("db-cpu-us-per-tx-tcp", "µs CPU/transaction", sel["gatekeeper-tcp"][3], report.PeerHAProxy, sel["haproxy-tcp"][3], false), "",
		"the proxy process's utime+stime per pgbench -S transaction, "+load)
	// The median, not the mean: on a shared machine a few transactions
	// that wait for a core weigh on the mean more than the path does.
	added := func(name string) float64 { return single[name][4] - single["direct"][4] }
	m.add(report.Compare("db-latency-tcp-us", "µs added per round trip", added("gatekeeper-tcp"), report.PeerHAProxy, added("haproxy-tcp"), false),
		"≤ 1.0× (moonshot ≤ 20 µs)",
		fmt.Sprintf("pgbench -S, 1 client, median of every transaction's latency (one query, one round trip) less direct's %.0f µs; tls via connect adds: gatekeeper %.0f µs, haproxy %.0f µs; %s",
			single["direct"][4], added("gatekeeper-tls"), added("haproxy-tls"), all(single)))
	m.add(report.Compare("db-tps-tpcb-tcp", "transactions/s", tpcb["gatekeeper-tcp"][0], report.PeerHAProxy, tpcb["haproxy-tcp"][0], true), "",
		fmt.Sprintf("pgbench's default TPC-B-like script, %s; %s", load, all(tpcb)))
	m.add(report.Compare("db-tps-tpcb-tls", "transactions/s", tpcb["gatekeeper-tls"][0], report.PeerHAProxy, tpcb["haproxy-tls"][0], true), "",
		"pgbench's default TPC-B-like script through gatekeeper connect, "+load)
	return nil
}

// echoOf is a 64-byte echo over plain TCP through addr; its values: the
// mean round trip in µs, the p99 in µs, round trips/s.
func (m *measurement) echoOf(addr string, conns int) func(context.Context) ([]float64, error) {
	return func(ctx context.Context) ([]float64, error) {
		rate, lat, err := load.Echo{Addr: addr, From: m.allowed, Conns: conns, Size: 64,
			Warmup: m.s.warmup, Duration: m.s.smallRun}.Run(ctx)
		if err != nil {
			return nil, err
		}
		ds := lat.All()
		return []float64{mean(ds), us(report.Percentile(ds, 99)), rate}, nil
	}
}

// echo is the small-message path without PostgreSQL: 64-byte request,
// 64-byte answer, 1 and 16 clients.
func (m *measurement) echo(ctx context.Context) error {
	for _, conns := range []int{1, 16} {
		r, err := m.alternate(ctx, fmt.Sprintf("echo-%d", conns),
			system{"gatekeeper", m.echoOf(m.e.addr("GKA_TCP"), conns)},
			system{"haproxy", m.echoOf(m.e.addr("HAP_ECHO"), conns)},
			system{"direct", m.echoOf(m.e.addr("UP_RAW"), conns)},
			system{"bare-splice", m.echoOf(m.e.addr("UP_SPLICE"), conns)},
		)
		if err != nil {
			return err
		}
		name := "echo-rtt-us"
		if conns > 1 {
			name = fmt.Sprintf("echo-rtt-us-%d", conns)
		}
		var detail string
		for i, sys := range []string{"gatekeeper", "haproxy", "direct", "bare-splice"} {
			if i > 0 {
				detail += "; "
			}
			detail += fmt.Sprintf("%s mean %.1f µs, p99 %.0f µs, %s/s", sys, r[sys][0], r[sys][1], report.Format(r[sys][2]))
		}
		m.add(report.Compare(name, "µs", r["gatekeeper"][0], report.PeerHAProxy, r["haproxy"][0], false), "≤ 1.0×",
			fmt.Sprintf("%d client(s), 64-byte request and answer over tcp mode (HAProxy mode tcp without splice); %s", conns, detail))
	}
	return nil
}
