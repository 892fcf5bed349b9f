package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const minimal = `
tls: {self_signed: true}
listeners:
  - name: desktop
    addr: ":5433"
    mode: tls
    routes:
      - {account: "10042", upstream: "10.1.0.5:5432"}
`

func TestParseMinimalAppliesDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listeners[0]
	if c.Store.URL != DefaultStoreURL || c.Store.Snapshot != DefaultSnapshot || c.Store.Timeout != DefaultStoreTimeout {
		t.Errorf("store defaults: %+v", c.Store)
	}
	// The proxy applies listener defaults; the configuration leaves them
	// unset rather than decide them a second time.
	if l.Timeouts != (Timeouts{}) || l.Limits != (Limits{}) {
		t.Errorf("listener defaults decided in config: %+v %+v", l.Timeouts, l.Limits)
	}
	if c.Log.Level != "info" || c.Log.Format != "json" {
		t.Errorf("log defaults: %+v", c.Log)
	}
}

// Each broken file must be refused with a problem at the named key path.
var brokenConfigs = []struct {
	name, yaml, path, msg string
}{
	{"unknown top key", minimal + "bogus: 1\n", "bogus", "unknown key"},
	{"unknown nested key", strings.Replace(minimal, "mode: tls", "mode: tls\n    mod: tcp", 1), "listeners[0].mod", "unknown key"},
	{"bad mode", strings.Replace(minimal, "mode: tls", "mode: udp", 1), "listeners[0].mode", "not a mode"},
	{"port out of range", strings.Replace(minimal, `":5433"`, `":99999"`, 1), "listeners[0].addr", "port 99999 out of range"},
	{"addr not host:port", strings.Replace(minimal, `":5433"`, `"5433"`, 1), "listeners[0].addr", "not host:port"},
	{"bad account", strings.Replace(minimal, `"10042"`, `"-x"`, 1), "listeners[0].routes[0].account", "not an account number"},
	{"upstream without host", strings.Replace(minimal, `"10.1.0.5:5432"`, `":5432"`, 1), "listeners[0].routes[0].upstream", "no host"},
	{"duration not a duration", minimal + "    timeouts: {idle: soon}\n", "listeners[0].timeouts.idle", "cannot unmarshal"},
	{"wrong type", strings.Replace(minimal, "self_signed: true", "self_signed: [1]", 1), "tls.self_signed", "cannot unmarshal"},
	{"smtp without a host", minimal + "notify: {smtp: {addr: \":587\", from: gk@example.com}}\n", "notify.smtp.addr", "host"},
	{"smtp without a sender", minimal + "notify: {smtp: {addr: \"mail.example.com:587\"}}\n", "notify.smtp.from", "sender address"},
	{"page url not a url", minimal + "notify: {page_url: gate.example.com}\n", "notify.page_url", "not an http(s) URL"},
	{"public url not a url", minimal + "admin: {public_url: gate.example.com}\n", "admin.public_url", "not an http(s) URL"},
	{"public url with a path", minimal + "admin: {public_url: \"https://gate.example.com/admin\"}\n", "admin.public_url", "not an http(s) URL"},
	{"unknown access", strings.Replace(minimal, `upstream: "10.1.0.5:5432"}`, `upstream: "10.1.0.5:5432", access: password}`, 1), "listeners[0].routes[0].access", "not address, login or address+login"},
	{"login on a tls listener", strings.Replace(minimal, `upstream: "10.1.0.5:5432"}`, `upstream: "10.1.0.5:5432", sni: app.example.com, access: login}`, 1) + "admin: {public_url: \"https://gate.example.com\"}\n", "listeners[0].routes[0].access", "needs mode http"},
	{"login without sni", strings.Replace(strings.Replace(minimal, "mode: tls", "mode: http", 1), `upstream: "10.1.0.5:5432"}`, `upstream: "10.1.0.5:5432", access: login}`, 1) + "admin: {public_url: \"https://gate.example.com\"}\n", "listeners[0].routes[0].access", "needs an sni"},
	{"login without public url", strings.Replace(strings.Replace(minimal, "mode: tls", "mode: http", 1), `upstream: "10.1.0.5:5432"}`, `upstream: "10.1.0.5:5432", sni: app.example.com, access: address+login}`, 1), "listeners[0].routes[0].access", "needs admin.public_url"},
	{"pprof without ops listener", minimal + "ops: {pprof: true}\n", "ops.pprof", "needs ops.addr"},
	{"account series below -1", minimal + "ops: {account_series: -2}\n", "ops.account_series", "-1 for no per-account series"},
	{"bad trusted cidr", minimal + "    proxy_protocol: {trusted: [\"10.0.0.0/33\"]}\n", "listeners[0].proxy_protocol.trusted[0]", "neither an address nor a network"},
	{"trusted everyone", minimal + "    proxy_protocol: {trusted: [\"10.0.0.0/8\", \"::ffff:0.0.0.0/96\"]}\n", "listeners[0].proxy_protocol.trusted[1]", "would trust every address"},
	{"trusted mapped too short", minimal + "    proxy_protocol: {trusted: [\"::ffff:10.0.0.0/80\"]}\n", "listeners[0].proxy_protocol.trusted[0]", "shorter than /96"},
	{"trusted zone", minimal + "    proxy_protocol: {trusted: [\"fe80::1%eth0\"]}\n", "listeners[0].proxy_protocol.trusted[0]", "zone"},
	{"admin trusts everyone", minimal + "admin: {addr: \":8443\", trusted_proxies: [\"0.0.0.0/0\"]}\n", "admin.trusted_proxies[0]", "would trust every address"},
	{"empty trusted", minimal + "    proxy_protocol: {trusted: []}\n", "listeners[0].proxy_protocol.trusted", "empty"},
	{"two default routes", minimal + "      - {account: \"b\", upstream: \"10.1.0.6:5432\"}\n", "listeners[0].routes[1].sni", "at most one default route"},
	{"duplicate sni", minimal + "      - {sni: a.example.com, account: \"b\", upstream: \"h:1\"}\n      - {sni: A.example.com, account: \"c\", upstream: \"h:1\"}\n", "listeners[0].routes[2].sni", "also routed"},
	{"bad sni", minimal + "      - {sni: \"bad host\", account: \"b\", upstream: \"h:1\"}\n", "listeners[0].routes[1].sni", "not a host name"},
	{"no certificate", strings.Replace(minimal, "tls: {self_signed: true}", "", 1), "tls", "need a certificate"},
	{"unknown curve", strings.Replace(minimal, "self_signed: true", "self_signed: true, curves: [X448]", 1), "tls.curves[0]", "not a known group"},
	{"acme without domains", strings.Replace(minimal, "self_signed: true", "acme: {email: a@b.c}", 1), "tls.acme.domains", "empty"},
	{"store scheme", minimal + "store: {url: \"mysql://x\"}\n", "store.url", "not supported"},
	{"redis without host", minimal + "store: {url: \"redis://\"}\n", "store.url", "needs a host"},
	{"store timeout too short", minimal + "store: {timeout: 10ms}\n", "store.timeout", "out of range"},
	{"assertion ttl too long", minimal + "assertion: {ttl: 1h}\n", "assertion.ttl", "outside 10s to 10m"},
	{"assertion rotation too short", minimal + "assertion: {rotation: 5m}\n", "assertion.rotation", "too short"},
	{"store timeout negative", minimal + "store: {timeout: -1s}\n", "store.timeout", "out of range"},
	{"backup without dir", minimal + "store: {backup: {every: 6h}}\n", "store.backup.dir", "missing"},
	{"backup too often", minimal + "store: {backup: {every: 10ms, dir: /b}}\n", "store.backup.every", "at least 1s"},
	{"backup keep", minimal + "store: {backup: {every: 1h, dir: /b, keep: -1}}\n", "store.backup.keep", "at least one"},
	{"backup unknown key", minimal + "store: {backup: {every: 1h, dir: /b, retain: 3}}\n", "store.backup.retain", "unknown"},
	{"log level", minimal + "log: {level: loud}\n", "log.level", "not a level"},
	{"no listeners", "tls: {self_signed: true}\n", "listeners", "at least one"},
	{"duplicate listener name", strings.Replace(minimal, "listeners:\n", "listeners:\n  - {name: desktop, addr: \":1\", mode: tcp, routes: [{account: a, upstream: \"h:1\"}]}\n", 1), "listeners[1].name", "also the name"},
	{"bootstrap without file", minimal + "bootstrap: {account: demo}\n", "bootstrap.password_file", "missing"},
	{"admin trusted proxy", minimal + "admin: {addr: \":8443\", trusted_proxies: [\"nope\"]}\n", "admin.trusted_proxies[0]", "not an IP"},
	{"negative limit", minimal + "    limits: {per_ip: -5}\n", "listeners[0].limits.per_ip", "positive"},
	{"alias", minimal + "log: {level: &lv info, format: *lv}\n", "log.format", "aliases"},
	{"not yaml", "listeners: [", "(file)", "not valid YAML"},
	{"empty file", "", "(file)", "empty"},
}

