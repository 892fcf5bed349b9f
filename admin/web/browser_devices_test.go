package web

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/device"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// enrolFromCommand runs what the "Add this computer" command asks for,
// through the device client gatekeeper connect enroll uses: its -admin-url
// and -code, read off the page.
func enrolFromCommand(t *testing.T, f *fixture, command, platform string) device.Identity {
	t.Helper()
	args := strings.Fields(command)
	flag := func(name string) string {
		for i, a := range args {
			if a == name && i+1 < len(args) {
				return args[i+1]
			}
		}
		t.Fatalf("the command %q has no %s", command, name)
		return ""
	}
	if !strings.HasPrefix(command, "gatekeeper connect enroll ") || flag("-identity") == "" {
		t.Fatalf("the command shown is %q", command)
	}
	id, err := device.Enroll(context.Background(), f.ts.Client(), flag("-admin-url"), flag("-code"), "", platform)
	if err != nil {
		t.Fatalf("enrol with the command shown: %v", err)
	}
	return id
}

// TestBrowserDevices: an employee adds her computer on "My computers",
// gets the code and the exact command, and the computer enrolls with it
// and gets a lease. The account holder sees it on the Devices page and on
// the staff page, with owner, platform, last seen and last address, and
// marks it inactive: its lease is gone and the gate refuses its address.
// The employee makes another of hers inactive herself.
func TestBrowserDevices(t *testing.T) {
	f := newFixture(t, proxyTrust)
	engine := startEngine(t, f)
	const home = "203.0.113.7"

	alice := newTab(t, f, home)
	alice.open("/login")
	alice.typeInto("account", acctA)
	alice.typeInto("username", "alice")
	alice.typeInto("password", pwAlice)
	alice.press(`button[type="submit"].primary`)
	alice.press(`nav a[href="/me/devices"]`)
	alice.at("/me/devices")
	alice.sees("Your computers", "Add this computer", "None yet.")
	alice.typeInto("name", "Home laptop")
	if st := alice.press(`form[action="/me/devices"] button[type="submit"]`); st != http.StatusOK {
		t.Fatalf("get a code: %d", st)
	}
	alice.sees("Add this computer", "Run this on the computer, within 10 minutes. The code works once.")
	command := alice.text("pre.command")
	if !strings.Contains(command, `-name "Home laptop"`) {
		t.Fatalf("the command does not carry the computer's name: %q", command)
	}
	alice.screenshot("add-computer")

	laptop := enrolFromCommand(t, f, command, "windows/amd64")
	tc := f.ts.Client().Transport.(*http.Transport).TLSClientConfig
	l, err := device.RequestLease(context.Background(), laptop, "tcp4", tc)
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	if l.Rule.CIDR != "127.0.0.1/32" {
		t.Fatalf("lease of %s; want 127.0.0.1/32, where the request came from", l.Rule.CIDR)
	}
	waitVerdict(t, engine, acctA, "127.0.0.1", policy.Allowed)

	// A second computer, to make inactive herself.
	alice.open("/me/devices")
	alice.typeInto("name", "Old desktop")
	alice.press(`form[action="/me/devices"] button[type="submit"]`)
	desktop := enrolFromCommand(t, f, alice.text("pre.command"), "linux/amd64")
	alice.open("/me/devices")
	alice.sees("Home laptop", "windows/amd64", "127.0.0.1", "Old desktop", "linux/amd64")
	alice.screenshot("my-computers")
	alice.press(`form[action="/me/devices/` + desktop.DeviceID + `/inactive"] button`)
	alice.at("/me/devices")
	alice.sees("Old desktop is inactive: it can no longer connect.")

	// The account holder.
	b := newTab(t, f, "198.51.100.20")
	b.open("/login?as=master")
	b.typeInto("account", acctA)
	b.typeInto("password", pwA)
	b.press(`button[type="submit"].primary`)
	b.at("/accounts/10042/firewall")
	b.press(`nav a[href="/accounts/10042/devices"]`)
	b.at("/accounts/10042/devices")
	row := func(id string) string {
		return b.text(`tr:has(form[action="/accounts/10042/devices/` + id + `/update"])`)
	}
	for _, want := range []string{"Home laptop", "alice", "windows/amd64", "active", "127.0.0.1", "Inactive"} {
		if r := row(laptop.DeviceID); !strings.Contains(r, want) {
			t.Errorf("the laptop's row %q lacks %q", r, want)
		}
	}
	for _, want := range []string{"Old desktop", "alice", "linux/amd64", "inactive", "Make active"} {
		if r := row(desktop.DeviceID); !strings.Contains(r, want) {
			t.Errorf("the desktop's row %q lacks %q", r, want)
		}
	}
	b.screenshot("devices")

	b.press(`nav a[href="/accounts/10042/users"]`)
	staffRow := b.text(`tr:has(a[href="/accounts/10042/users/alice/offboard"])`)
	for _, want := range []string{"Home laptop", "active", "last from 127.0.0.1", "Old desktop", "inactive"} {
		if !strings.Contains(staffRow, want) {
			t.Errorf("alice's row on the staff page %q lacks %q", staffRow, want)
		}
	}
	if bob := b.text(`tr:has(a[href="/accounts/10042/users/bob/offboard"]) td[data-label="Devices"]`); strings.TrimSpace(bob) != "none" {
		t.Errorf("bob's devices on the staff page: %q; want none", bob)
	}
	b.screenshot("staff-devices")

	b.open("/accounts/10042/devices")
	b.press(`form[action="/accounts/10042/devices/` + laptop.DeviceID + `/update"] button[value="inactive"]`)
	b.at("/accounts/10042/devices")
	b.sees("Home laptop (alice) is inactive. 1 lease removed.")
	waitVerdict(t, engine, acctA, "127.0.0.1", policy.Denied)
	for _, r := range f.rules(acctA) {
		if r.Source == policy.SourceDevice {
			t.Errorf("a lease is left after the device went inactive: %+v", r)
		}
	}
	if _, err := device.RequestLease(context.Background(), laptop, "tcp4", tc); err == nil {
		t.Error("the inactive laptop got a lease")
	}
}
