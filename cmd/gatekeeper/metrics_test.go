package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/admin/web"
	"github.com/gatekeeper-dev/gatekeeper/certs"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/proxy"
	"github.com/gatekeeper-dev/gatekeeper/store/backup"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
)

// notLandedMetrics are metrics of packages that are not on main yet, as
// SPEC.md ("Metrics") names them. When a package lands, gather its names
// from its real registry in exportedMetrics and delete its lines here, so
// that a name that drifts fails this test.
var notLandedMetrics = []string{}

// describeRecorder is a prometheus.Registerer that keeps the name of every
// metric its collectors describe, including vectors with no children yet,
// which a Gather would leave out.
type describeRecorder struct{ names map[string]bool }

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *describeRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		m := fqNameRE.FindStringSubmatch(d.String())
		if m == nil {
			panic("cannot read the metric name in " + d.String())
		}
		r.names[m[1]] = true
	}
	return nil
}

func (r *describeRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		r.Register(c)
	}
}

func (r *describeRecorder) Unregister(prometheus.Collector) bool { return false }

// exportedMetrics returns the names of every gatekeeper_* metric that
// gatekeeper exports: from the real registries of the packages on main
// (policy, proxy, certs, store/redisstore, admin, admin/web), and
// notLandedMetrics for the others.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	rec := &describeRecorder{names: map[string]bool{}}
	// The engine only registers its metrics here; it never reads the store.
	engine, err := policy.NewEngine(policy.Options{Source: unusedSource{}, Registerer: rec})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.names) == 0 {
		t.Fatal("the policy engine registered no metrics")
	}
	// A proxy without listeners binds nothing.
	if _, err := proxy.New(t.Context(), proxy.Options{Engine: engine, Registerer: rec}); err != nil {
		t.Fatal(err)
	}
	cm, err := certs.New(t.Context(), certs.Options{TLS: certs.TLS{SelfSigned: true}, Registerer: rec})
	if err != nil {
		t.Fatal(err)
	}
	cm.Close()
	// A Redis store does not connect when it is opened.
	rs, err := redisstore.Open(t.Context(), "redis://127.0.0.1:1/0", redisstore.Options{Registerer: rec})
	if err != nil {
		t.Fatal(err)
	}
	rs.Close()
	svc, err := admin.New(admin.Options{Store: unusedAdminStore{}, Registerer: rec})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.NewServer(admin.ServerOptions{Service: svc, Registerer: rec}); err != nil {
		t.Fatal(err)
	}
	if _, err := web.New(web.Options{Service: svc, Registerer: rec}); err != nil {
		t.Fatal(err)
	}
	// What serve runs for the store's data (storecare.go).
	(&backup.Schedule{}).Register(rec)
	newDurabilityWatch(nil, rec, zap.NewNop())
	for _, n := range notLandedMetrics {
		if rec.names[n] {
			t.Errorf("%s is registered now: remove it from notLandedMetrics", n)
		}
		rec.names[n] = true
	}
	return rec.names
}

// unusedSource satisfies policy.Source for an engine that is never started.
type unusedSource struct{ policy.Source }

// unusedAdminStore satisfies admin.Store for a service that serves no call.
type unusedAdminStore struct{ admin.Store }

var metricNameRE = regexp.MustCompile(`\bgatekeeper_[a-zA-Z0-9_]+`)