func TestParseReportsKeyPaths(t *testing.T) {
	for _, tc := range brokenConfigs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Parse: %v; want Problems", err)
			}
			for _, p := range probs {
				var pr *Problem
				if errors.As(p, &pr) && pr.Path == tc.path && strings.Contains(pr.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("no problem at %s containing %q; got:\n%v", tc.path, tc.msg, err)
		})
	}
}

// A file with several mistakes reports all of them at once.
func TestParseReportsEveryProblem(t *testing.T) {
	y := strings.NewReplacer(`":5433"`, `":0x"`, "mode: tls", "mode: nope", `"10042"`, `"-"`).Replace(minimal) + "log: {format: xml}\n"
	_, err := Parse([]byte(y))
	var probs Problems
	if !errors.As(err, &probs) || len(probs) < 4 {
		t.Fatalf("want at least 4 problems, got %v", err)
	}
}

func TestLoadExamples(t *testing.T) {
	files, _ := filepath.Glob("../configs/*.yaml")
	n := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if !strings.Contains(string(b), "listeners:") {
			continue // not a gatekeeper config (e.g. Prometheus rules)
		}
		n++
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if n == 0 {
		t.Fatal("no example configs found in configs/")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	for _, tc := range brokenConfigs {
		f.Add([]byte(tc.yaml))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			var probs Problems
			if !errors.As(err, &probs) || len(probs) == 0 {
				t.Fatalf("error is not a non-empty Problems: %v", err)
			}
			for _, p := range probs {
				if p.Error() == "" {
					t.Fatal("empty problem")
				}
			}
			return
		}
		if len(c.Listeners) == 0 || c.Store.URL == "" {
			t.Fatalf("accepted a config without listeners or store: %+v", c)
		}
	})
}
