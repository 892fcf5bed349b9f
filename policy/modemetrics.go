package policy

import (
	"cmp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// modeCollector exports gatekeeper_account_mode{account,mode}: one series
// per account, 1, labelled with the account's current firewall mode, and
// gatekeeper_accounts_by_mode{mode}, how many accounts are in each. It
// reads the current table at scrape time, like rulesCollector, so that
// publishing a table costs nothing extra. Only the current mode is
// exported (not a 0 for each other mode) to keep one series per account.
//
// A fleet of more accounts than limit (Options.AccountSeries) gets
// per-account series only for accounts not in mode on, off ones first, at
// most limit of them: the alerts need those, and 100,000 series of
// accounts that are on would say nothing the counts do not.
//
// The "firewall turned off" alert is
// gatekeeper_account_mode{mode="off"} == 1.
type modeCollector struct {
	table  func() *Table
	limit  int
	desc   *prometheus.Desc
	counts *prometheus.Desc
}

func newModeCollector(table func() *Table, limit int) *modeCollector {
	return &modeCollector{table: table, limit: limit,
		desc: prometheus.NewDesc("gatekeeper_account_mode",
			"1 for each account, labelled with its current firewall mode (on, monitor, off); above ops.account_series accounts, only those not on.",
			[]string{"account", "mode"}, nil),
		counts: prometheus.NewDesc("gatekeeper_accounts_by_mode",
			"Accounts enforced, by firewall mode (on, monitor, off).", []string{"mode"}, nil),
	}
}

func (c *modeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc; ch <- c.counts }

func (c *modeCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.table()
	var n [codeOff + 1]int
	type acct struct {
		id   string
		mode modeCode
	}
	var others []acct // not on, when the fleet is over the limit
	all := t.Accounts() <= c.limit
	for id, at := range t.all() {
		n[at.mode]++
		switch {
		case all:
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, id, string(at.mode.mode()))
		case at.mode != codeOn:
			others = append(others, acct{id, at.mode})
		}
	}
	if len(others) > c.limit {
		slices.SortFunc(others, func(a, b acct) int {
			return cmp.Or(cmp.Compare(b.mode, a.mode), cmp.Compare(a.id, b.id)) // off, then monitor
		})
		others = others[:max(c.limit, 0)]
	}
	for _, a := range others {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, a.id, string(a.mode.mode()))
	}
	for code, k := range n {
		ch <- prometheus.MustNewConstMetric(c.counts, prometheus.GaugeValue, float64(k), string(modeCode(code).mode()))
	}
}
