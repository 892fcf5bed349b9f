package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The fixtures are real pgbench 15 output against this machine's
// PostgreSQL: pgbench -n -S -c 2 -j 2 -T 1 -l, and the default script.
func TestParsePgbench(t *testing.T) {
	for _, tc := range []struct {
		file string
		want pgbenchResult
	}{
		{"testdata/pgbench-select-only.txt", pgbenchResult{TPS: 20257.722917, Transactions: 20094, Latency: 99 * time.Microsecond}},
		{"testdata/pgbench-tpcb.txt", pgbenchResult{TPS: 432.8039, Transactions: 427, Latency: 4621 * time.Microsecond}},
	} {
		out, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parsePgbench(out)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.file, got, tc.want)
		}
	}
}

func TestParsePgbenchRefusesIncompleteOutput(t *testing.T) {
	out, err := os.ReadFile("testdata/pgbench-select-only.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, drop := range []string{"tps = ", "latency average = ", "number of transactions actually processed: "} {
		var kept []string
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(l, drop) {
				kept = append(kept, l)
			}
		}
		if _, err := parsePgbench([]byte(strings.Join(kept, "\n"))); err == nil {
			t.Errorf("output without %q parsed", drop)
		}
	}
	bad := strings.Replace(string(out), "latency average = 0.099 ms", "latency average = 0.099 s", 1)
	if _, err := parsePgbench([]byte(bad)); err == nil {
		t.Error("a latency in seconds parsed as milliseconds")
	}
	zero := strings.Replace(string(out), "processed: 20094", "processed: 0", 1)
	if _, err := parsePgbench([]byte(zero)); err == nil {
		t.Error("a run of no transactions parsed")
	}
}

func TestParsePgbenchLog(t *testing.T) {
	f, err := os.Open("testdata/pgbench-log.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ds, err := parsePgbenchLog(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 40 || ds[0] != 1003*time.Microsecond || ds[1] != 109*time.Microsecond {
		t.Fatalf("got %d latencies starting %v", len(ds), ds[:min(2, len(ds))])
	}
	if _, err := parsePgbenchLog(strings.NewReader("0 1 12x 0 1796614970 322079\n"), nil); err == nil {
		t.Error("an unreadable latency parsed")
	}
	if _, err := parsePgbenchLog(strings.NewReader("0 1 12\n"), nil); err == nil {
		t.Error("a short line parsed")
	}
}

func FuzzParsePgbench(f *testing.F) {
	for _, p := range []string{"testdata/pgbench-select-only.txt", "testdata/pgbench-tpcb.txt", "testdata/pgbench-log.txt"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := parsePgbench(b); err == nil && (r.Transactions <= 0 || r.TPS < 0 || r.Latency < 0) {
			t.Fatalf("accepted %+v", r)
		}
		ds, err := parsePgbenchLog(strings.NewReader(string(b)), nil)
		for _, d := range ds {
			if err == nil && d < 0 {
				t.Fatalf("negative latency %v", d)
			}
		}
	})
}