// usedMetrics returns the gatekeeper_* names in PromQL expressions.
func usedMetrics(exprs []string) []string {
	seen := map[string]bool{}
	for _, e := range exprs {
		for _, n := range metricNameRE.FindAllString(e, -1) {
			seen[n] = true
		}
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// known reports whether name is an exported metric, or a histogram's or
// summary's series of one.
func known(exported map[string]bool, name string) bool {
	if exported[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && exported[base] {
			return true
		}
	}
	return false
}

type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string            `yaml:"alert"`
			Record string            `yaml:"record"`
			Expr   string            `yaml:"expr"`
			For    string            `yaml:"for"`
			Labels map[string]string `yaml:"labels"`
			Annot  map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadAlertRules(t *testing.T) alertRules {
	t.Helper()
	b, err := os.ReadFile("../../configs/prometheus-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("prometheus-alerts.yaml: %v", err)
	}
	return rules
}

// The alerts use only metrics gatekeeper exports, and cover what the
// operations guide promises.
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	rules := loadAlertRules(t)
	var exprs []string
	alerts := map[string]bool{}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
			alerts[r.Alert] = true
			if r.Alert == "" {
				continue
			}
			if r.Labels["severity"] == "" || r.Annot["summary"] == "" || r.Annot["runbook_url"] == "" {
				t.Errorf("%s: needs a severity, a summary and a runbook_url", r.Alert)
			}
			anchor := "#" + strings.ToLower(r.Alert)
			if !strings.HasSuffix(r.Annot["runbook_url"], anchor) {
				t.Errorf("%s: runbook_url %s does not end in %s", r.Alert, r.Annot["runbook_url"], anchor)
			}
			if !strings.Contains(string(readme), "#### "+r.Alert+"\n") {
				t.Errorf("%s: the README has no \"#### %s\" runbook entry", r.Alert, r.Alert)
			}
		}
	}
	used := usedMetrics(exprs)
	if len(used) == 0 {
		t.Fatal("no gatekeeper_* metric in the alert rules")
	}
	for _, n := range used {
		if !known(exported, n) {
			t.Errorf("prometheus-alerts.yaml uses %s, which gatekeeper does not export", n)
		}
	}
	for _, a := range []string{
		"GatekeeperStoreDown", "GatekeeperPolicySyncLag", "GatekeeperDeniedSpike", "GatekeeperFirewallOff",
		"GatekeeperCertificateExpiresSoon", "GatekeeperStoreGenerationMismatch",
	} {
		if !alerts[a] {
			t.Errorf("no %s alert", a)
		}
	}
}

// The dashboard is valid JSON and queries only metrics gatekeeper exports.
func TestDashboardUsesExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	b, err := os.ReadFile("../../configs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if dash["title"] == nil || dash["panels"] == nil {
		t.Fatal("grafana-dashboard.json has no title or panels")
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if s, ok := c.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					exprs = append(exprs, s)
				}
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(dash)
	used := usedMetrics(exprs)
	if len(used) < 10 {
		t.Fatalf("the dashboard queries only %v", used)
	}
	for _, n := range used {
		if !known(exported, n) {
			t.Errorf("grafana-dashboard.json queries %s, which gatekeeper does not export", n)
		}
	}
	// Panels must not overlap or they render on top of each other.
	type rect struct{ x, y, w, h float64 }
	var rects []rect
	for _, p := range dash["panels"].([]any) {
		g := p.(map[string]any)["gridPos"].(map[string]any)
		r := rect{g["x"].(float64), g["y"].(float64), g["w"].(float64), g["h"].(float64)}
		for _, o := range rects {
			if r.x < o.x+o.w && o.x < r.x+r.w && r.y < o.y+o.h && o.y < r.y+r.h {
				t.Errorf("panel %v overlaps %v", p.(map[string]any)["title"], o)
			}
		}
		rects = append(rects, r)
	}
}

// The cross-check itself can fail: a made-up name is caught.
func TestMetricCrossCheckCatchesUnknownNames(t *testing.T) {
	exported := exportedMetrics(t)
	for _, n := range usedMetrics([]string{`rate(gatekeeper_conections_total[5m])`, `gatekeeper_store_upp`}) {
		if known(exported, n) {
			t.Errorf("%s passed as exported", n)
		}
	}
	for _, n := range []string{"gatekeeper_tls_handshake_seconds_bucket", "gatekeeper_account_mode", "gatekeeper_policy_rules"} {
		if !known(exported, n) {
			t.Errorf("%s not recognised", n)
		}
	}
}

// promtool validates the rules and runs their unit tests
// (testdata/alerts_test.yaml). .ci/run builds promtool at a pinned version
// and sets PROMTOOL; elsewhere the test skips without it, unless CI is set.
func TestPromtool(t *testing.T) {
	bin := os.Getenv("PROMTOOL")
	if bin == "" {
		bin, _ = exec.LookPath("promtool")
	}
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is missing: .ci/run builds it and sets PROMTOOL")
		}
		t.Skip("promtool not found (set PROMTOOL, or run .ci/run)")
	}
	for _, args := range [][]string{
		{"check", "rules", "../../configs/prometheus-alerts.yaml"},
		{"test", "rules", "testdata/alerts_test.yaml"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// Every alert in the rules has a promtool unit test that fires it.
func TestEveryAlertHasAUnitTest(t *testing.T) {
	rules := loadAlertRules(t)
	b, err := os.ReadFile("testdata/alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			AlertRuleTests []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatal(err)
	}
	fired := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTests {
			if len(a.ExpAlerts) > 0 {
				fired[a.Alertname] = true
			}
		}
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && !fired[r.Alert] {
				t.Errorf("%s: no test in testdata/alerts_test.yaml expects it to fire", r.Alert)
			}
		}
	}
}
