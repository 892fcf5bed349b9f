package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// pgbenchResult is what one pgbench run reports on its standard output.
type pgbenchResult struct {
	TPS          float64       // "tps = …", without the initial connection time
	Transactions int           // "number of transactions actually processed: …"
	Failed       int           // "number of failed transactions: …"
	Latency      time.Duration // "latency average = … ms"
}

// parsePgbench reads the summary pgbench prints at the end of a run
// (PostgreSQL 15's format). A line missing or unreadable is an error:
// a figure silently left at zero would read as a result.
func parsePgbench(out []byte) (pgbenchResult, error) {
	var r pgbenchResult
	var seen struct{ tps, tx, lat bool }
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		var err error
		switch {
		case strings.HasPrefix(line, "tps = "):
			r.TPS, err = pgbenchFigure(line, "tps = ", "(without")
			seen.tps = true
		case strings.HasPrefix(line, "number of transactions actually processed: "):
			var v float64
			v, err = pgbenchFigure(line, "number of transactions actually processed: ", "")
			r.Transactions, seen.tx = int(v), true
		case strings.HasPrefix(line, "number of failed transactions: "):
			var v float64
			v, err = pgbenchFigure(line, "number of failed transactions: ", "(")
			r.Failed = int(v)
		case strings.HasPrefix(line, "latency average = "):
			var v float64
			v, err = pgbenchFigure(line, "latency average = ", "ms")
			if v > float64(maxPgbenchLatency.Milliseconds()) {
				return r, fmt.Errorf("pgbench: latency %q longer than %v", line, maxPgbenchLatency)
			}
			r.Latency, seen.lat = time.Duration(v*float64(time.Millisecond)), true
		}
		if err != nil {
			return r, err
		}
	}
	if err := sc.Err(); err != nil {
		return r, err
	}
	if !seen.tps || !seen.tx || !seen.lat {
		return r, fmt.Errorf("pgbench: no tps, transaction count or latency average in its output:\n%s", out)
	}
	if r.Transactions == 0 {
		return r, fmt.Errorf("pgbench: no transaction completed:\n%s", out)
	}
	return r, nil
}

// maxPgbenchLatency bounds a transaction's latency as read: a longer one
// is a garbled line, and converting it to a Duration would overflow.
const maxPgbenchLatency = time.Hour

// pgbenchFigure reads the non-negative number after prefix in line,
// followed by nothing or by a word starting with unit ("ms", "(without").
// Counts are whole numbers.
func pgbenchFigure(line, prefix, unit string) (float64, error) {
	f := strings.Fields(strings.TrimPrefix(line, prefix))
	if len(f) == 0 || len(f) > 1 && (unit == "" || !strings.HasPrefix(f[1], unit)) || len(f) == 1 && unit == "ms" {
		return 0, fmt.Errorf("pgbench: unreadable %q", line)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	// Counts stay far below 2^53, where a float64 still holds every whole
	// number and the conversion to int is exact.
	if err != nil || v < 0 || v > 1<<53 || unit == "" && v != math.Trunc(v) {
		return 0, fmt.Errorf("pgbench: unreadable %q", line)
	}
	return v, nil
}

// parsePgbenchLog appends the latency of every transaction in a pgbench
// per-transaction log (-l: "client_id transaction_no time script_no
// time_epoch time_us …", time in µs) to ds.
func parsePgbenchLog(r io.Reader, ds []time.Duration) ([]time.Duration, error) {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			return ds, fmt.Errorf("pgbench log line %d: %d fields, want at least 6", n, len(f))
		}
		if f[2] == "failed" || f[2] == "skipped" {
			continue // counted in the summary's failed transactions
		}
		us, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || us < 0 || us > maxPgbenchLatency.Microseconds() {
			return ds, fmt.Errorf("pgbench log line %d: latency %q", n, f[2])
		}
		ds = append(ds, time.Duration(us)*time.Microsecond)
	}
	return ds, sc.Err()
}

// pgbench is one pgbench run against a PostgreSQL reached at port, with
// its per-transaction latencies.
type pgbench struct {
	port     string
	db       string
	selectS  bool // -S: select only; otherwise the built-in TPC-B-like script
	clients  int
	threads  int
	duration time.Duration // whole seconds
}

func (p pgbench) run(ctx context.Context) (pgbenchResult, []time.Duration, error) {
	dir, err := os.MkdirTemp("", "gkbench-pgbench-")
	if err != nil {
		return pgbenchResult{}, nil, err
	}
	defer os.RemoveAll(dir)
	secs := max(1, int(p.duration/time.Second))
	args := []string{"-n", "-h", "127.0.0.1", "-p", p.port, "-U", "postgres",
		"-c", strconv.Itoa(p.clients), "-j", strconv.Itoa(p.threads), "-T", strconv.Itoa(secs),
		"-l", "--log-prefix", filepath.Join(dir, "tx")}
	if p.selectS {
		args = append(args, "-S")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "pgbench", append(args, p.db)...)
	cmd.Env = append(os.Environ(), "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return pgbenchResult{}, nil, fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	r, err := parsePgbench(out)
	if err != nil {
		return r, nil, err
	}
	if r.Failed > 0 {
		return r, nil, fmt.Errorf("pgbench: %d failed transactions\n%s", r.Failed, stderr.Bytes())
	}
	logs, err := filepath.Glob(filepath.Join(dir, "tx.*"))
	if err != nil || len(logs) == 0 {
		return r, nil, fmt.Errorf("pgbench wrote no transaction log in %s", dir)
	}
	var ds []time.Duration
	for _, l := range logs {
		f, err := os.Open(l)
		if err != nil {
			return r, nil, err
		}
		ds, err = parsePgbenchLog(f, ds)
		f.Close()
		if err != nil {
			return r, nil, fmt.Errorf("%s: %w", l, err)
		}
	}
	return r, ds, nil
}
