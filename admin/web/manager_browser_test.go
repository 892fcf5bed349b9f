package web

import (
	"net/netip"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TestBrowserManager: a user holding manage_staff logs in, finds Staff in
// the menu, and offboards an employee from the staff page in the
// account's time zone; the employee's grant is gone from the gate. The
// master's settings page shows and changes the time zone.
func TestBrowserManager(t *testing.T) {
	f := newFixture(t, proxyTrust)
	f.addPermissionHolders()
	engine := startEngine(t, f)
	now := time.Now()
	f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Source: policy.SourceUnblock,
		Owner: "alice", CreatedBy: "alice", CreatedAt: now, ExpiresAt: now.Add(8 * time.Hour)})
	waitVerdict(t, engine, acctA, "203.0.113.7", policy.Allowed)

	// The master sets the account's time zone on the settings page.
	m := newTab(t, f, "198.51.100.20")
	m.open("/login?as=master")
	m.typeInto("account", acctA)
	m.typeInto("password", pwA)
	m.press(`button[type="submit"].primary`)
	m.open("/accounts/10042/settings")
	m.sees("Time zone", "Times are in UTC.")
	m.do(chromedp.Clear(chromedp.ID("time_zone")))
	m.typeInto("time_zone", "Europe/Berlin")
	m.press(`form button[type="submit"].primary`)
	m.at("/accounts/10042/settings")
	m.sees("Time zone: Europe/Berlin", "Times are in Europe/Berlin")
	m.screenshot("settings-time-zone")

	b := newTab(t, f, "198.51.100.21")
	b.open("/login")
	b.typeInto("account", acctA)
	b.typeInto("username", "dan")
	b.typeInto("password", pwDan)
	b.press(`button[type="submit"].primary`)
	b.press(`nav a[href="/accounts/10042/users"]`)
	b.at("/accounts/10042/users")
	b.sees("Alice Martin", "Managed by the account holder", "Times are in Europe/Berlin")
	b.screenshot("staff-manager")
	b.press(`a[href="/accounts/10042/users/alice/offboard"]`)
	b.sees("Offboard Alice Martin (alice)?")
	b.press(`main button.danger`)
	b.at("/accounts/10042/users")
	b.sees("alice is offboarded: login deactivated, desktop access off")
	if u := f.user(acctA, "alice"); u.Active || u.DesktopAccess {
		t.Fatalf("alice after offboarding: %+v", u)
	}
	waitVerdict(t, engine, acctA, "203.0.113.7", policy.Denied)
	if e := f.lastAudit(acctA); e.Action != "user.offboard" || e.Actor != "dan" {
		t.Fatalf("audit: %+v", e)
	}
	// The receipt names who did it and the account's zone.
	b.open("/accounts/10042/users/alice/offboarding")
	b.sees("Offboarding receipt: Alice Martin (alice)", "dan", "Times are in Europe/Berlin")
}
