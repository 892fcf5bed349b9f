package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The fixtures are real wrk 4.1 output (Debian's package): wrk -t1 -c2
// -d1s --latency against a small HTTP server, once on a page that exists
// and once on one that answers 404.
func TestParseWrk(t *testing.T) {
	out, err := os.ReadFile("testdata/wrk-latency.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{RPS: 875.13, Requests: 877, P99: 47090 * time.Microsecond}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestParseWrkRefusesFailedOrIncompleteRuns(t *testing.T) {
	out, err := os.ReadFile("testdata/wrk-latency.txt")
	if err != nil {
		t.Fatal(err)
	}
	if non2xx, err := os.ReadFile("testdata/wrk-non2xx.txt"); err != nil {
		t.Fatal(err)
	} else if _, err := parseWrk(non2xx); err == nil || !strings.Contains(err.Error(), "Non-2xx") {
		t.Errorf("a run of 404s: %v", err)
	}
	for name, edit := range map[string]func(string) string{
		"socket errors": func(s string) string {
			return strings.Replace(s, "Requests/sec:", "  Socket errors: connect 0, read 3, write 0, timeout 0\nRequests/sec:", 1)
		},
		"no Requests/sec":  func(s string) string { return strings.Replace(s, "Requests/sec:", "Reqs:", 1) },
		"no 99th":          func(s string) string { return strings.Replace(s, "99%", "98%", 1) },
		"no request count": func(s string) string { return strings.Replace(s, "877 requests in", "877 reqs in", 1) },
		"no requests":      func(s string) string { return strings.Replace(s, "877 requests in", "0 requests in", 1) },
		"no unit":          func(s string) string { return strings.Replace(s, "47.09ms", "47.09", 1) },
		"negative rate":    func(s string) string { return strings.Replace(s, "875.13", "-875.13", 1) },
	} {
		if r, err := parseWrk([]byte(edit(string(out)))); err == nil {
			t.Errorf("%s: parsed as %+v", name, r)
		}
	}
}

func TestWrkDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"812.00us": 812 * time.Microsecond, "1.59ms": 1590 * time.Microsecond,
		"1.02s": 1020 * time.Millisecond, "1.10m": 66 * time.Second,
	} {
		if got, err := wrkDuration(in); err != nil || got != want {
			t.Errorf("wrkDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func FuzzParseWrk(f *testing.F) {
	for _, p := range []string{"testdata/wrk-latency.txt", "testdata/wrk-non2xx.txt"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := parseWrk(b); err == nil && (r.Requests <= 0 || r.RPS < 0 || r.P99 < 0) {
			t.Fatalf("accepted %+v", r)
		}
	})
}
