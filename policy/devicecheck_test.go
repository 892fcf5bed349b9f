package policy

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

func TestDeviceKeysStanding(t *testing.T) {
	key := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	users := []User{
		{Username: "alice", Active: true, DesktopAccess: true},
		{Username: "bob", Active: true},                                                // no desktop access
		{Username: "carol", DesktopAccess: true},                                       // deactivated
		{Username: "dave", Active: true, DesktopAccess: true, MustResetPassword: true}, // must reset
	}
	devs := []Device{
		{ID: "1", Owner: "alice", Status: DeviceActive, PublicKey: key(1)},
		{ID: "2", Owner: "alice", Status: DeviceInactive, PublicKey: key(2)},
		{ID: "3", Owner: "alice", Status: DevicePending, PublicKey: key(3)},
		{ID: "4", Owner: "bob", Status: DeviceActive, PublicKey: key(4)},
		{ID: "5", Owner: "carol", Status: DeviceActive, PublicKey: key(5)},
		{ID: "6", Owner: "dave", Status: DeviceActive, PublicKey: key(6)},
		{ID: "7", Owner: "gone", Status: DeviceActive, PublicKey: key(7)},
		{ID: "8", Owner: RoleMaster, Status: DeviceActive, PublicKey: key(8)},
		{ID: "9", Owner: "alice", Status: DeviceActive, PublicKey: key(9)[:31]}, // malformed: left out
	}
	want := []DeviceStanding{DeviceKnown, DeviceNotActive, DeviceNotActive, DeviceOwnerBarred,
		DeviceOwnerBarred, DeviceOwnerBarred, DeviceOwnerBarred, DeviceKnown}
	got := DeviceKeys(devs, users)
	if len(got) != len(want) {
		t.Fatalf("got %d keys, want %d", len(got), len(want))
	}
	for i, k := range got {
		if k.Key != [32]byte(key(byte(i+1))) || k.Standing != want[i] {
			t.Errorf("key %d: %x %v, want %v", i, k.Key[:2], k.Standing, want[i])
		}
	}
}

// TestTableDevice: an account that requires a known device says so in
// the decision of an address that passes (not of one denied), in mode on
// and monitor but not off, and knows its keys' standing; an account that
// does not require one knows no key.
func TestTableDevice(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	known, barred := [32]byte{1}, [32]byte{2}
	pol := func(id string, mode Mode, require bool) AccountPolicy {
		return AccountPolicy{Account: Account{ID: id, Mode: mode, Settings: Settings{RequireDevice: require}},
			Rules:   []Rule{{ID: 1, Prefix: netip.MustParsePrefix("192.0.2.0/24")}},
			Devices: []DeviceKey{{Key: known, Standing: DeviceKnown}, {Key: barred, Standing: DeviceOwnerBarred}}}
	}
	tab := newTable(&Data{Accounts: []AccountPolicy{
		pol("on", ModeOn, true), pol("mon", ModeMonitor, true), pol("off", ModeOff, true), pol("plain", ModeOn, false),
	}}, now)
	in, out := netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("198.51.100.1")
	for _, tc := range []struct {
		account string
		addr    netip.Addr
		want    Decision
	}{
		{"on", in, Decision{Verdict: Allowed, Rule: 1, Device: DeviceRequired}},
		{"on", out, Decision{}},
		{"mon", in, Decision{Verdict: Allowed, Rule: 1, Device: DeviceLogged}},
		{"mon", out, Decision{Verdict: Monitored, Device: DeviceLogged}},
		{"off", out, Decision{Verdict: Allowed}},
		{"plain", in, Decision{Verdict: Allowed, Rule: 1}},
	} {
		if got := tab.Check(tc.account, tc.addr); got != tc.want {
			t.Errorf("Check(%s, %v) = %+v, want %+v", tc.account, tc.addr, got, tc.want)
		}
	}
	for _, tc := range []struct {
		account string
		key     []byte
		want    DeviceStanding
	}{
		{"on", known[:], DeviceKnown},
		{"on", barred[:], DeviceOwnerBarred},
		{"on", make([]byte, 32), DeviceUnknown},
		{"on", known[:31], DeviceUnknown},
		{"plain", known[:], DeviceUnknown},
		{"nobody", known[:], DeviceUnknown},
	} {
		if got := tab.Device(tc.account, tc.key); got != tc.want {
			t.Errorf("Device(%s, %x) = %v, want %v", tc.account, tc.key[:2], got, tc.want)
		}
	}

	// recompile follows a device change, shares what did not change, and
	// returns prev itself when nothing did.
	prev := tab.account("on")
	if got := recompile(prev, pol("on", ModeOn, true), now); got != prev {
		t.Error("recompile of an unchanged policy made a new table")
	}
	p := pol("on", ModeOn, true)
	p.Devices = []DeviceKey{{Key: known, Standing: DeviceNotActive}}
	next := recompile(prev, p, now)
	if next == prev || next.prefixes != prev.prefixes || next.dev().keys[known] != DeviceNotActive {
		t.Errorf("recompile after a device change: %+v", next)
	}
	if off := recompile(prev, pol("on", ModeOn, false), now); off.dev() != nil {
		t.Error("recompile kept the devices of an account that no longer requires them")
	}
}
