package policy

import "github.com/prometheus/client_golang/prometheus"

type engineMetrics struct {
	storeUp            prometheus.GaugeFunc
	syncLag            prometheus.Gauge
	generationMismatch prometheus.Gauge
	version            prometheus.GaugeFunc
	rules              *rulesCollector
	modes              *modeCollector
}

func newEngineMetrics(e *Engine) engineMetrics {
	return engineMetrics{
		storeUp: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatekeeper_store_up",
			Help: "1 if the policy store answered the last attempt, else 0.",
		}, func() float64 {
			if e.StoreUp() {
				return 1
			}
			return 0
		}),
		syncLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatekeeper_policy_sync_lag_seconds",
			Help: "Time from a change's commit in the store to its enforcement here, for the last change applied.",
		}),
		generationMismatch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatekeeper_store_generation_mismatch",
			Help: "1 while the store's contents are not those the enforced policy came from (the store lost its data).",
		}),
		version: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatekeeper_policy_version",
			Help: "Number of policy changes published since start.",
		}, func() float64 { return float64(e.Table().Version()) }),
		rules: &rulesCollector{e: e, desc: prometheus.NewDesc("gatekeeper_policy_rules",
			"Live rules enforced, by account.", []string{"account"}, nil)},
		modes: newModeCollector(e.Table),
	}
}

func (m engineMetrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.storeUp, m.syncLag, m.generationMismatch, m.version, m.rules, m.modes} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// rulesCollector reads rule counts from the current table at scrape time,
// so that publishing a table costs nothing extra.
type rulesCollector struct {
	e    *Engine
	desc *prometheus.Desc
}

func (c *rulesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *rulesCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.e.Table()
	for id, at := range t.all() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(at.prefixes.Size()), id)
	}
}
