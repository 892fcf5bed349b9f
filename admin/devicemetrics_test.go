package admin

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// deviceGauges scrapes the fixture's registry: the devices by status and
// the active leases, and whether the metrics were there at all.
func (f *fixture) deviceGauges() (byStatus map[string]float64, leases float64, present bool) {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	byStatus = map[string]float64{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "gatekeeper_devices":
			present = true
			for _, m := range mf.GetMetric() {
				byStatus[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		case "gatekeeper_device_leases_active":
			leases = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return byStatus, leases, present
}

// waitDeviceGauges scrapes until the gauges read as wanted.
func (f *fixture) waitDeviceGauges(pending, active, inactive, leases float64) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, l, ok := f.deviceGauges()
		if ok && st["pending"] == pending && st["active"] == active && st["inactive"] == inactive && l == leases {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("gatekeeper_devices %v (present %v), gatekeeper_device_leases_active %v; want pending %v, active %v, inactive %v, leases %v",
				st, ok, l, pending, active, inactive, leases)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDeviceMetrics: the devices of every account by status, and the
// leases that have not expired, as the store holds them.
func TestDeviceMetrics(t *testing.T) {
	f := newFixture(t, fixtureOptions{trustedProxies: loopback})
	f.svc.deviceStats.every = 0 // read the store at every scrape
	f.waitDeviceGauges(0, 0, 0, 0)

	alice := f.token(user)
	laptop, desktop := f.enrollDevice(alice), f.enrollDevice(alice)
	f.enrollDevice(f.token(otherMaster)) // another account's device counts too
	f.setDeviceStatus(acctA, desktop.DeviceID, policy.DevicePending)
	if r, _ := f.lease(laptop, "203.0.113.50", time.Now()); r.status != http.StatusCreated {
		t.Fatalf("lease: %d %s", r.status, r.body)
	}
	if r, _ := f.lease(laptop, "2001:db8::1", time.Now()); r.status != http.StatusCreated {
		t.Fatalf("IPv6 lease: %d %s", r.status, r.body)
	}
	f.waitDeviceGauges(1, 2, 0, 2)

	// An expired lease is not active.
	f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Source: policy.SourceDevice, Owner: "alice",
		CreatedBy: "device/" + laptop.DeviceID, CreatedAt: time.Now().Add(-2 * time.Hour), ExpiresAt: time.Now().Add(-time.Hour)})
	if r := f.req("PATCH", "/api/v1/me/devices/"+laptop.DeviceID, alice, map[string]bool{"active": false}); r.status != http.StatusOK {
		t.Fatalf("make the laptop inactive: %d %s", r.status, r.body)
	}
	f.waitDeviceGauges(1, 1, 1, 0)
}

// TestDeviceMetricsStoreDown: the metrics are absent until the first
// read of the store ends, and a failed read keeps the last counts.
func TestDeviceMetricsStoreDown(t *testing.T) {
	f := newFixture(t, fixtureOptions{trustedProxies: loopback, storeTimeout: 100 * time.Millisecond})
	f.enrollDevice(f.token(user))
	f.svc.deviceStats.every = 0
	f.store.hang.Store(true)
	// waitFailed scrapes, which starts reads, until n reads have failed;
	// check sees each scrape.
	waitFailed := func(n int, check func(st map[string]float64, ok bool)) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(f.logs.String(), "could not count devices") < n {
			if time.Now().After(deadline) {
				t.Fatalf("no failed read of the device counts logged:\n%s", f.logs)
			}
			st, _, ok := f.deviceGauges()
			check(st, ok)
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFailed(1, func(_ map[string]float64, ok bool) {
		if ok {
			t.Fatal("device metrics before any read of the store succeeded")
		}
	})
	f.store.hang.Store(false)
	f.waitDeviceGauges(0, 1, 0, 0)
	f.store.hang.Store(true)
	kept := func(st map[string]float64, ok bool) {
		if !ok || st["active"] != 1 {
			t.Fatalf("with the store down: %v (present %v); want the last counts kept", st, ok)
		}
	}
	waitFailed(strings.Count(f.logs.String(), "could not count devices")+1, kept)
	st, _, ok := f.deviceGauges()
	kept(st, ok)
}
