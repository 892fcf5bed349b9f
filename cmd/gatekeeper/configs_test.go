package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// exampleConfigs are the gatekeeper configurations in configs/ (the other
// files there are Prometheus rules and a dashboard).
func exampleConfigs(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "\nlisteners:") {
			out = append(out, f)
		}
	}
	for _, want := range []string{"quickstart", "fleet-redis", "enterprise", "behind-load-balancer", "http-app", "container"} {
		found := false
		for _, f := range out {
			found = found || filepath.Base(f) == want+".yaml"
		}
		if !found {
			t.Errorf("configs/%s.yaml is missing", want)
		}
	}
	return out
}

// Every example passes "gatekeeper check" cleanly: no error, no warning.
func TestCheckExamples(t *testing.T) {
	for _, f := range exampleConfigs(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, errOut, err := runCLI(t, "", "check", "-config", f)
			if err != nil {
				t.Fatalf("check: %v\n%s", err, errOut)
			}
			if !strings.Contains(out, ": ok (") || strings.Contains(out, "warning") {
				t.Fatalf("check printed:\n%s", out)
			}
		})
	}
}

// Broken files: "gatekeeper check" fails and names each problem's key path
// in its output, all at once.
func TestCheckBrokenConfigs(t *testing.T) {
	dir := t.TempDir()
	expired, expiredKey, _ := writeCertPair(t, dir, "expired", time.Now().Add(-time.Minute), "db.example.com")
	good, goodKey, _ := writeCertPair(t, dir, "good", time.Now().Add(365*24*time.Hour), "db.example.com")
	_, otherKey, _ := writeCertPair(t, dir, "other", time.Now().Add(365*24*time.Hour), "db.example.com")

	const base = `tls: {self_signed: true}
listeners:
  - name: desktop
    addr: ":5433"
    mode: tls
    routes:
      - {account: "10042", upstream: "10.1.0.5:5432"}
`
	withTLS := func(tls string) string {
		return strings.Replace(base, "tls: {self_signed: true}", "tls: "+tls, 1)
	}
	cases := []struct {
		name  string
		yaml  string
		paths []string // each must appear in the output, with ": " after it
	}{
		{"port out of range", strings.Replace(base, `":5433"`, `":99999"`, 1), []string{"listeners[0].addr: port 99999 out of range"}},
		{"unknown key with a suggestion", base + "lisen: x\n", []string{"lisen: unknown key"}},
		{"bad mode", strings.Replace(base, "mode: tls", "mode: udp", 1), []string{"listeners[0].mode"}},
		{"bad account", strings.Replace(base, `"10042"`, `"no such"`, 1), []string{"listeners[0].routes[0].account"}},
		{"store scheme", base + "store: {url: \"mysql://db\"}\n", []string{"store.url"}},
		{"ops on the listener's port", base + "ops: {addr: \"127.0.0.1:5433\"}\n", []string{"ops.addr"}},
		{"admin and ops collide", base + "admin: {addr: \":8443\"}\nops: {addr: \":8443\"}\n", []string{"ops.addr"}},
		{"certificate files missing", withTLS(`{certificates: [{cert: "` + filepath.Join(dir, "nope.crt") + `", key: "` + filepath.Join(dir, "nope.key") + `"}]}`),
			[]string{"tls.certificates[0].cert", "tls.certificates[0].key"}},
		{"certificate expired", withTLS(`{certificates: [{cert: "` + expired + `", key: "` + expiredKey + `"}]}`), []string{"tls.certificates[0].cert"}},
		{"key of another certificate", withTLS(`{certificates: [{cert: "` + good + `", key: "` + otherKey + `"}]}`), []string{"tls.certificates[0]"}},
		{"acme ca_root not a certificate", withTLS(`{acme: {domains: [db.example.com], ca_root: "` + goodKey + `"}}`), []string{"tls.acme.ca_root"}},
		{"duration", base + "    timeouts: {idle: soon}\n", []string{"listeners[0].timeouts.idle"}},
		{"everything at once", strings.NewReplacer(`":5433"`, `":0x"`, "mode: tls", "mode: nope").Replace(base) + "log: {format: xml}\nbootstrap: {account: demo}\n",
			[]string{"listeners[0].addr", "listeners[0].mode", "log.format", "bootstrap.password_file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gk.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			out, _, err := runCLI(t, "", "check", "-config", path)
			var ue usageError
			if err == nil || errors.As(err, &ue) {
				t.Fatalf("check: %v (stdout %q); want a failure (exit 1)", err, out)
			}
			for _, p := range tc.paths {
				if !strings.Contains(err.Error(), "error: "+p) {
					t.Errorf("output lacks a problem at %s:\n%v", p, err)
				}
			}
		})
	}
}

// Warnings alone do not fail check.
func TestCheckWarningsPass(t *testing.T) {
	dir := t.TempDir()
	soon, soonKey, _ := writeCertPair(t, dir, "soon", time.Now().Add(3*24*time.Hour), "db.example.com")
	path := filepath.Join(dir, "gk.yaml")
	y := `tls: {certificates: [{cert: "` + soon + `", key: "` + soonKey + `"}]}
listeners:
  - name: desktop
    addr: ":5433"
    mode: tls
    routes:
      - {sni: db.example.com, account: "10042", upstream: "10.1.0.5:5432"}
      - {sni: other.example.com, account: "10043", upstream: "10.1.0.6:5432"}
`
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, "", "check", "-config", path)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	for _, want := range []string{"warning: tls.certificates[0].cert: ", "warning: listeners[0].routes[1].sni: ", ": ok (", "2 warnings"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
