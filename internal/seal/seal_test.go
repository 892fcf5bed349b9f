package seal

import (
	"bytes"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	s, err := New(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New(bytes.Repeat([]byte{2}, 32))
	sealed := s.Seal("secret", "alice")
	if strings.Contains(sealed, "secret") || !strings.HasPrefix(sealed, "v1.") {
		t.Fatalf("sealed %q", sealed)
	}
	if got, err := s.Open(sealed, "alice"); err != nil || got != "secret" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	for name, open := range map[string]func() (string, error){
		"another owner": func() (string, error) { return s.Open(sealed, "bob") },
		"another key":   func() (string, error) { return other.Open(sealed, "alice") },
		"no prefix":     func() (string, error) { return s.Open(strings.TrimPrefix(sealed, "v1."), "alice") },
		"truncated":     func() (string, error) { return s.Open(sealed[:10], "alice") },
	} {
		if got, err := open(); err == nil {
			t.Errorf("%s: opened %q", name, got)
		}
	}
	if _, err := New(make([]byte, 16)); err == nil {
		t.Error("a 16-byte key was taken")
	}
}
