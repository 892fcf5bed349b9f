package policy

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// gatherModes returns account → mode from gatekeeper_account_mode, failing
// on a value other than 1 or on an account exported twice.
func gatherModes(t *testing.T, c prometheus.Collector) map[string]string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, mf := range mfs {
		if mf.GetName() != "gatekeeper_account_mode" {
			t.Errorf("unexpected metric %s", mf.GetName())
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if v := m.GetGauge().GetValue(); v != 1 {
				t.Errorf("%v = %v, want 1", labels, v)
			}
			if _, dup := got[labels["account"]]; dup {
				t.Errorf("account %s exported twice", labels["account"])
			}
			got[labels["account"]] = labels["mode"]
		}
	}
	return got
}

func TestModeCollector(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tab := newTable(&Data{Accounts: []AccountPolicy{
		{Account: Account{ID: "10042", Mode: ModeOn}},
		{Account: Account{ID: "10043", Mode: ModeMonitor}},
		{Account: Account{ID: "10044", Mode: ModeOff}},
		{Account: Account{ID: "10045"}}, // no mode: on, as the table enforces it
	}}, now)
	cases := []struct {
		name  string
		table *Table
		want  map[string]string
	}{
		{"no table yet", nil, map[string]string{}},
		{"every account once, with its mode", tab, map[string]string{
			"10042": "on", "10043": "monitor", "10044": "off", "10045": "on"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := gatherModes(t, newModeCollector(func() *Table { return tc.table }))
			if !maps.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// The engine's metrics include the collector, reading the engine's table.
func TestEngineRegistersModeMetric(t *testing.T) {
	e := &Engine{table: newTable(&Data{Accounts: []AccountPolicy{{Account: Account{ID: "a", Mode: ModeOff}}}}, time.Now())}
	reg := prometheus.NewPedanticRegistry()
	if err := newEngineMetrics(e).register(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if !slices.Contains(names, "gatekeeper_account_mode") {
		t.Fatalf("engine metrics %v lack gatekeeper_account_mode", names)
	}
}
