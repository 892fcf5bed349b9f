package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run with --latency reports.
type wrkResult struct {
	RPS      float64       // "Requests/sec: …"
	Requests int           // "… requests in 2.00s, …"
	P99      time.Duration // "99%  …" in the latency distribution
}

// parseWrk reads wrk 4's summary (as printed with --latency). A run with
// socket errors or answers other than 2xx and 3xx is an error, and so is
// a line missing: a figure silently left at zero would read as a result.
func parseWrk(out []byte) (wrkResult, error) {
	var r wrkResult
	var seen struct{ rps, n, p99 bool }
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		var err error
		switch {
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			r.RPS, err = wrkNumber(f[1], false)
			seen.rps = true
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			var v float64
			v, err = wrkNumber(f[0], true)
			r.Requests, seen.n = int(v), true
		case len(f) == 2 && f[0] == "99%":
			r.P99, err = wrkDuration(f[1])
			seen.p99 = true
		case strings.HasPrefix(line, "Socket errors:"), strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			return r, fmt.Errorf("wrk: %s", line)
		}
		if err != nil {
			return r, fmt.Errorf("wrk: unreadable %q: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return r, err
	}
	if !seen.rps || !seen.n || !seen.p99 {
		return r, fmt.Errorf("wrk: no Requests/sec, request count or 99th percentile in its output (is --latency given?):\n%s", out)
	}
	if r.Requests == 0 {
		return r, fmt.Errorf("wrk: no request completed:\n%s", out)
	}
	return r, nil
}

// wrkNumber reads a non-negative number; whole when count is set.
func wrkNumber(s string, count bool) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil:
		return 0, err
	case v < 0 || math.IsInf(v, 0) || math.IsNaN(v) || count && v != math.Trunc(v):
		return 0, fmt.Errorf("%q is not a %s", s, map[bool]string{false: "rate", true: "count"}[count])
	}
	return v, nil
}

// wrkDuration reads wrk's durations: "812.00us", "1.59ms", "1.02s",
// "1.10m".
func wrkDuration(s string) (time.Duration, error) {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := wrkNumber(num, false)
			if err != nil {
				return 0, err
			}
			if v > float64(time.Hour/u.unit) {
				return 0, fmt.Errorf("%q is over an hour", s)
			}
			return time.Duration(v * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("%q has no unit", s)
}

// wrk is one run of wrk, HTTP/1.1 keep-alive GETs of / over TLS (wrk
// checks no certificate), from 127.0.0.1: the one address wrk can send
// from, inside the bench account's rule.
type wrk struct {
	addr     string
	threads  int
	conns    int
	duration time.Duration // whole seconds
}

func (w wrk) run(ctx context.Context) (wrkResult, error) {
	secs := max(1, int(w.duration/time.Second))
	args := []string{"-t", strconv.Itoa(w.threads), "-c", strconv.Itoa(w.conns), "-d", strconv.Itoa(secs) + "s",
		"--timeout", "10s", "--latency", "https://" + w.addr + "/"}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "wrk", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return parseWrk(out)
}
