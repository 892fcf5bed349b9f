package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// fixedSource is a policy that never changes.
type fixedSource struct{ d *policy.Data }

func (f fixedSource) LoadPolicy(context.Context) (*policy.Data, error) { return f.d, nil }
func (f fixedSource) LoadAccountPolicy(_ context.Context, id string) (policy.AccountPolicy, error) {
	for _, p := range f.d.Accounts {
		if p.Account.ID == id {
			return p, nil
		}
	}
	return policy.AccountPolicy{}, policy.ErrNotFound
}
func (f fixedSource) Follow(ctx context.Context, _ string, _ func([]policy.Change)) error {
	<-ctx.Done()
	return ctx.Err()
}

// policyTotals reads the accounts and rules from the metrics a real
// engine exports, and heapStats reads net/http/pprof's heap page: what
// the churn group waits on and measures B with.
func TestChurnReadsInstance(t *testing.T) {
	created := time.Now()
	d := &policy.Data{Generation: "g", Cursor: "0"}
	for i := range 3 {
		ap := policy.AccountPolicy{Account: policy.Account{ID: churnAccount(i), Mode: policy.ModeOn}}
		for j := range churnPerAccount {
			ap.Rules = append(ap.Rules, churnRule(i, j, created))
		}
		d.Accounts = append(d.Accounts, ap)
	}
	d.Accounts = append(d.Accounts, policy.AccountPolicy{Account: policy.Account{ID: "other", Mode: policy.ModeOn},
		Rules: []policy.Rule{{ID: 1, Prefix: netip.MustParsePrefix("192.0.2.0/24")}}})
	reg := prometheus.NewRegistry()
	e, err := policy.NewEngine(policy.Options{Source: fixedSource{d}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/debug/pprof/heap", pprof.Handler("heap"))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ops := strings.TrimPrefix(srv.URL, "http://")

	accts, rules, err := policyTotals(t.Context(), ops)
	if err != nil || accts != 4 || rules != 3*churnPerAccount+1 {
		t.Errorf("policyTotals = %d accounts, %d rules, %v; want 4, %d", accts, rules, err, 3*churnPerAccount+1)
	}
	live, total, err := heapStats(t.Context(), ops, true)
	if err != nil || live == 0 || total < live {
		t.Errorf("heapStats = live %d, total %d, %v", live, total, err)
	}
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("heap profile: 0\n")) }))
	defer empty.Close()
	if _, _, err := heapStats(t.Context(), strings.TrimPrefix(empty.URL, "http://"), false); err == nil {
		t.Error("heapStats read a page without the figures")
	}
}
