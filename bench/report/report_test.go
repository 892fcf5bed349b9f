package report

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * time.Millisecond // reversed: Percentile sorts
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"none", nil, 99, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"one p50", ms(7), 50, 7 * time.Millisecond},
		{"p50 of two", ms(1, 2), 50, time.Millisecond},
		{"p99 of 100 is the 99th", hundred, 99, 99 * time.Millisecond},
		{"p100 is the max", hundred, 100, 100 * time.Millisecond},
		{"p1 of 100 is the min", hundred, 1, time.Millisecond},
		{"p99 of 10 is the max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"p90 of 10", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 90, 9 * time.Millisecond},
		{"tiny p", ms(5, 6), 0.001, 5 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(slices.Clone(tc.in), tc.p); got != tc.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tc.in, tc.p, got, tc.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1, 9, 7}, 5},
	} {
		in := slices.Clone(tc.in)
		if got := Median(in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("Median changed its input: %v", in)
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{1234567, "1,230,000"},
		{999.4, "999"},
		{1000, "1,000"},
		{12.345, "12.3"},
		{1.5, "1.50"},
		{0.01234, "0.0123"},
		{-2500, "-2,500"},
		{math.NaN(), "n/a"},
	} {
		if got := Format(tc.in); got != tc.want {
			t.Errorf("Format(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCompareRatio(t *testing.T) {
	c := Compare("tcp-throughput", "MiB/s", 150, PeerHAProxy, 100, true)
	if c.Ratio == nil || *c.Ratio != 1.5 || !c.Met(1.0) || c.Met(1.6) {
		t.Errorf("higher is better: ratio %v", c.Ratio)
	}
	c = Compare("deny-cpu", "µs", 8, PeerHAProxy, 10, false)
	if !c.Met(1.0) || c.Met(0.5) {
		t.Errorf("lower is better: ratio %v", *c.Ratio)
	}
	if c := Compare("x", "u", 1, PeerHAProxy, 0, true); c.Ratio != nil {
		t.Errorf("a zero peer value gives ratio %v, want none", *c.Ratio)
	}
}

// TestJSONShape pins what bench/run --json prints: one key, comparisons,
// whose objects have exactly these keys, peer and peer_value null for a
// figure of gatekeeper's own.
func TestJSONShape(t *testing.T) {
	r := Report{Comparisons: []Comparison{
		Compare("tcp-vs-direct", "MiB/s", 700, PeerDirect, 1000, true),
		Own("something", "ms", 12, false),
	}}
	r.Comparisons[0].Detail = "not in the JSON"
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var top map[string][]map[string]any
	if err := json.Unmarshal(b.Bytes(), &top); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if len(top) != 1 || top["comparisons"] == nil {
		t.Fatalf("top-level keys: %v", top)
	}
	want := []string{"gatekeeper", "higher_is_better", "name", "peer", "peer_value", "ratio", "unit"}
	for i, c := range top["comparisons"] {
		var keys []string
		for k := range c {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, want) {
			t.Errorf("comparison %d has keys %v, want %v", i, keys, want)
		}
	}
	first, own := top["comparisons"][0], top["comparisons"][1]
	if first["name"] != "tcp-vs-direct" || first["peer"] != "direct" || first["peer_value"] != 1000.0 ||
		first["ratio"] != 0.7 || first["higher_is_better"] != true || first["gatekeeper"] != 700.0 {
		t.Errorf("first comparison: %v", first)
	}
	if own["peer"] != nil || own["peer_value"] != nil || own["ratio"] != nil || own["higher_is_better"] != false {
		t.Errorf("own figure: %v", own)
	}

	var empty bytes.Buffer
	if err := (Report{}).WriteJSON(&empty); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(empty.String(), `"comparisons": []`) {
		t.Errorf("an empty report is %s, want an empty list", empty.String())
	}
}

func TestMarkdown(t *testing.T) {
	r := Report{Comparisons: []Comparison{
		Compare("deny-cpu", "µs CPU/denied conn", 8.5, PeerHAProxy, 10, false),
		Own("own", "ms", 3, false),
	}}
	r.Comparisons[0].Goal = "≤ 1.0×"
	r.Comparisons[0].Detail = "a | b"
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want header, rule and 2 rows:\n%s", len(lines), b.String())
	}
	if want := "| deny-cpu | µs CPU/denied conn | 8.50 | haproxy | 10.0 | 0.85× | lower | ≤ 1.0× | a \\| b |"; lines[2] != want {
		t.Errorf("row\n%s\nwant\n%s", lines[2], want)
	}
	if want := "| own | ms | 3.00 | — | — | — | lower | — |  |"; lines[3] != want {
		t.Errorf("row\n%s\nwant\n%s", lines[3], want)
	}
}
