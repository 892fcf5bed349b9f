package ops

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "gatekeeper_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	var ready atomic.Bool
	srv := httptest.NewServer(Handler(reg, map[string]Check{
		"policy": func() (bool, string) {
			if ready.Load() {
				return true, ""
			}
			return false, "store unreachable and no snapshot file yet: denying everything"
		},
		"other": func() (bool, string) { return true, "" },
	}))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "gatekeeper_test_total 1") {
		t.Errorf("/metrics = %d, missing the counter", code)
	}
	code, body := get("/readyz")
	var out struct {
		Ready  bool
		Checks map[string]struct {
			OK     bool
			Detail string
		}
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	if code != http.StatusServiceUnavailable || out.Ready || out.Checks["policy"].OK || !strings.Contains(out.Checks["policy"].Detail, "denying everything") || !out.Checks["other"].OK {
		t.Errorf("/readyz while not ready = %d %s", code, body)
	}
	ready.Store(true)
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, `"ready":true`) {
		t.Errorf("/readyz when ready = %d %s", code, body)
	}
	if code, _ := get("/nope"); code != http.StatusNotFound {
		t.Errorf("/nope = %d", code)
	}
}

func TestPprof(t *testing.T) {
	reg := prometheus.NewRegistry()
	plain := httptest.NewServer(Handler(reg, nil))
	defer plain.Close()
	srv := httptest.NewServer(Pprof(Handler(reg, nil)))
	defer srv.Close()
	get := func(base, path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(srv.URL, "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: %d %.80q", code, body)
	}
	if code, body := get(srv.URL, "/debug/pprof/heap?debug=1"); code != 200 || !strings.Contains(body, "heap profile") {
		t.Errorf("heap profile: %d %.80q", code, body)
	}
	if code, _ := get(srv.URL, "/healthz"); code != 200 {
		t.Errorf("/healthz behind Pprof: %d", code)
	}
	if code, _ := get(plain.URL, "/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ without Pprof: %d, want 404", code)
	}
}
