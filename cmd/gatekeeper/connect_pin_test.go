package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/admin/admintest"
	"github.com/gatekeeper-dev/gatekeeper/connector"
)

// TestAdminPin: the operator pins the admin listener's key for enrolment
// (connect enroll -pin) and for leases (connect -admin-pin), as -pin pins
// the gate. A wrong pin refuses the admin listener before anything is
// sent, so the code is not spent; the right pin lets the request through,
// even with the certificate itself unverified.
func TestAdminPin(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	api := admintest.Start(t, "10042")
	right := connector.PinOf(api.Server.Certificate()).String()
	wrong := "sha256//" + strings.Repeat("A", 43) + "="
	idFile := filepath.Join(dir, "gatekeeper.identity")
	enroll := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, append([]string{"connect", "enroll", "-admin-url", api.Server.URL + "/", "-insecure-skip-verify",
			"-identity", idFile}, args...), strings.NewReader(""), &out, &out)
		return out.String(), err
	}
	code := api.Code(t)
	out, err := enroll("-code", code, "-pin", wrong)
	if err == nil || !strings.Contains(err.Error(), "no pinned public key") || !strings.Contains(err.Error(), right) {
		t.Fatalf("enrol with a wrong pin: %v\n%s; want the pin refused, naming the key presented", err, out)
	}
	if _, err := os.Stat(idFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused enrolment left the identity file: %v", err)
	}
	if out, err := enroll("-code", code, "-pin", wrong+";"+right); err != nil {
		t.Fatalf("enrol with the right pin among others, and the code the wrong pin did not spend: %v\n%s", err, out)
	}

	lease := func(args ...string) error {
		t.Helper()
		fs := newFlags("connect", io.Discard)
		var f connectFlags
		f.register(fs)
		if err := parseFlags(fs, append([]string{"-server", "127.0.0.1:1", "-insecure-skip-verify", "-identity", idFile}, args...)); err != nil {
			t.Fatal(err)
		}
		opts, err := f.options()
		if err != nil {
			t.Fatal(err)
		}
		_, err = opts.Lease(ctx, "tcp4")
		return err
	}
	var pe *connector.PinError
	if err := lease("-admin-pin", wrong); !errors.As(err, &pe) {
		t.Fatalf("a lease with a wrong admin pin: %v; want a *connector.PinError", err)
	}
	if err := lease("-admin-pin", right); err != nil {
		t.Fatalf("a lease with the right admin pin: %v", err)
	}
	if err := lease(); err != nil {
		t.Fatalf("a lease with no admin pin: %v", err)
	}

	fs := newFlags("connect", io.Discard)
	var f connectFlags
	f.register(fs)
	parseFlags(fs, []string{"-server", "127.0.0.1:1", "-admin-pin", right})
	if _, err := f.options(); err == nil || !strings.Contains(err.Error(), "-identity") {
		t.Fatalf("-admin-pin without -identity: %v; want a usage error naming -identity", err)
	}
}
