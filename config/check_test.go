package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var checkNow = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

// writePair writes a self-signed certificate for names, valid from
// notBefore to notAfter, and its key, as dir/base.crt and dir/base.key.
func writePair(t *testing.T, dir, base string, notBefore, notAfter time.Time, names ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: notBefore, NotAfter: notAfter, DNSNames: names}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certFile, keyFile
}

// finding is a problem expected from Check: its key path, a fragment of its
// message, and whether it is only a warning.
type finding struct {
	path, msg string
	warning   bool
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	year := checkNow.AddDate(1, 0, 0)
	good, goodKey := writePair(t, dir, "good", checkNow.AddDate(0, -1, 0), year, "gate.example.com", "*.db.example.com")
	other, otherKey := writePair(t, dir, "other", checkNow.AddDate(0, -1, 0), year, "gate.example.com")
	expired, expiredKey := writePair(t, dir, "expired", checkNow.AddDate(-1, 0, 0), checkNow.AddDate(0, 0, -1), "gate.example.com", "*.db.example.com")
	future, futureKey := writePair(t, dir, "future", checkNow.AddDate(0, 0, 1), year, "gate.example.com", "*.db.example.com")
	soon, soonKey := writePair(t, dir, "soon", checkNow.AddDate(0, -2, 0), checkNow.AddDate(0, 0, 5), "gate.example.com", "*.db.example.com")
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not PEM\n"), 0o644)
	openToken := filepath.Join(dir, "open.token")
	os.WriteFile(openToken, []byte(strings.Repeat("x", 32)), 0o644)
	closedToken := filepath.Join(dir, "closed.token")
	os.WriteFile(closedToken, []byte(strings.Repeat("x", 32)), 0o640) // root:gatekeeper
	missing := filepath.Join(dir, "missing.pem")

	cfg := func(tls, extra string) string {
		return "tls: " + tls + `
listeners:
  - name: desktop
    addr: ":5433"
    mode: tls
    routes:
      - {sni: 10042.db.example.com, account: "10042", upstream: "10.1.0.5:5432"}
      - {account: "10043", upstream: "10.1.0.6:5432"}
  - name: raw
    addr: ":5434"
    mode: tcp
    routes:
      - {sni: not.covered.example, account: "10044", upstream: "10.1.0.7:5432"}
` + extra
	}
	certs := func(pairs ...string) string {
		var s []string
		for i := 0; i+1 < len(pairs); i += 2 {
			s = append(s, `{cert: "`+pairs[i]+`", key: "`+pairs[i+1]+`"}`)
		}
		return "{certificates: [" + strings.Join(s, ", ") + "]}"
	}
	cases := []struct {
		name string
		yaml string
		want []finding // nil: clean
	}{
		{"matching pair covering every sni", cfg(certs(good, goodKey), ""), nil},
		{"self-signed is not checked for names", cfg("{self_signed: true}", ""), nil},
		{"acme domains cover the sni", cfg("{acme: {domains: [10042.db.example.com]}}", ""), nil},
		{"acme wildcard does not cover two labels", cfg("{acme: {domains: [\"*.example.com\"]}}", ""),
			[]finding{{"listeners[0].routes[0].sni", "not a name of any certificate", true}}},
		{"sni not covered", cfg(certs(other, otherKey), ""),
			[]finding{{"listeners[0].routes[0].sni", `"10042.db.example.com" is not a name`, true}}},
		{"one of two certificates covers it", cfg(certs(other, otherKey, good, goodKey), ""), nil},
		{"cert missing", cfg(certs(missing, goodKey), ""),
			[]finding{{"tls.certificates[0].cert", "no such file", false}}},
		{"key missing", cfg(certs(good, missing), ""),
			[]finding{{"tls.certificates[0].key", "no such file", false}}},
		{"both missing, each reported", cfg(certs(missing, missing+".key"), ""),
			[]finding{{"tls.certificates[0].cert", "no such file", false}, {"tls.certificates[0].key", "no such file", false}}},
		{"cert and key of different pairs", cfg(certs(good, otherKey), ""),
			[]finding{{"tls.certificates[0]", "not a usable certificate and key", false}}},
		{"not PEM", cfg(certs(garbage, goodKey), ""),
			[]finding{{"tls.certificates[0]", "not a usable certificate and key", false}}},
		{"second pair broken", cfg(certs(good, goodKey, other, goodKey), ""),
			[]finding{{"tls.certificates[1]", "not a usable", false}}},
		{"expired", cfg(certs(expired, expiredKey), ""),
			[]finding{{"tls.certificates[0].cert", "expired on 2030-05-31", false}}},
		{"not yet valid", cfg(certs(future, futureKey), ""),
			[]finding{{"tls.certificates[0].cert", "not valid before", false}}},
		{"expires soon", cfg(certs(soon, soonKey), ""),
			[]finding{{"tls.certificates[0].cert", "in 5 days", true}}},
		{"acme ca_root missing", cfg("{acme: {domains: [10042.db.example.com], ca_root: \""+missing+"\"}}", ""),
			[]finding{{"tls.acme.ca_root", "no such file", false}}},
		{"acme ca_root not a certificate", cfg("{acme: {domains: [10042.db.example.com], ca_root: \""+goodKey+"\"}}", ""),
			[]finding{{"tls.acme.ca_root", "no PEM certificate", false}}},
		{"acme ca_root fine", cfg("{acme: {domains: [10042.db.example.com], ca_root: \""+good+"\"}}", ""), nil},
		{"operator token readable by others", cfg("{self_signed: true}", "admin: {addr: \":8443\", operator_token_file: \""+openToken+"\"}\n"),
			[]finding{{"admin.operator_token_file", "mode 0644", true}}},
		{"secrets key readable by others", cfg("{self_signed: true}", "admin: {addr: \":8443\", secrets_key_file: \""+openToken+"\"}\n"),
			[]finding{{"admin.secrets_key_file", "mode 0644", true}}},
		{"operator token private", cfg("{self_signed: true}", "admin: {addr: \":8443\", operator_token_file: \""+closedToken+"\"}\n"), nil},
		{"operator token not there yet", cfg("{self_signed: true}", "admin: {addr: \":8443\", operator_token_file: \""+missing+"\"}\n"), nil},
		{"bootstrap password readable by others", cfg("{self_signed: true}", "bootstrap: {account: demo, password_file: \""+openToken+"\"}\n"),
			[]finding{{"bootstrap.password_file", "chmod o-r", true}}},
		{"backup key missing", cfg("{self_signed: true}", "store: {backup: {every: 1h, dir: /b, key_file: \""+missing+"\"}}\n"),
			[]finding{{"store.backup.key_file", "no such file", false}}},
		{"backup key readable by others", cfg("{self_signed: true}", "store: {backup: {every: 1h, dir: /b, key_file: \""+openToken+"\"}}\n"),
			[]finding{{"store.backup.key_file", "chmod o-r", true}}},
		{"backup key private", cfg("{self_signed: true}", "store: {backup: {every: 1h, dir: /b, key_file: \""+closedToken+"\"}}\n"), nil},
		// Content problems and file problems come together.
		{"everything at once", cfg(certs(missing, goodKey), "log: {level: loud}\n"),
			[]finding{{"log.level", "not a level", false}, {"tls.certificates[0].cert", "no such file", false}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gk.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, errs, warnings := Check(path, checkNow)
			if (c == nil) != (len(errs) > 0) {
				t.Errorf("config %v with %d errors", c != nil, len(errs))
			}
			var got []finding
			for _, list := range []struct {
				probs   Problems
				warning bool
			}{{errs, false}, {warnings, true}} {
				for _, e := range list.probs {
					var p *Problem
					if !errors.As(e, &p) {
						t.Fatalf("%T is not a *Problem: %v", e, e)
					}
					got = append(got, finding{p.Path, p.Msg, list.warning})
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d findings, want %d:\nerrors: %v\nwarnings: %v", len(got), len(tc.want), errs, warnings)
			}
			for _, w := range tc.want {
				found := false
				for _, g := range got {
					found = found || (g.path == w.path && g.warning == w.warning && strings.Contains(g.msg, w.msg))
				}
				if !found {
					t.Errorf("no %s at %s containing %q; got\nerrors: %v\nwarnings: %v",
						map[bool]string{true: "warning", false: "error"}[w.warning], w.path, w.msg, errs, warnings)
				}
			}
		})
	}
}

func TestCheckUnreadableFile(t *testing.T) {
	_, errs, _ := Check(filepath.Join(t.TempDir(), "nope.yaml"), checkNow)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "no such file") {
		t.Fatalf("errs = %v", errs)
	}
}

