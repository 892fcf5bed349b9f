// Package ops serves what operators and orchestrators poll: Prometheus
// metrics at /metrics, liveness at /healthz and readiness at /readyz, and,
// when asked, Go's runtime profiles at /debug/pprof/. It holds no state of
// its own; readiness comes from the checks it is given.
package ops

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one part is ready, and a detail either way.
type Check func() (ok bool, detail string)

// Handler returns the ops endpoints. /readyz answers 200 only when every
// check passes, and says each check's detail in JSON.
func Handler(g prometheus.Gatherer, checks map[string]Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		type result struct {
			OK     bool   `json:"ok"`
			Detail string `json:"detail,omitempty"`
		}
		out := struct {
			Ready  bool              `json:"ready"`
			Checks map[string]result `json:"checks"`
		}{Ready: true, Checks: map[string]result{}}
		for name, c := range checks {
			ok, detail := c()
			out.Checks[name] = result{ok, detail}
			out.Ready = out.Ready && ok
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !out.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(out)
	})
	return mux
}

// Pprof serves Go's runtime profiles (net/http/pprof) under /debug/pprof/
// and everything else with h. The profiles are registered on their own
// mux, never on http.DefaultServeMux.
func Pprof(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			mux.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}
