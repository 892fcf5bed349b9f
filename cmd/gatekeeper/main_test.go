package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeConfig writes a config with the embedded store in a temp dir.
func writeConfig(t *testing.T, extra string) (path, dir string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "gk.yaml")
	y := `store: {url: "file:` + filepath.Join(dir, "gk.db") + `", snapshot: "` + filepath.Join(dir, "snap") + `"}
tls: {self_signed: true}
listeners:
  - {name: desktop, addr: "127.0.0.1:0", mode: tcp, routes: [{account: demo, upstream: "127.0.0.1:1"}]}
` + extra
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

func runCLI(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

func TestCheck(t *testing.T) {
	good, _ := writeConfig(t, "")
	if out, _, err := runCLI(t, "", "check", "-config", good); err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("check good config: %q, %v", out, err)
	}
	bad, _ := writeConfig(t, "log: {level: loud}\nops: {addr: \":99999\"}\n")
	_, _, err := runCLI(t, "", "check", "-config", bad)
	if err == nil || !strings.Contains(err.Error(), "log.level") || !strings.Contains(err.Error(), "ops.addr: port 99999 out of range") {
		t.Fatalf("check bad config: %v; want both problems with their key paths", err)
	}
	var ue usageError
	if _, _, err := runCLI(t, "", "check"); !errors.As(err, &ue) {
		t.Errorf("check without -config: %v, want a usage error", err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"bogus"}, {"account"}, {"account", "delete"}, {"serve", "-nope"}} {
		var ue usageError
		if _, _, err := runCLI(t, "", args...); !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	if out, _, err := runCLI(t, "", "version"); err != nil || !strings.HasPrefix(out, "gatekeeper ") {
		t.Errorf("version: %q, %v", out, err)
	}
}

func TestAccountCreate(t *testing.T) {
	cfg, _ := writeConfig(t, "")
	out, _, err := runCLI(t, "correct horse battery staple\n", "account", "create", "-config", cfg, "-account", "10042", "-name", "Smith Studio")
	if err != nil || !strings.Contains(out, "created account 10042") || strings.Contains(out, "correct horse") {
		t.Fatalf("create with a piped password: %q, %v", out, err)
	}
	// No password on stdin: one is generated and printed once.
	out, _, err = runCLI(t, "", "account", "create", "-config", cfg, "-account", "10043", "-parent", "10042")
	if err != nil || !strings.Contains(out, "master password (shown once): ") {
		t.Fatalf("create with a generated password: %q, %v", out, err)
	}
	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"correct horse battery staple\n", []string{"-account", "10042"}, "already exists"},
		{"short\n", []string{"-account", "10044"}, "at least 12"},
		{"10045\n", []string{"-account", "10045"}, "at least 12"},
		{"correct horse battery staple\n", []string{"-account", "bad id"}, "account number"},
		{"correct horse battery staple\n", []string{"-account", "10046", "-parent", "nope"}, "not found"},
	} {
		args := append([]string{"account", "create", "-config", cfg}, tc.args...)
		if _, _, err := runCLI(t, tc.stdin, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
