package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/admin/admintest"
	"github.com/gatekeeper-dev/gatekeeper/device"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TestConnectEnroll runs gatekeeper connect enroll against a real admin
// API: the identity is written 0600 and names the enrolled device; the
// code does not work twice; an existing file is kept without -force and
// replaced with it; a failed enrolment leaves no file behind.
func TestConnectEnroll(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	api := admintest.Start(t, "10042")
	ts, st := api.Server, api.Store
	newCode := func() string { return api.Code(t) }
	idFile := filepath.Join(dir, "gatekeeper.identity")
	enroll := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := run(ctx, append([]string{"connect", "enroll", "-admin-url", ts.URL + "/", "-insecure-skip-verify", "-identity", idFile}, args...),
			strings.NewReader(""), &out, &errb)
		return out.String() + errb.String(), err
	}

	code := newCode()
	out, err := enroll("-code", code, "-name", "front desk")
	if err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}
	fi, err := os.Stat(idFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v, mode %v", err, fi.Mode())
	}
	id, err := device.ReadIdentity(idFile)
	if err != nil {
		t.Fatal(err)
	}
	var d policy.Device
	st.Update(ctx, "10042", func(tx policy.Tx) error {
		d, err = tx.Device(id.DeviceID)
		return err
	})
	if err != nil || d.Name != "front desk" || d.Owner != "master" || !d.PublicKey.Equal(id.Key.Public()) || !strings.Contains(out, id.DeviceID) {
		t.Fatalf("device %+v (%v), identity %s\n%s", d, err, id.DeviceID, out)
	}
	before, _ := os.ReadFile(idFile)

	// An existing identity is not replaced without -force, and the code
	// is not spent.
	code2 := newCode()
	if out, err := enroll("-code", code2); err == nil || !strings.Contains(out+err.Error(), "-force") {
		t.Fatalf("overwrote without -force: %v\n%s", err, out)
	}
	if now, _ := os.ReadFile(idFile); !bytes.Equal(now, before) {
		t.Fatal("the identity file changed")
	}
	if out, err := enroll("-code", code2, "-force"); err != nil {
		t.Fatalf("with -force: %v\n%s", err, out)
	}
	if id2, err := device.ReadIdentity(idFile); err != nil || id2.DeviceID == id.DeviceID {
		t.Fatalf("after -force: %v, same device %v", err, id2.DeviceID == id.DeviceID)
	}

	// A used code fails and leaves no file.
	os.Remove(idFile)
	if out, err := enroll("-code", code); err == nil || !strings.Contains(err.Error(), "wrong, used or expired") {
		t.Fatalf("a used code: %v\n%s", err, out)
	}
	if _, err := os.Stat(idFile); !os.IsNotExist(err) {
		t.Fatalf("a failed enrolment left the identity file: %v", err)
	}
	if _, err := enroll("-code", "nonsense"); err == nil {
		t.Fatal("a malformed code was accepted")
	}
}
