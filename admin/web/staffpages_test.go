package web

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TestTimeZonePages: the settings page changes the account's time zone
// (a bad name comes back next to its field and changes nothing), and
// then every page of the account shows its times in that zone and names
// it, the printable receipt included; the API keeps RFC 3339.
func TestTimeZonePages(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.client().mustLogin(acctA, "", pwA)
	m.get("/accounts/10042/settings").has(t, `name="time_zone" value="UTC"`, `<datalist id="time_zone-list">`, "Times are in UTC.")
	res := m.submit("/accounts/10042/settings", url.Values{"time_zone": {"Mars/Olympus"}})
	if res.status != 400 || !strings.Contains(res.body, `id="time_zone-error"`) || !strings.Contains(res.body, `value="Mars/Olympus"`) {
		t.Fatalf("bad zone: %s\n%s", res.summary(), res.body)
	}
	if acct, _ := f.bolt.Account(t.Context(), acctA); acct.Settings.TimeZone != "" {
		t.Fatalf("a refused zone was stored: %q", acct.Settings.TimeZone)
	}
	if res := m.submit("/accounts/10042/settings", url.Values{"time_zone": {"Europe/Berlin"}}); res.summary() != "303 /accounts/10042/settings" {
		t.Fatalf("save: %s %s", res.summary(), res.body)
	}
	m.get("/accounts/10042/settings").has(t, `name="time_zone" value="Europe/Berlin"`, "Times are in Europe/Berlin (CE")

	// A last day and a last login at known instants show in Berlin time.
	until := time.Date(2099, 7, 1, 12, 0, 0, 0, time.UTC)  // 14:00 CEST
	login := time.Date(2030, 1, 15, 8, 30, 0, 0, time.UTC) // 09:30 CET
	if err := f.bolt.Update(t.Context(), acctA, func(tx policy.Tx) error {
		u, err := tx.User("bob")
		if err != nil {
			return err
		}
		u.AccessUntil, u.LastLoginAt = until, login
		return tx.PutUser(u)
	}); err != nil {
		t.Fatal(err)
	}
	p := m.get("/accounts/10042/users")
	p.has(t, "1 Jul 2099 14:00 CEST", `value="2099-07-01T14:00"`, "15 Jan 2030 09:30", "a date and time in Europe/Berlin")
	// The user's own pages are in the account's zone too.
	alice := f.client().mustLogin(acctA, "alice", pwAlice)
	alice.get("/me").has(t, "Times are in Europe/Berlin")
	// The receipt names the zone in print, where the footer is hidden.
	m.submit("/accounts/10042/users/alice/offboard", nil)
	m.get("/accounts/10042/users/alice/offboarding").has(t, "Times are in Europe/Berlin")
	// Another account keeps its own zone.
	f.client().mustLogin(acctB, "", pwB).get("/accounts/10043/firewall").has(t, "Times are in UTC.")
}

