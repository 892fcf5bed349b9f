package admin

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/device"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

const leasePath = "/api/v1/devices/lease"

// enrollDevice enrols a device for token's owner and returns its identity.
func (f *fixture) enrollDevice(token string) device.Identity {
	f.t.Helper()
	k := testDeviceKey()
	var d DeviceView
	r := f.req("POST", "/api/v1/devices/enroll", "", EnrollRequest{Code: f.code(token, "laptop").Code, PublicKey: k.der})
	if r.status != http.StatusCreated {
		f.t.Fatalf("enroll: %d %s", r.status, r.body)
	}
	r.decode(f.t, &d)
	return device.Identity{AdminURL: "https://gk/", Account: d.Account, DeviceID: d.ID, Key: k.priv}
}

// lease asks for a lease as id from ip, signed at t.
func (f *fixture) lease(id device.Identity, ip string, t time.Time) (resp, Lease) {
	f.t.Helper()
	body := []byte("{}")
	r := f.req("POST", leasePath, "", body, "Authorization: "+device.Sign(id, "POST", leasePath, body, t), xff(ip))
	var l Lease
	if r.status < 300 {
		r.decode(f.t, &l)
	}
	return r, l
}

func (f *fixture) setDeviceStatus(account, id string, st policy.DeviceStatus) {
	f.t.Helper()
	err := f.bolt.Update(context.Background(), account, func(tx policy.Tx) error {
		d, err := tx.Device(id)
		if err != nil {
			return err
		}
		d.Status = st
		return tx.PutDevice(d)
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

func TestLease(t *testing.T) {
	f := newFixture(t, fixtureOptions{trustedProxies: loopback})
	id := f.enrollDevice(f.token(user))
	r, l := f.lease(id, "203.0.113.50", time.Now())
	if r.status != http.StatusCreated || l.Renewed {
		t.Fatalf("lease: %d %s", r.status, r.body)
	}
	rl := l.Rule
	if rl.Prefix.String() != "203.0.113.50/32" || rl.Source != policy.SourceDevice || rl.Owner != "alice" ||
		rl.CreatedBy != "device/"+id.DeviceID || !strings.Contains(rl.Note, "laptop") {
		t.Fatalf("lease rule %+v", rl)
	}
	if d := time.Until(rl.ExpiresAt); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("lease lasts %v, want lease_ttl 1h", d)
	}
	if e := f.lastAudit(acctA); e.Action != "lease.create" || e.Actor != "alice" || e.ClientIP != "203.0.113.50" {
		t.Fatalf("audit %+v", e)
	}
	// The lease is in the firewall's rule list, and not among the
	// user's own grants (counted apart).
	var fw Firewall
	f.req("GET", "/api/v1/accounts/10042/firewall", f.token(master), nil).decode(t, &fw)
	if len(fw.Rules) != 1 || fw.Rules[0].Source != policy.SourceDevice {
		t.Fatalf("firewall rules %+v", fw.Rules)
	}
	var me Me
	f.req("GET", "/api/v1/me", f.token(user), nil).decode(t, &me)
	if len(me.Grants) != 0 {
		t.Fatalf("the lease counts as a grant: %+v", me.Grants)
	}
	ds := f.devices(acctA)
	if len(ds) != 1 || ds[0].LastIP.String() != "203.0.113.50" || ds[0].LastSeenAt.IsZero() {
		t.Fatalf("device after lease %+v", ds)
	}

	// A copy of the same request is refused.
	body := []byte("{}")
	copied := device.Sign(id, "POST", leasePath, body, time.Now().Add(-time.Second))
	if r := f.req("POST", leasePath, "", body, "Authorization: "+copied, xff("198.51.100.9")); r.status != http.StatusUnauthorized || r.errCode() != CodeStaleSignature {
		t.Fatalf("an older signature: %d %s", r.status, r.body)
	}
	// Renewal from the same address.
	if r, l := f.lease(id, "203.0.113.50", time.Now()); r.status != http.StatusOK || !l.Renewed || l.Rule.ID != rl.ID {
		t.Fatalf("renewal: %d %s", r.status, r.body)
	}
	// From IPv6, the /64.
	if r, l := f.lease(id, "2001:db8:5:6:7::8", time.Now()); r.status != http.StatusCreated || l.Rule.Prefix.String() != "2001:db8:5:6::/64" {
		t.Fatalf("IPv6 lease: %d %s", r.status, r.body)
	}
	// Clock far off.
	if r, _ := f.lease(id, "203.0.113.50", time.Now().Add(10*time.Minute)); r.errCode() != CodeStaleSignature {
		t.Fatalf("a signature from the future: %d %s", r.status, r.body)
	}
}

// TestLeaseRefused: only an active device of an owner who may connect
// gets a lease; a known device's refusal is audited, a bad signature is
// not a device at all.
func TestLeaseRefused(t *testing.T) {
	f := newFixture(t, fixtureOptions{trustedProxies: loopback})
	id := f.enrollDevice(f.token(user))
	forged := id
	forged.Key = testDeviceKey().priv
	if r, _ := f.lease(forged, "203.0.113.50", time.Now()); r.status != http.StatusUnauthorized {
		t.Fatalf("another key: %d %s", r.status, r.body)
	}
	unknown := id
	unknown.DeviceID = device.NewID()
	if r, _ := f.lease(unknown, "203.0.113.50", time.Now()); r.status != http.StatusUnauthorized {
		t.Fatalf("an unknown device: %d %s", r.status, r.body)
	}
	if r := f.req("POST", leasePath, "", "{}", "Authorization: Gatekeeper-Device nonsense"); r.status != http.StatusUnauthorized {
		t.Fatalf("a malformed signature: %d %s", r.status, r.body)
	}
	if r := f.req("POST", leasePath, f.token(user), "{}"); r.status != http.StatusUnauthorized {
		t.Fatalf("a session token instead of a device: %d %s", r.status, r.body)
	}
	for _, st := range []policy.DeviceStatus{policy.DeviceInactive, policy.DevicePending} {
		f.setDeviceStatus(acctA, id.DeviceID, st)
		r, _ := f.lease(id, "203.0.113.50", time.Now())
		if r.status != http.StatusForbidden || r.errCode() != CodeDeviceRefused {
			t.Fatalf("%s device: %d %s", st, r.status, r.body)
		}
		if e := f.lastAudit(acctA); e.Action != "device.lease_refused" || e.Target != "device/"+id.DeviceID {
			t.Fatalf("%s device: audit %+v", st, e)
		}
	}
	f.setDeviceStatus(acctA, id.DeviceID, policy.DeviceActive)
	f.req("PATCH", "/api/v1/accounts/10042/users/alice", f.token(master), map[string]bool{"desktop_access": false})
	if r, _ := f.lease(id, "203.0.113.50", time.Now()); r.errCode() != CodeDeviceRefused {
		t.Fatalf("owner without desktop access: %d %s", r.status, r.body)
	}
	if rules := f.rules(acctA); len(rules) != 0 {
		t.Fatalf("refused requests left rules: %+v", rules)
	}
	for outcome, want := range map[string]float64{"bad_signature": 4, "refused": 3, "created": 0} {
		if got := counterValue(t, f.svc.leaseRequests.WithLabelValues(outcome)); got != want {
			t.Errorf("gatekeeper_device_lease_requests_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
}

// TestDeviceKeyElsewhere: a device's signed request anywhere but the
// lease endpoint answers 403, API, pages and unknown paths alike.
func TestDeviceKeyElsewhere(t *testing.T) {
	f := newFixture(t, fixtureOptions{trustedProxies: loopback})
	id := f.enrollDevice(f.token(user))
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/me"}, {"POST", "/api/v1/accounts/10042/unblock"}, {"GET", "/api/v1/accounts/10042/firewall"},
		{"POST", "/api/v1/me/devices"}, {"POST", "/api/v1/devices/enroll"}, {"POST", "/api/v1/login"},
		{"GET", "/api/v1/nothing"}, {"GET", "/me"}, {"GET", "/"},
	} {
		auth := device.Sign(id, c.method, c.path, nil, time.Now())
		r := f.req(c.method, c.path, "", nil, "Authorization: "+auth)
		if r.status != http.StatusForbidden {
			t.Errorf("%s %s with a device key: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	if rules := f.rules(acctA); len(rules) != 0 {
		t.Fatalf("rules %+v", rules)
	}
}

// TestInactiveMeansGone: making a device inactive (its owner or a master)
// revokes its leases and refuses the next one; only a master brings it
// back; offboarding or losing desktop access makes every device of the
// user inactive and revokes their leases.
func TestInactiveMeansGone(t *testing.T) {
	f := newFixture(t, fixtureOptions{trustedProxies: loopback})
	alice, m := f.token(user), f.token(master)
	id := f.enrollDevice(alice)
	if r, _ := f.lease(id, "203.0.113.50", time.Now()); r.status != http.StatusCreated {
		t.Fatalf("lease: %d %s", r.status, r.body)
	}
	var mine struct{ Devices []DeviceView }
	f.req("GET", "/api/v1/me/devices", alice, nil).decode(t, &mine)
	if len(mine.Devices) != 1 || mine.Devices[0].ID != id.DeviceID || mine.Devices[0].LastIP.String() != "203.0.113.50" {
		t.Fatalf("own devices %+v", mine)
	}
	// Another user cannot touch it.
	bob := f.token(noDesk)
	if r := f.req("PATCH", "/api/v1/me/devices/"+id.DeviceID, bob, map[string]bool{"active": false}); r.status != http.StatusNotFound {
		t.Fatalf("someone else's device: %d %s", r.status, r.body)
	}
	// The owner makes it inactive: the lease goes, and the next request is refused.
	var ch DeviceChange
	r := f.req("PATCH", "/api/v1/me/devices/"+id.DeviceID, alice, map[string]bool{"active": false})
	r.decode(t, &ch)
	if r.status != http.StatusOK || ch.Device.Status != policy.DeviceInactive || ch.LeasesRevoked != 1 {
		t.Fatalf("inactive: %d %s", r.status, r.body)
	}
	if rules := f.rules(acctA); len(rules) != 0 {
		t.Fatalf("leases left: %+v", rules)
	}
	if e := f.lastAudit(acctA); e.Action != "device.inactive" || e.Actor != "alice" {
		t.Fatalf("audit %+v", e)
	}
	if r, _ := f.lease(id, "203.0.113.50", time.Now()); r.status != http.StatusForbidden {
		t.Fatalf("lease of an inactive device: %d %s", r.status, r.body)
	}
	// The owner cannot undo it; a master can.
	if r := f.req("PATCH", "/api/v1/me/devices/"+id.DeviceID, alice, map[string]bool{"active": true}); r.status != http.StatusForbidden {
		t.Fatalf("owner reactivating: %d %s", r.status, r.body)
	}
	if r := f.req("PATCH", "/api/v1/accounts/10042/devices/"+id.DeviceID, m, map[string]bool{"active": true}); r.status != http.StatusOK {
		t.Fatalf("master reactivating: %d %s", r.status, r.body)
	}
	if r, _ := f.lease(id, "203.0.113.50", time.Now()); r.status != http.StatusCreated {
		t.Fatalf("lease after reactivation: %d %s", r.status, r.body)
	}
	// Losing desktop access: the device goes inactive, the lease is revoked.
	var uc UserChange
	f.req("PATCH", "/api/v1/accounts/10042/users/alice", m, map[string]bool{"desktop_access": false}).decode(t, &uc)
	if uc.DevicesDeactivated != 1 || uc.LeasesRevoked != 1 || len(f.rules(acctA)) != 0 {
		t.Fatalf("desktop access off: %+v, rules %+v", uc, f.rules(acctA))
	}
	// Offboarding does the same to every device of the user.
	f.req("PATCH", "/api/v1/accounts/10042/users/alice", m, map[string]bool{"desktop_access": true})
	f.req("PATCH", "/api/v1/accounts/10042/devices/"+id.DeviceID, m, map[string]bool{"active": true})
	id2 := f.enrollDevice(f.token(user))
	f.lease(id, "203.0.113.50", time.Now())
	f.lease(id2, "198.51.100.7", time.Now())
	f.req("POST", "/api/v1/accounts/10042/users/alice/offboard", m, nil).decode(t, &uc)
	if uc.DevicesDeactivated != 2 || uc.LeasesRevoked != 2 || len(f.rules(acctA)) != 0 {
		t.Fatalf("offboard: %+v, rules %+v", uc, f.rules(acctA))
	}
	for _, d := range f.devices(acctA) {
		if d.Status != policy.DeviceInactive {
			t.Errorf("device %s after offboarding: %s", d.ID, d.Status)
		}
	}
}

// TestApproveDevice: with device_approval, a pending device gets no lease
// until a master approves it.
func TestApproveDevice(t *testing.T) {
	f := newFixture(t, fixtureOptions{trustedProxies: loopback})
	m := f.token(master)
	f.req("PATCH", "/api/v1/accounts/10042/settings", m, map[string]bool{"device_approval": true})
	id := f.enrollDevice(f.token(user))
	if r, _ := f.lease(id, "203.0.113.50", time.Now()); r.status != http.StatusForbidden {
		t.Fatalf("pending: %d %s", r.status, r.body)
	}
	if r := f.req("PATCH", "/api/v1/me/devices/"+id.DeviceID, f.token(user), map[string]bool{"approved": true}); r.status != http.StatusForbidden {
		t.Fatalf("self-approval: %d %s", r.status, r.body)
	}
	var all struct{ Devices []DeviceView }
	f.req("GET", "/api/v1/accounts/10042/devices", m, nil).decode(t, &all)
	if len(all.Devices) != 1 || all.Devices[0].Status != policy.DevicePending {
		t.Fatalf("devices %+v", all)
	}
	if r := f.req("PATCH", "/api/v1/accounts/10042/devices/"+id.DeviceID, m, map[string]bool{"approved": true}); r.status != http.StatusOK {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
	if r, _ := f.lease(id, "203.0.113.50", time.Now()); r.status != http.StatusCreated {
		t.Fatalf("after approval: %d %s", r.status, r.body)
	}
}
