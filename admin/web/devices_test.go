package web

import (
	"crypto/ed25519"
	"crypto/x509"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

var codePattern = regexp.MustCompile(`-code (10042\.[A-Z0-9-]+) -name &#34;Home laptop&#34;`)

// TestDevicePages: an employee gets a code and the exact command on "Your
// computers"; once enrolled, the device is on their list and the account
// holder's; the holder makes it inactive; the employee can make their own
// inactive too.
func TestDevicePages(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	alice := f.client().mustLogin(acctA, "alice", pwAlice)
	alice.get("/me/devices")
	res := alice.submit("/me/devices", url.Values{"name": {"Home laptop"}})
	m := codePattern.FindStringSubmatch(res.body)
	if res.status != 200 || m == nil || !strings.Contains(res.body, "gatekeeper connect enroll -admin-url https://") {
		t.Fatalf("add this computer: %s\n%s", res.summary(), res.body)
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	d, err := f.svc.Enroll(t.Context(), netip.MustParseAddr("203.0.113.9"), admin.EnrollRequest{Code: m[1], Name: "Home laptop", Platform: "windows/amd64", PublicKey: der})
	if err != nil {
		t.Fatal(err)
	}
	if page := alice.get("/me/devices"); !strings.Contains(page.body, "Home laptop") || !strings.Contains(page.body, "windows/amd64") {
		t.Fatalf("own list:\n%s", page.body)
	}
	master := f.client().mustLogin(acctA, "", pwA)
	page := master.get("/accounts/10042/devices")
	if !strings.Contains(page.body, "Home laptop") || !strings.Contains(page.body, "alice") {
		t.Fatalf("devices page:\n%s", page.body)
	}
	if res := master.submit("/accounts/10042/devices/"+d.ID+"/update", url.Values{"set": {"inactive"}}); res.summary() != "303 /accounts/10042/devices" {
		t.Fatalf("inactive: %s %s", res.summary(), res.body)
	}
	if page := master.get("/accounts/10042/devices"); !strings.Contains(page.body, "is inactive") || !strings.Contains(page.body, "Make active") {
		t.Fatalf("after inactive:\n%s", page.body)
	}
	master.get("/accounts/10042/devices")
	master.submit("/accounts/10042/devices/"+d.ID+"/update", url.Values{"set": {"active"}})
	alice.get("/me/devices")
	if res := alice.submit("/me/devices/"+d.ID+"/inactive", nil); res.summary() != "303 /me/devices" {
		t.Fatalf("own inactive: %s %s", res.summary(), res.body)
	}
	var st policy.DeviceStatus
	f.bolt.Update(t.Context(), acctA, func(tx policy.Tx) error {
		dv, err := tx.Device(d.ID)
		st = dv.Status
		return err
	})
	if st != policy.DeviceInactive {
		t.Fatalf("status %s", st)
	}
}
