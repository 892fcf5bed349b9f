package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/device"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// TestConnectEnroll runs gatekeeper connect enroll against a real admin
// API: the identity is written 0600 and names the enrolled device; the
// code does not work twice; an existing file is kept without -force and
// replaced with it; a failed enrolment leaves no file behind.
func TestConnectEnroll(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "gk.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cheap := password.Params{Memory: 64, Time: 1, Threads: 1, KeyLen: 32}
	if _, err := admin.CreateAccount(ctx, st, admin.NewAccount{ID: "10042", Password: "master-password-1"}, cheap, time.Now()); err != nil {
		t.Fatal(err)
	}
	svc, err := admin.New(admin.Options{Store: st, PasswordParams: cheap})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := admin.NewServer(admin.ServerOptions{Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(srv.Handler())
	defer ts.Close()
	ip := netip.MustParseAddr("127.0.0.1")
	login, err := svc.Login(ctx, admin.LoginRequest{Account: "10042", Password: "master-password-1"}, ip)
	if err != nil {
		t.Fatal(err)
	}
	master, err := svc.Authenticate(ctx, login.Token, ip)
	if err != nil {
		t.Fatal(err)
	}
	newCode := func() string {
		c, err := svc.CreateEnrollment(ctx, master, "")
		if err != nil {
			t.Fatal(err)
		}
		return c.Code
	}
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
