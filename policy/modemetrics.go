package policy

import "github.com/prometheus/client_golang/prometheus"

// modeCollector exports gatekeeper_account_mode{account,mode}: one series
// per account, 1, labelled with the account's current firewall mode. It
// reads the current table at scrape time, like rulesCollector, so that
// publishing a table costs nothing extra. Only the current mode is
// exported (not a 0 for each other mode) to keep one series per account.
//
// The "firewall turned off" alert is
// gatekeeper_account_mode{mode="off"} == 1.
type modeCollector struct {
	table func() *Table
	desc  *prometheus.Desc
}

func newModeCollector(table func() *Table) *modeCollector {
	return &modeCollector{table: table, desc: prometheus.NewDesc("gatekeeper_account_mode",
		"1 for each account, labelled with its current firewall mode (on, monitor, off).",
		[]string{"account", "mode"}, nil)}
}

func (c *modeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *modeCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.table()
	if t == nil {
		return
	}
	for id, at := range t.all() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, id, string(at.mode.mode()))
	}
}
