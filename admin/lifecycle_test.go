package admin

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TestOffboardingReceipt: an offboarding by a manager keeps a receipt that
// lists the session ended, the grant and the lease revoked and the device
// made inactive, with their times; the master and managers read it, a
// plain user or another account's master do not; the audit entry holds
// the same receipt.
func TestOffboardingReceipt(t *testing.T) {
	f := newFixture(t, fixtureOptions{trustedProxies: loopback})
	f.addPermissionHolders()
	f.live.Store(2)
	atok := f.token(user)
	id := f.enrollDevice(atok)
	if r, _ := f.lease(id, "203.0.113.50", time.Now()); r.status != 201 {
		t.Fatalf("lease: %d %s", r.status, r.body)
	}
	now := time.Now()
	g := f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Source: policy.SourceUnblock,
		Owner: "alice", CreatedBy: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	dtok := f.login(acctA, "dan", pwDan)
	if r := f.req("GET", "/api/v1/accounts/10042/users/alice/offboarding", dtok, nil); r.status != 404 {
		t.Fatalf("receipt before offboarding: %d %s", r.status, r.body)
	}
	if r := f.req("POST", "/api/v1/accounts/10042/users/alice/offboard", dtok, nil); r.status != 200 {
		t.Fatalf("offboard: %d %s", r.status, r.body)
	}
	e := f.lastAudit(acctA)
	var rec policy.OffboardReceipt
	for _, tok := range []string{dtok, f.token(master), f.token(parentMaster)} {
		r := f.req("GET", "/api/v1/accounts/10042/users/alice/offboarding", tok, nil)
		if r.status != 200 {
			t.Fatalf("receipt: %d %s", r.status, r.body)
		}
		r.decode(t, &rec)
	}
	if rec.Username != "alice" || rec.By != "dan" || rec.Role != policy.RoleUser || rec.SessionsEnded != 1 ||
		len(rec.Grants) != 1 || rec.Grants[0].ID != g.ID || rec.Grants[0].CIDR != g.Prefix ||
		len(rec.Leases) != 1 || rec.Leases[0].CIDR.Addr().String() != "203.0.113.50" ||
		len(rec.Devices) != 1 || rec.Devices[0].ID != id.DeviceID ||
		rec.ConnectionsClosed == nil || *rec.ConnectionsClosed != 2 || !rec.DueAt.IsZero() || rec.LateSeconds != 0 {
		t.Fatalf("receipt: %+v", rec)
	}
	if rec.At.IsZero() || !rec.Grants[0].RevokedAt.Equal(rec.At) || !rec.Devices[0].At.Equal(rec.At) {
		t.Fatalf("receipt times: %+v", rec)
	}
	var after offboardRecord
	if err := json.Unmarshal(e.After, &after); err != nil || e.Action != "user.offboard" || e.Actor != "dan" {
		t.Fatalf("audit: %+v %v", e, err)
	}
	if after.Receipt.Username != "alice" || len(after.Receipt.Grants) != 1 || after.GrantsRevoked != 1 || after.LeasesRevoked != 1 {
		t.Fatalf("audit receipt: %s", e.After)
	}
	for _, tok := range []string{f.login(acctA, "bob", pwBob), f.login(acctA, "erin", pwErin)} {
		if r := f.req("GET", "/api/v1/accounts/10042/users/alice/offboarding", tok, nil); r.status != 403 {
			t.Fatalf("receipt to a user: %d %s", r.status, r.body)
		}
	}
	if r := f.req("GET", "/api/v1/accounts/10042/users/alice/offboarding", f.token(otherMaster), nil); r.status != 404 {
		t.Fatalf("receipt to another master: %d %s", r.status, r.body)
	}
}
