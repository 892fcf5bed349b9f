package admin

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretsKeyFile: a missing file gets a new key, mode 0600; an existing
// one is read back the same; one that is not 32 bytes of base64 is refused.
func TestSecretsKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "secrets.key")
	key, created, err := SecretsKey(path)
	if err != nil || !created || len(key) != 32 {
		t.Fatalf("create: %d bytes, %v %v", len(key), created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	again, created, err := SecretsKey(path)
	if err != nil || created || !bytes.Equal(again, key) {
		t.Fatalf("reread: %v %v", created, err)
	}
	for _, bad := range []string{"short\n", strings.Repeat("A", 44) + "\n", "not base64 at all, no, not at all!!!!!!!!!!\n"} {
		p := filepath.Join(dir, "bad")
		os.WriteFile(p, []byte(bad), 0o600)
		if _, _, err := SecretsKey(p); err == nil || !strings.Contains(err.Error(), "32 bytes") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestSealer: a sealed secret opens for its owner with its key, and for no
// one else and with no other key; sealing twice differs (a fresh nonce).
func TestSealer(t *testing.T) {
	s, err := newSealer(testSecretsKey)
	if err != nil {
		t.Fatal(err)
	}
	a, b := s.seal("JBSWY3DPEHPK3PXP", "10042/alice"), s.seal("JBSWY3DPEHPK3PXP", "10042/alice")
	if a == b || strings.Contains(a, "JBSWY3DPEHPK3PXP") {
		t.Fatalf("sealed %q and %q", a, b)
	}
	if got, err := s.open(a, "10042/alice"); err != nil || got != "JBSWY3DPEHPK3PXP" {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := s.open(a, "10042/bob"); err == nil {
		t.Error("opened for another person")
	}
	other, _ := newSealer(bytes.Repeat([]byte{7}, 32))
	if _, err := other.open(a, "10042/alice"); err == nil {
		t.Error("opened with another key")
	}
	for _, bad := range []string{"", "v1.", "v1.!!", "v2." + a[3:], a[:len(a)-2]} {
		if _, err := s.open(bad, "10042/alice"); err == nil {
			t.Errorf("opened %q", bad)
		}
	}
	if _, err := newSealer([]byte("short")); err == nil {
		t.Error("a short key was taken")
	}
}
