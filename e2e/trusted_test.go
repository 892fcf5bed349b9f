package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckRefusesBroadTrust: `gatekeeper check` refuses, with the key's
// path, trusted prefixes that once meant every address: an IPv4-mapped
// network shorter than /96 (the proxy read ::ffff:10.0.0.0/80 as
// 0.0.0.0/0) and a /0, for PROXY balancers and the admin's proxies.
func TestCheckRefusesBroadTrust(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ yaml, path, msg string }{
		{`    proxy_protocol: {trusted: ["::ffff:10.0.0.0/80"]}`, "listeners[0].proxy_protocol.trusted[0]", "shorter than /96"},
		{`    proxy_protocol: {trusted: ["10.0.0.0/8", "0.0.0.0/0"]}`, "listeners[0].proxy_protocol.trusted[1]", "would trust every address"},
		{"admin: {addr: \"127.0.0.1:0\", trusted_proxies: [\"::/0\"]}", "admin.trusted_proxies[0]", "would trust every address"},
	} {
		cfg := "tls: {self_signed: true}\nlisteners:\n  - name: gate\n    addr: \"127.0.0.1:0\"\n    mode: tls\n" +
			"    routes: [{account: \"a\", upstream: \"127.0.0.1:1\"}]\n"
		if strings.HasPrefix(tc.yaml, "admin") {
			cfg += tc.yaml + "\n"
		} else {
			cfg = strings.Replace(cfg, "    routes:", tc.yaml+"\n    routes:", 1)
		}
		f := filepath.Join(dir, "gatekeeper.yaml")
		if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := runBinary(dir, "", "check", "-config", f)
		if err == nil || !strings.Contains(out, tc.path+": ") || !strings.Contains(out, tc.msg) {
			t.Errorf("check accepted or said something else (%v):\n%s", err, out)
		}
	}
}
