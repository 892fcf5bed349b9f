package admin

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/device"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

type deviceKey struct {
	priv ed25519.PrivateKey
	der  []byte
}

func testDeviceKey() deviceKey {
	pub, priv, _ := ed25519.GenerateKey(nil)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	return deviceKey{priv: priv, der: der}
}

// code asks for an enrolment code as token.
func (f *fixture) code(token, name string) EnrollmentCode {
	f.t.Helper()
	var c EnrollmentCode
	r := f.req("POST", "/api/v1/me/devices", token, enrollmentBody{Name: name})
	if r.status != http.StatusCreated {
		f.t.Fatalf("enrolment code: %d %s", r.status, r.body)
	}
	r.decode(f.t, &c)
	return c
}

func TestEnroll(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tok := f.token(user)
	c := f.code(tok, "home laptop")
	if !strings.HasPrefix(c.Code, "10042.") || time.Until(c.ExpiresAt) > 10*time.Minute || time.Until(c.ExpiresAt) < 9*time.Minute {
		t.Fatalf("code %+v", c)
	}
	// Only the hash is stored.
	var es []policy.Enrollment
	f.bolt.View(t.Context(), acctA, func(tx policy.Tx) error {
		es, _ = tx.Enrollments()
		return nil
	})
	raw, _ := json.Marshal(es)
	secret := strings.ReplaceAll(strings.SplitN(c.Code, ".", 2)[1], "-", "")
	if len(es) != 1 || strings.Contains(string(raw), secret) || strings.Contains(string(raw), secret[:4]) {
		t.Fatal("the code is stored in the clear")
	}
	k := testDeviceKey()
	r := f.req("POST", "/api/v1/devices/enroll", "", EnrollRequest{Code: strings.ToLower(c.Code), Platform: "windows/amd64", PublicKey: k.der})
	if r.status != http.StatusCreated {
		t.Fatalf("enroll: %d %s", r.status, r.body)
	}
	var d DeviceView
	r.decode(t, &d)
	if d.Owner != "alice" || d.Name != "home laptop" || d.Status != policy.DeviceActive || !d.Active || !policy.ValidDeviceID(d.ID) {
		t.Fatalf("device %+v", d)
	}
	if strings.Contains(string(r.body), "public_key") {
		t.Errorf("the answer shows the key: %s", r.body)
	}
	e := f.lastAudit(acctA)
	if e.Action != "device.enroll" || e.Actor != "alice" || e.Target != "device/"+d.ID {
		t.Fatalf("audit %+v", e)
	}
	var stored policy.Device
	f.bolt.View(t.Context(), acctA, func(tx policy.Tx) error {
		stored, _ = tx.Device(d.ID)
		return nil
	})
	if !stored.PublicKey.Equal(k.priv.Public()) {
		t.Fatalf("stored key %x", stored.PublicKey)
	}
	// Used once.
	r = f.req("POST", "/api/v1/devices/enroll", "", EnrollRequest{Code: c.Code, PublicKey: testDeviceKey().der})
	if r.status != http.StatusForbidden || r.errCode() != CodeInvalidEnrollmentCode {
		t.Fatalf("code used twice: %d %s", r.status, r.body)
	}
	// The same key twice is refused.
	r = f.req("POST", "/api/v1/devices/enroll", "", EnrollRequest{Code: f.code(tok, "").Code, PublicKey: k.der})
	if r.status != http.StatusConflict {
		t.Fatalf("a key enrolled twice: %d %s", r.status, r.body)
	}
}

func TestEnrollRefused(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx := context.Background()
	// An expired code.
	code, hash := device.NewCode(acctA)
	f.bolt.View(ctx, acctA, func(tx policy.Tx) error {
		return tx.PutEnrollment(policy.Enrollment{CodeHash: hash, Owner: "alice", CreatedAt: time.Now().Add(-11 * time.Minute),
			ExpiresAt: time.Now().Add(-time.Minute)})
	})
	for name, body := range map[string]EnrollRequest{
		"expired":         {Code: code, PublicKey: testDeviceKey().der},
		"guessed":         {Code: "10042.AAAA-BBBB-CCCC-DDDD", PublicKey: testDeviceKey().der},
		"no such account": {Code: "99999.AAAA-BBBB-CCCC-DDDD", PublicKey: testDeviceKey().der},
		"malformed":       {Code: "hello", PublicKey: testDeviceKey().der},
		"another account": {Code: "10043." + strings.SplitN(code, ".", 2)[1], PublicKey: testDeviceKey().der},
	} {
		r := f.req("POST", "/api/v1/devices/enroll", "", body)
		if r.status != http.StatusForbidden || r.errCode() != CodeInvalidEnrollmentCode {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	// Not an Ed25519 key.
	r := f.req("POST", "/api/v1/devices/enroll", "", EnrollRequest{Code: code, PublicKey: []byte("nope")})
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "public_key") {
		t.Errorf("bad key: %d %s", r.status, r.body)
	}
	// A user who lost desktop access after asking cannot use the code.
	c := f.code(f.token(user), "laptop")
	f.req("PATCH", "/api/v1/accounts/10042/users/alice", f.token(master), map[string]bool{"desktop_access": false})
	r = f.req("POST", "/api/v1/devices/enroll", "", EnrollRequest{Code: c.Code, PublicKey: testDeviceKey().der})
	if r.status != http.StatusForbidden || r.errCode() != CodeInvalidEnrollmentCode {
		t.Errorf("owner without desktop access: %d %s", r.status, r.body)
	}
	if n := len(f.devices(acctA)); n != 0 {
		t.Fatalf("%d devices enrolled by refused requests", n)
	}
}

// TestEnrollGuessesLimited: wrong codes from one address are locked out
// like failed logins, before the code is checked, so even the right code
// waits.
func TestEnrollGuessesLimited(t *testing.T) {
	f := newFixture(t, fixtureOptions{limits: LoginLimits{PerIP: Limit{Burst: 3, Every: time.Hour}}})
	c := f.code(f.token(master), "office PC")
	for i := range 3 {
		r := f.req("POST", "/api/v1/devices/enroll", "", EnrollRequest{Code: "10042.AAAA-BBBB-CCCC-DDDD", PublicKey: testDeviceKey().der})
		if r.status != http.StatusForbidden {
			t.Fatalf("guess %d: %d %s", i, r.status, r.body)
		}
	}
	r := f.req("POST", "/api/v1/devices/enroll", "", EnrollRequest{Code: c.Code, PublicKey: testDeviceKey().der})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("after the limit: %d %s", r.status, r.body)
	}
}

// TestEnrollApproval: with device_approval on, a new device is pending.
func TestEnrollApproval(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.token(master)
	f.req("PATCH", "/api/v1/accounts/10042/settings", m, map[string]bool{"device_approval": true})
	c := f.code(m, "reception PC")
	var d DeviceView
	f.req("POST", "/api/v1/devices/enroll", "", EnrollRequest{Code: c.Code, PublicKey: testDeviceKey().der}).decode(t, &d)
	if d.Status != policy.DevicePending || d.Active || d.Owner != "master" {
		t.Fatalf("device %+v, want pending, owned by master", d)
	}
}

// devices lists an account's devices.
func (f *fixture) devices(account string) []policy.Device {
	f.t.Helper()
	var ds []policy.Device
	f.bolt.View(context.Background(), account, func(tx policy.Tx) error {
		ds, _ = tx.Devices()
		return nil
	})
	return ds
}
