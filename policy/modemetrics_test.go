package policy

import (
	"maps"
	"net/netip"
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
		switch mf.GetName() {
		case "gatekeeper_accounts_by_mode":
			continue
		case "gatekeeper_account_mode":
		default:
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
		limit int
		want  map[string]string
	}{
		{"no table yet", nil, DefaultAccountSeries, map[string]string{}},
		{"every account once, with its mode", tab, DefaultAccountSeries, map[string]string{
			"10042": "on", "10043": "monitor", "10044": "off", "10045": "on"}},
		{"as many accounts as the limit", tab, 4, map[string]string{
			"10042": "on", "10043": "monitor", "10044": "off", "10045": "on"}},
		{"over the limit: those not on", tab, 3, map[string]string{"10043": "monitor", "10044": "off"}},
		{"over the limit and more not on: off first", tab, 1, map[string]string{"10044": "off"}},
		{"none", tab, -1, map[string]string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := gatherModes(t, newModeCollector(func() *Table { return tc.table }, tc.limit))
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

// gatherGauges returns the values of a metric by the value of one label
// ("" for a metric without labels).
func gatherGauges(t *testing.T, reg *prometheus.Registry, name, label string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			k := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					k = l.GetValue()
				}
			}
			got[k] = m.GetGauge().GetValue()
		}
	}
	return got
}

// A fleet larger than AccountSeries exports per-account rule counts for
// the largest accounts only, the same ones scrape after scrape, and the
// totals and the counts by mode whatever its size.
func TestAccountSeriesLimit(t *testing.T) {
	now := time.Now()
	d := &Data{}
	sizes := map[string]int{"a": 3, "b": 1, "c": 3, "d": 2, "e": 0}
	for id, n := range sizes {
		p := AccountPolicy{Account: Account{ID: id, Mode: ModeOn}}
		if id == "e" {
			p.Account.Mode = ModeOff
		}
		for i := range n {
			p.Rules = append(p.Rules, Rule{ID: RuleID(i + 1), Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 32)})
		}
		d.Accounts = append(d.Accounts, p)
	}
	for _, tc := range []struct {
		limit int
		want  map[string]float64
	}{
		{5, map[string]float64{"a": 3, "b": 1, "c": 3, "d": 2, "e": 0}},
		{2, map[string]float64{"a": 3, "c": 3}},
		{3, map[string]float64{"a": 3, "c": 3, "d": 2}},
		{1, map[string]float64{"a": 3}}, // of two equal, the lower ID
		{-1, map[string]float64{}},
	} {
		e := &Engine{opts: Options{AccountSeries: tc.limit}, table: newTable(d, now)}
		reg := prometheus.NewPedanticRegistry()
		if err := newEngineMetrics(e).register(reg); err != nil {
			t.Fatal(err)
		}
		if got := gatherGauges(t, reg, "gatekeeper_policy_rules", "account"); !maps.Equal(got, tc.want) {
			t.Errorf("limit %d: gatekeeper_policy_rules %v, want %v", tc.limit, got, tc.want)
		}
		if got := gatherGauges(t, reg, "gatekeeper_policy_live_rules", ""); got[""] != 9 {
			t.Errorf("limit %d: gatekeeper_policy_live_rules %v, want 9", tc.limit, got)
		}
		if got := gatherGauges(t, reg, "gatekeeper_policy_accounts", ""); got[""] != 5 {
			t.Errorf("limit %d: gatekeeper_policy_accounts %v, want 5", tc.limit, got)
		}
		want := map[string]float64{"on": 4, "monitor": 0, "off": 1}
		if got := gatherGauges(t, reg, "gatekeeper_accounts_by_mode", "mode"); !maps.Equal(got, want) {
			t.Errorf("limit %d: gatekeeper_accounts_by_mode %v, want %v", tc.limit, got, want)
		}
	}
}
