// Package report holds what bench/run measures and how it prints it: the
// statistics of its samples (medians of rounds, latency percentiles) and
// the comparisons, as a Markdown table or as JSON.
//
// It does not measure anything; package load does.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Peers a comparison can be made against.
const (
	PeerHAProxy = "haproxy"
	PeerDirect  = "direct" // a client connected straight to the upstream
	// PeerBareSplice is a bare Go forwarder that splices each way and
	// does nothing else: the floor for a user-space tcp proxy.
	PeerBareSplice = "bare-splice"
	PeerGoal       = "goal" // SPEC.md's goal, for figures no peer has
)

// Comparison is one line of the report: gatekeeper's figure beside a
// peer's. Ratio is Gatekeeper/PeerValue whichever way is better;
// HigherIsBetter says which way that is.
type Comparison struct {
	Name           string   `json:"name"`
	Unit           string   `json:"unit"`
	Gatekeeper     float64  `json:"gatekeeper"`
	Peer           *string  `json:"peer"`
	PeerValue      *float64 `json:"peer_value"`
	Ratio          *float64 `json:"ratio"`
	HigherIsBetter bool     `json:"higher_is_better"`

	// Goal is the ratio (or, against PeerGoal, the value) SPEC.md asks
	// for, 0 if none; Detail says how the figures were taken. Both go to
	// the Markdown table only.
	Goal   string `json:"-"`
	Detail string `json:"-"`
}

// Compare builds a comparison of gatekeeper's figure with a peer's.
func Compare(name, unit string, gatekeeper float64, peer string, peerValue float64, higherIsBetter bool) Comparison {
	c := Comparison{Name: name, Unit: unit, Gatekeeper: gatekeeper, HigherIsBetter: higherIsBetter}
	c.Peer = &peer
	c.PeerValue = &peerValue
	if peerValue != 0 && !math.IsNaN(peerValue) && !math.IsNaN(gatekeeper) {
		r := gatekeeper / peerValue
		c.Ratio = &r
	}
	return c
}

// Own is a figure of gatekeeper's that has no peer.
func Own(name, unit string, gatekeeper float64, higherIsBetter bool) Comparison {
	return Comparison{Name: name, Unit: unit, Gatekeeper: gatekeeper, HigherIsBetter: higherIsBetter}
}

// Met reports whether the comparison meets its goal: a ratio of at least
// (higher is better) or at most (lower is better) goal.
func (c Comparison) Met(goal float64) bool {
	if c.Ratio == nil {
		return false
	}
	if c.HigherIsBetter {
		return *c.Ratio >= goal
	}
	return *c.Ratio <= goal
}

// Report is the whole output of a run.
type Report struct {
	Comparisons []Comparison `json:"comparisons"`
}

// WriteJSON writes r as bench/run --json prints it.
func (r Report) WriteJSON(w io.Writer) error {
	if r.Comparisons == nil {
		r.Comparisons = []Comparison{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteMarkdown writes r as a Markdown table.
func (r Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| name | unit | gatekeeper | peer | peer value | ratio | better | goal | how |\n")
	b.WriteString("|---|---|---:|---|---:|---:|---|---|---|\n")
	for _, c := range r.Comparisons {
		peer, pv, ratio := "—", "—", "—"
		if c.Peer != nil {
			peer = *c.Peer
		}
		if c.PeerValue != nil {
			pv = Format(*c.PeerValue)
		}
		if c.Ratio != nil {
			ratio = fmt.Sprintf("%.2f×", *c.Ratio)
		}
		better := "lower"
		if c.HigherIsBetter {
			better = "higher"
		}
		goal := c.Goal
		if goal == "" {
			goal = "—"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			c.Name, c.Unit, Format(c.Gatekeeper), peer, pv, ratio, better, goal, escape(c.Detail))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// Format prints a figure with three significant digits, thousands
// grouped: 1234567 → "1,230,000", 0.01234 → "0.0123".
func Format(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case v == 0:
		return "0"
	}
	abs := math.Abs(v)
	if abs >= 1000 {
		mag := math.Pow(10, math.Floor(math.Log10(abs))-2)
		return group(int64(math.Round(v/mag) * mag))
	}
	decimals := max(0, 2-int(math.Floor(math.Log10(abs))))
	return fmt.Sprintf("%.*f", decimals, v)
}

func group(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Median is the middle of xs (the mean of the two middle ones for an even
// count); NaN for none. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Percentile is the nearest-rank p-th percentile (0 < p ≤ 100) of ds: the
// smallest sample at or below which at least p% of the samples lie. Zero
// for none. ds is sorted in place.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(math.Ceil(p / 100 * float64(len(ds))))
	rank = min(max(rank, 1), len(ds))
	return ds[rank-1]
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
