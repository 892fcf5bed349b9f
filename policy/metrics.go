package policy

import (
	"cmp"
	"container/heap"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

type engineMetrics struct {
	storeUp            prometheus.GaugeFunc
	syncLag            prometheus.Gauge
	generationMismatch prometheus.Gauge
	version            prometheus.GaugeFunc
	accounts           prometheus.GaugeFunc
	liveRules          prometheus.GaugeFunc
	rules              *rulesCollector
	modes              *modeCollector
}

func newEngineMetrics(e *Engine) engineMetrics {
	limit := e.opts.AccountSeries
	if limit == 0 {
		limit = DefaultAccountSeries
	}
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
		accounts: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatekeeper_policy_accounts",
			Help: "Accounts enforced.",
		}, func() float64 { return float64(e.Table().Accounts()) }),
		liveRules: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatekeeper_policy_live_rules",
			Help: "Live rules enforced, of all accounts.",
		}, func() float64 { return float64(e.Table().Rules()) }),
		rules: &rulesCollector{e: e, limit: limit, desc: prometheus.NewDesc("gatekeeper_policy_rules",
			"Live rules enforced, by account; above ops.account_series accounts, only that many with the most rules.",
			[]string{"account"}, nil)},
		modes: newModeCollector(e.Table, limit),
	}
}

func (m engineMetrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.storeUp, m.syncLag, m.generationMismatch, m.version, m.accounts, m.liveRules, m.rules, m.modes} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// rulesCollector reads rule counts from the current table at scrape time,
// so that publishing a table costs nothing extra. A fleet of more accounts
// than limit (Options.AccountSeries) gets series for the limit accounts
// with the most rules only: 100,000 series on every instance, scraped
// every few seconds, would cost Prometheus more than they tell, and
// gatekeeper_policy_live_rules has the total.
type rulesCollector struct {
	e     *Engine
	limit int
	desc  *prometheus.Desc
}

func (c *rulesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *rulesCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.e.Table()
	if t.Accounts() <= c.limit {
		for id, at := range t.all() {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(at.size()), id)
		}
		return
	}
	for _, a := range largest(t, c.limit) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(a.rules), a.id)
	}
}

// accountSize is an account and its number of live rules.
type accountSize struct {
	id    string
	rules int
}

// smaller orders accounts by rules, then by ID backwards, so that of two
// equal accounts the one with the lower ID is the larger: the same
// accounts are chosen scrape after scrape.
func smaller(a, b accountSize) int {
	return cmp.Or(cmp.Compare(a.rules, b.rules), cmp.Compare(b.id, a.id))
}

// sizeHeap is a min-heap of accounts by smaller.
type sizeHeap []accountSize

func (h sizeHeap) Len() int           { return len(h) }
func (h sizeHeap) Less(i, j int) bool { return smaller(h[i], h[j]) < 0 }
func (h sizeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *sizeHeap) Push(x any)        { *h = append(*h, x.(accountSize)) }
func (h *sizeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// largest returns the n accounts of t with the most rules, largest first,
// in O(accounts × log n).
func largest(t *Table, n int) []accountSize {
	if n <= 0 {
		return nil
	}
	h := make(sizeHeap, 0, n)
	for id, at := range t.all() {
		a := accountSize{id, at.size()}
		switch {
		case len(h) < n:
			heap.Push(&h, a)
		case smaller(h[0], a) < 0:
			h[0] = a
			heap.Fix(&h, 0)
		}
	}
	slices.SortFunc(h, func(a, b accountSize) int { return smaller(b, a) })
	return h
}