// TestLastDayForm: the staff page sets a last day at creation and later,
// read in the account's time zone, and clears it; a bad one is refused
// next to its field with nothing created.
func TestLastDayForm(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.client().mustLogin(acctA, "", pwA)
	m.submit("/accounts/10042/settings", url.Values{"time_zone": {"America/New_York"}})
	res := m.submit("/accounts/10042/users", url.Values{"username": {"dave.miller"}, "password": {"dave-initial-pw-1"}, "access_until": {"2099-03-31T18:00"}})
	if res.summary() != "303 /accounts/10042/users" {
		t.Fatalf("create: %s %s", res.summary(), res.body)
	}
	want := time.Date(2099, 3, 31, 22, 0, 0, 0, time.UTC) // 18:00 EDT
	if u := f.user(acctA, "dave.miller"); !u.AccessUntil.Equal(want) {
		t.Fatalf("stored last day %v, want %v", u.AccessUntil, want)
	}
	m.get("/accounts/10042/users").has(t, "Their last day is 31 Mar 2099 18:00 EDT", `value="2099-03-31T18:00"`)
	res = m.submit("/accounts/10042/users", url.Values{"username": {"erin.doe"}, "password": {"erin-initial-pw-1"}, "access_until": {"next friday"}})
	if res.status != 400 || !strings.Contains(res.body, `id="access_until-error"`) || !strings.Contains(res.body, `value="next friday"`) {
		t.Fatalf("bad last day: %s\n%s", res.summary(), res.body)
	}
	res = m.submit("/accounts/10042/users", url.Values{"username": {"erin.doe"}, "password": {"erin-initial-pw-1"}, "access_until": {"2001-01-01T09:00"}})
	if res.status != 400 || !strings.Contains(res.body, "in the past") {
		t.Fatalf("past last day: %s\n%s", res.summary(), res.body)
	}
	if f.bolt.Update(t.Context(), acctA, func(tx policy.Tx) error { _, err := tx.User("erin.doe"); return err }) == nil {
		t.Fatal("a refused form created the user")
	}
	// Later: set (with its zone given, which wins), then cleared.
	res = m.submit("/accounts/10042/users/alice/access-until", url.Values{"access_until": {"2099-06-01T09:00:00+02:00"}})
	if res.summary() != "303 /accounts/10042/users" || !f.user(acctA, "alice").AccessUntil.Equal(time.Date(2099, 6, 1, 7, 0, 0, 0, time.UTC)) {
		t.Fatalf("set: %s %v", res.summary(), f.user(acctA, "alice").AccessUntil)
	}
	m.get("/accounts/10042/users").has(t, "alice&#39;s last day is 1 Jun 2099 03:00 EDT")
	if res := m.submit("/accounts/10042/users/alice/access-until", url.Values{"access_until": {""}}); res.summary() != "303 /accounts/10042/users" || !f.user(acctA, "alice").AccessUntil.IsZero() {
		t.Fatalf("clear: %s %v", res.summary(), f.user(acctA, "alice").AccessUntil)
	}
	if e := f.lastAudit(acctA); e.Action != "user.update" || !strings.Contains(string(e.Before), `"access_until":"2099-06-01T09:00:00+02:00"`) {
		t.Fatalf("audit %+v", e)
	}
	if res := m.submit("/accounts/10042/users/alice/access-until", url.Values{"access_until": {"31/03/2099"}}); res.status != 400 {
		t.Fatalf("bad date: %s", res.summary())
	}
}

// TestManagerAndAuditorPages: a manager's menu has the staff page, which
// leaves out what only the master may do (devices, addresses, the
// review, account-wide resets) and the actions on other permission
// holders; an auditor's menu has the audit trail, filtered by a typed
// name.
func TestManagerAndAuditorPages(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.addPermissionHolders()
	dan := f.asHolder(manager)
	me := dan.get("/me")
	me.has(t, `href="/accounts/10042/users"`)
	me.lacks(t, `href="/accounts/10042/audit"`, `href="/accounts/10042/firewall"`)
	p := dan.get("/accounts/10042/users")
	p.has(t, "Alice Martin", "Managed by the account holder", `action="/accounts/10042/users/alice/access-until"`,
		`href="/accounts/10042/users/alice/offboard"`, `aria-current="page"`)
	p.lacks(t, `/accounts/10042/review`, `/users/reset-passwords`, `/accounts/10042/devices`, `/users/alice/email`,
		`/users/frank/offboard`, `/users/erin/password`, `action="/accounts/10042/users/dan/update"`, "Smith Studio")
	erin := f.asHolder(auditor)
	erin.get("/me").has(t, `href="/accounts/10042/audit"`)
	a := erin.get("/accounts/10042/audit?user=dan")
	a.has(t, "Audit trail", `<input id="user" name="user" value="dan"`, "logged in")
	a.lacks(t, "<select id=\"user\"")
}