// Two listening addresses on one port are refused where they collide.
func TestAddrConflicts(t *testing.T) {
	cases := []struct {
		name, extra, path string // path "" means no conflict
	}{
		{"ops on a listener's port", `ops: {addr: "127.0.0.1:5433"}`, "ops.addr"},
		{"admin on a listener's port", `admin: {addr: "0.0.0.0:5433"}`, "admin.addr"},
		{"admin and ops", "admin: {addr: \":8443\"}\nops: {addr: \"[::1]:8443\"}", "ops.addr"},
		{"acme http on ops", "ops: {addr: \"127.0.0.1:80\"}\ntls: {self_signed: true, acme: {domains: [a.example.com], http_addr: \":80\"}}", "tls.acme.http_addr"},
		{"different ports", `ops: {addr: "127.0.0.1:9090"}`, ""},
		{"different hosts", "admin: {addr: \"127.0.0.1:8443\"}\nops: {addr: \"127.0.0.2:8443\"}", ""},
		{"IPv4 wildcard and IPv6 host", "admin: {addr: \"0.0.0.0:8443\"}\nops: {addr: \"[::1]:8443\"}", ""},
		{"port 0 never conflicts", "admin: {addr: \"127.0.0.1:0\"}\nops: {addr: \"127.0.0.1:0\"}", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			y := minimal + tc.extra + "\n"
			if strings.Contains(tc.extra, "tls:") {
				y = strings.Replace(y, "tls: {self_signed: true}\n", "", 1)
			}
			_, err := Parse([]byte(y))
			if tc.path == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Parse: %v, want a conflict at %s", err, tc.path)
			}
			for _, p := range probs {
				var pr *Problem
				if errors.As(p, &pr) && pr.Path == tc.path && strings.Contains(pr.Msg, "both cannot listen") {
					return
				}
			}
			t.Errorf("no conflict at %s; got %v", tc.path, err)
		})
	}
}

// Problems found after decoding carry the line of their key, or of the
// nearest enclosing key.
func TestProblemLines(t *testing.T) {
	y := `tls: {self_signed: true}
listeners:
  - name: desktop
    addr: ":5433"
    mode: tls
    routes:
      - {account: "10042", upstream: "10.1.0.5:5432"}
      - {account: "-", upstream: "10.1.0.5:5432"}
  - name: other
    mode: tcp
    routes: [{account: a, upstream: "h:1"}]
`
	_, err := Parse([]byte(y))
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("Parse: %v", err)
	}
	want := map[string]int{
		"listeners[0].routes[1].account": 8,
		"listeners[1].addr":              9, // missing: the line of listeners[1]
	}
	for _, p := range probs {
		pr := p.(*Problem)
		if line, ok := want[pr.Path]; ok {
			if pr.Line != line {
				t.Errorf("%s: line %d, want %d", pr.Path, pr.Line, line)
			}
			delete(want, pr.Path)
		}
	}
	for path := range want {
		t.Errorf("no problem at %s; got %v", path, err)
	}
}
