package admin

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

func xff(ip string) string { return "X-Forwarded-For: " + ip }

// TestUnblock: the caller's own address, bounded TTL, renewal, the limit
// of live grants with the oldest removed, and the grant list.
func TestUnblock(t *testing.T) {
	f := newFixture(t, fixtureOptions{trustedProxies: append(loopback, netip.MustParsePrefix("10.0.0.0/8"))})
	alice := f.token(user)
	unblock := func(ip string, body any) (resp, Grant) {
		t.Helper()
		r := f.req("POST", "/api/v1/accounts/10042/unblock", alice, body, xff(ip))
		var g Grant
		if r.status < 300 {
			r.decode(t, &g)
		}
		return r, g
	}
	r, g := unblock("203.0.113.5", nil)
	if r.status != 201 || g.Rule.Prefix.String() != "203.0.113.5/32" || g.Rule.Owner != "alice" ||
		g.Rule.Source != policy.SourceUnblock || g.Renewed {
		t.Fatalf("unblock: %d %s", r.status, r.body)
	}
	if d := time.Until(g.Rule.ExpiresAt); d < 11*time.Hour || d > 12*time.Hour {
		t.Fatalf("default TTL gives expiry in %v, want 12h", d)
	}
	// Renewal of the same address, with a TTL of one's own.
	r, g2 := unblock("203.0.113.5", map[string]string{"ttl": "1h"})
	if r.status != 200 || !g2.Renewed || g2.Rule.ID != g.Rule.ID {
		t.Fatalf("renew: %d %s", r.status, r.body)
	}
	if d := time.Until(g2.Rule.ExpiresAt); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("renewed for %v, want 1h", d)
	}
	for _, ttl := range []string{"169h", "30s", "-1h"} {
		if r, _ := unblock("203.0.113.5", map[string]string{"ttl": ttl}); r.status != 400 || r.errCode() != CodeInvalidTTL {
			t.Errorf("ttl %s: %d %s", ttl, r.status, r.body)
		}
	}
	// The rightmost untrusted X-Forwarded-For entry is the client; an
	// IPv4-mapped address is the IPv4 address; IPv6 gets its /64.
	_, g = unblock("6.6.6.6, 203.0.113.6, 10.1.2.3", nil)
	if g.Rule.Prefix.String() != "203.0.113.6/32" {
		t.Fatalf("client behind proxies: %v", g.Rule.Prefix)
	}
	_, g = unblock("::ffff:203.0.113.7", nil)
	if g.Rule.Prefix.String() != "203.0.113.7/32" {
		t.Fatalf("mapped: %v", g.Rule.Prefix)
	}
	// That was the third live grant; a fourth removes the oldest.
	r, g = unblock("2001:db8::8", nil)
	if g.Rule.Prefix.String() != "2001:db8::/64" || len(g.Removed) != 1 || g.Removed[0].Prefix.String() != "203.0.113.5/32" {
		t.Fatalf("fourth grant: %s", r.body)
	}
	var me Me
	f.req("GET", "/api/v1/me", alice, nil, xff("203.0.113.9")).decode(t, &me)
	var got []string
	for _, g := range me.Grants {
		got = append(got, g.Prefix.String())
	}
	if me.ClientIP != "203.0.113.9" || !slices.Equal(got, []string{"203.0.113.6/32", "203.0.113.7/32", "2001:db8::/64"}) {
		t.Fatalf("me: %+v", me)
	}
	// Removing one's own grant; someone else's is not found.
	if r := f.req("DELETE", fmt.Sprintf("/api/v1/me/grants/%d", me.Grants[0].ID), alice, nil); r.status != 204 {
		t.Fatalf("delete own grant: %d", r.status)
	}
	if r := f.req("DELETE", fmt.Sprintf("/api/v1/me/grants/%d", me.Grants[1].ID), f.token(master), nil); r.status != 404 {
		t.Fatalf("delete someone else's grant: %d", r.status)
	}
	// Expired grants do not count and are cleared at the next unblock.
	f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("198.51.100.1/32"), Source: policy.SourceUnblock,
		Owner: "alice", CreatedAt: time.Now().Add(-2 * time.Hour), ExpiresAt: time.Now().Add(-time.Hour)})
	if _, g := unblock("198.51.100.2", nil); len(g.Removed) != 0 {
		t.Fatalf("an expired grant counted: %+v", g)
	}
	for _, r := range f.rules(acctA) {
		if r.Expired(time.Now()) {
			t.Fatalf("expired grant kept: %+v", r)
		}
	}
	// A per-account setting bounds the TTL.
	f.bolt.Update(context.Background(), acctA, func(tx policy.Tx) error {
		a, _ := tx.Account()
		a.Settings.GrantTTLMax = policy.Duration(2 * time.Hour)
		return tx.PutAccount(a)
	})
	if r, _ := unblock("198.51.100.2", map[string]string{"ttl": "3h"}); r.errCode() != CodeInvalidTTL {
		t.Fatalf("ttl beyond the account's max: %d %s", r.status, r.body)
	}
	if _, g := unblock("198.51.100.2", nil); time.Until(g.Rule.ExpiresAt) > 2*time.Hour {
		t.Fatalf("default beyond the account's max: %v", g.Rule.ExpiresAt)
	}
}

// An IPv6 grant covers a /64 (ipv6_grant_prefix): revoking it counts the
// connections from anywhere in that network, not only from its first
// address.
func TestOffboardCountsIPv6Network(t *testing.T) {
	f := newFixture(t, fixtureOptions{trustedProxies: loopback})
	alice := f.token(user)
	if r := f.req("POST", "/api/v1/accounts/10042/unblock", alice, nil, xff("2001:db8:1:2::7")); r.status != 201 {
		t.Fatalf("unblock: %d %s", r.status, r.body)
	}
	f.req("POST", "/api/v1/accounts/10042/users/alice/offboard", f.token(master), nil)
	if len(f.liveCloses) != 1 {
		t.Fatalf("hook asked %d times", len(f.liveCloses))
	}
	for addr, want := range map[string]bool{"2001:db8:1:2::7": true, "2001:db8:1:2:aaaa::1": true, "2001:db8:1:3::7": false, "::": false} {
		if got := f.liveCloses[0](netip.MustParseAddr(addr)); got != want {
			t.Errorf("a connection from %s closes: %v, want %v", addr, got, want)
		}
	}
}

// TestOffboard: one call ends sessions, revokes grants, counts the
// connections that lose their permission, and locks the user out.
func TestOffboard(t *testing.T) {
	f := newFixture(t, fixtureOptions{trustedProxies: loopback})
	alice, alice2 := f.token(user), f.token(user)
	for _, ip := range []string{"203.0.113.10", "203.0.113.11"} {
		if r := f.req("POST", "/api/v1/accounts/10042/unblock", alice, nil, xff(ip)); r.status != 201 {
			t.Fatal(r.status)
		}
	}
	// A manual rule also covers .11: its connection stays.
	f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("203.0.113.11/32"), Source: policy.SourceManual, CreatedAt: time.Now()})
	f.live.Store(1)
	m := f.token(master)
	before := f.auditCount(acctA)
	r := f.req("POST", "/api/v1/accounts/10042/users/alice/offboard", m, nil)
	var rep UserChange
	r.decode(t, &rep)
	if r.status != 200 || rep.SessionsEnded != 2 || rep.GrantsRevoked != 2 || rep.ConnectionsClosed == nil ||
		*rep.ConnectionsClosed != 1 || rep.User.Active || rep.User.DesktopAccess {
		t.Fatalf("offboard: %d %s", r.status, r.body)
	}
	// The hook is asked once, about the address that loses its only rule.
	if len(f.liveCloses) != 1 {
		t.Fatalf("hook asked %d times", len(f.liveCloses))
	}
	for addr, want := range map[string]bool{"203.0.113.10": true, "203.0.113.11": false, "203.0.113.12": false} {
		if got := f.liveCloses[0](netip.MustParseAddr(addr)); got != want {
			t.Errorf("hook: a connection from %s closes: %v, want %v", addr, got, want)
		}
	}
	if f.auditCount(acctA) != before+1 || f.lastAudit(acctA).Action != "user.offboard" {
		t.Fatalf("audit: %+v", f.lastAudit(acctA))
	}
	for _, tok := range []string{alice, alice2} {
		if r := f.req("GET", "/api/v1/me", tok, nil); r.status != 401 {
			t.Fatalf("session after offboarding: %d", r.status)
		}
	}
	if r := f.req("POST", "/api/v1/login", "", loginBody(acctA, "alice", pwAlice)); r.status != 401 {
		t.Fatalf("login after offboarding: %d", r.status)
	}
	for _, r := range f.rules(acctA) {
		if r.Owner == "alice" {
			t.Fatalf("grant left: %+v", r)
		}
	}
	// Still in the list with everyone, not in the current staff list.
	var list struct{ Users []UserView }
	f.req("GET", "/api/v1/accounts/10042/users", m, nil).decode(t, &list)
	if slices.ContainsFunc(list.Users, func(u UserView) bool { return u.Username == "alice" }) {
		t.Fatal("offboarded user in the staff list")
	}
	f.req("GET", "/api/v1/accounts/10042/users?include_inactive=true", m, nil).decode(t, &list)
	if !slices.ContainsFunc(list.Users, func(u UserView) bool { return u.Username == "alice" && !u.Active }) {
		t.Fatal("offboarded user gone from the full list")
	}
	if r := f.req("POST", "/api/v1/accounts/10042/users/nobody/offboard", m, nil); r.status != 404 {
		t.Fatalf("offboard nobody: %d", r.status)
	}
}

// TestDesktopAccessAndDeactivation: taking desktop access away revokes
// grants but keeps the session; deactivating ends the sessions too.
func TestDesktopAccessAndDeactivation(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	alice, m := f.token(user), f.token(master)
	f.req("POST", "/api/v1/accounts/10042/unblock", alice, nil)
	r := f.req("PATCH", "/api/v1/accounts/10042/users/alice", m, patchBody{DesktopAccess: new(false)})
	var ch UserChange
	r.decode(t, &ch)
	if ch.GrantsRevoked != 1 || ch.SessionsEnded != 0 || ch.User.DesktopAccess {
		t.Fatalf("desktop access off: %s", r.body)
	}
	if r := f.req("GET", "/api/v1/me", alice, nil); r.status != 200 {
		t.Fatalf("session after desktop access off: %d", r.status)
	}
	if r := f.req("POST", "/api/v1/accounts/10042/unblock", alice, nil); r.errCode() != CodeNoDesktopAccess {
		t.Fatalf("unblock without desktop access: %d", r.status)
	}
	// A patch that changes nothing is not a write.
	n := f.auditCount(acctA)
	if r := f.req("PATCH", "/api/v1/accounts/10042/users/alice", m, patchBody{DesktopAccess: new(false)}); r.status != 200 || f.auditCount(acctA) != n {
		t.Fatalf("no-op patch: %d, audit %d→%d", r.status, n, f.auditCount(acctA))
	}
	if r := f.req("PATCH", "/api/v1/accounts/10042/users/alice", m, `{}`); r.status != 400 {
		t.Fatalf("empty patch: %d", r.status)
	}
	r = f.req("PATCH", "/api/v1/accounts/10042/users/alice", m, patchBody{Active: new(false)})
	r.decode(t, &ch)
	if ch.SessionsEnded != 1 {
		t.Fatalf("deactivate: %s", r.body)
	}
	if r := f.req("GET", "/api/v1/me", alice, nil); r.status != 401 {
		t.Fatalf("session after deactivation: %d", r.status)
	}
	f.req("PATCH", "/api/v1/accounts/10042/users/alice", m, patchBody{Active: new(true), DesktopAccess: new(true)})
	f.login(acctA, "alice", pwAlice)
}

// TestSessions: logout, expiry and a password change end sessions.
func TestSessions(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	a1, a2, a3 := f.token(user), f.token(user), f.token(user)
	if r := f.req("POST", "/api/v1/logout", a1, nil); r.status != 204 {
		t.Fatal(r.status)
	}
	if r := f.req("GET", "/api/v1/me", a1, nil); r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
		t.Fatalf("after logout: %d", r.status)
	}
	r := f.req("POST", "/api/v1/password", a2, passwordBody{Current: pwAlice, New: "alice-second-password"})
	var pc PasswordChange
	r.decode(t, &pc)
	if pc.SessionsEnded != 1 {
		t.Fatalf("password change: %s", r.body)
	}
	if r := f.req("GET", "/api/v1/me", a3, nil); r.status != 401 {
		t.Fatalf("other session after password change: %d", r.status)
	}
	if r := f.req("GET", "/api/v1/me", a2, nil); r.status != 200 {
		t.Fatalf("own session after password change: %d", r.status)
	}
	if r := f.req("POST", "/api/v1/login", "", loginBody(acctA, "alice", pwAlice)); r.status != 401 {
		t.Fatalf("old password: %d", r.status)
	}
	f.login(acctA, "alice", "alice-second-password")
	if r := f.req("POST", "/api/v1/password", a2, passwordBody{Current: "alice-second-password", New: "alice"}); r.errCode() != CodeWeakPassword {
		t.Fatalf("weak new password: %s", r.body)
	}
	// The master's password too.
	m := f.token(master)
	f.req("POST", "/api/v1/password", m, passwordBody{Current: pwA, New: "a-new-master-password"})
	f.login(acctA, "", "a-new-master-password")
	// Garbage tokens.
	for _, tok := range []string{"x", "10042.", "10042.nope", "../../x.y", strings.Repeat("a", 300) + ".b", opToken + "x"} {
		if r := f.req("GET", "/api/v1/me", tok, nil); r.status != 401 {
			t.Errorf("token %q: %d", tok, r.status)
		}
	}
	// Expiry.
	svc, _ := New(Options{Store: f.bolt, PasswordParams: cheap, SessionTTL: time.Millisecond})
	res, err := svc.Login(context.Background(), loginBody(acctA, "bob", pwBob), netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if r := f.req("GET", "/api/v1/me", res.Token, nil); r.status != 401 {
		t.Fatalf("expired session: %d", r.status)
	}
}

// TestFirewall: mode with confirmation, rules with input rules, usage.
func TestFirewall(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.token(master)
	if r := f.req("PUT", "/api/v1/accounts/10042/firewall/mode", m, modeBody{Mode: "off"}); r.status != 400 || r.errCode() != CodeConfirmationRequired {
		t.Fatalf("off without confirm: %d %s", r.status, r.body)
	}
	if r := f.req("PUT", "/api/v1/accounts/10042/firewall/mode", m, modeBody{Mode: "sideways"}); r.status != 400 {
		t.Fatalf("bad mode: %d", r.status)
	}
	if r := f.req("PUT", "/api/v1/accounts/10042/firewall/mode", m, modeBody{Mode: "off", Confirm: true}); r.status != 200 {
		t.Fatalf("off: %d %s", r.status, r.body)
	}
	if !strings.Contains(f.logs.String(), `"level":"warn","ts"`) || !strings.Contains(f.logs.String(), "firewall turned off") {
		t.Fatal("no warning logged")
	}
	e := f.lastAudit(acctA)
	if e.Action != "firewall.mode" || string(e.Before) != `{"mode":"on"}` || string(e.After) != `{"mode":"off"}` {
		t.Fatalf("audit: %+v", e)
	}
	rules := []struct {
		body   ruleBody
		status int
		code   string
		cidr   string
	}{
		{ruleBody{CIDR: "203.0.113.9"}, 201, "", "203.0.113.9/32"},
		{ruleBody{CIDR: "::ffff:198.51.100.0/120", Note: "mapped"}, 201, "", "198.51.100.0/24"},
		{ruleBody{CIDR: "2001:db8::/48", TTL: policy.Duration(time.Hour)}, 201, "", "2001:db8::/48"},
		{ruleBody{CIDR: "10.0.0.0/8"}, 400, CodeConfirmationRequired, ""},
		{ruleBody{CIDR: "10.0.0.0/8", Confirm: true}, 201, "", "10.0.0.0/8"},
		{ruleBody{CIDR: "203.0.113.9/32"}, 409, CodeExists, ""},
		{ruleBody{CIDR: "0.0.0.0/0", Confirm: true}, 400, CodeTooBroad, ""},
		{ruleBody{CIDR: "::/0", Confirm: true}, 400, CodeTooBroad, ""},
		{ruleBody{CIDR: "203.0.113.300"}, 400, CodeInvalidCIDR, ""},
		{ruleBody{CIDR: ""}, 400, CodeInvalidCIDR, ""},
		{ruleBody{CIDR: "fe80::1%eth0"}, 400, CodeInvalidCIDR, ""},
		{ruleBody{CIDR: "192.0.2.1", Note: "bell\a"}, 400, CodeInvalidRequest, ""},
		{ruleBody{CIDR: "192.0.2.1", Note: strings.Repeat("n", 201)}, 400, CodeInvalidRequest, ""},
		{ruleBody{CIDR: "192.0.2.1", TTL: policy.Duration(time.Second)}, 400, CodeInvalidTTL, ""},
	}
	for _, c := range rules {
		r := f.req("POST", "/api/v1/accounts/10042/firewall/rules", m, c.body)
		if r.status != c.status || (c.code != "" && r.errCode() != c.code) {
			t.Errorf("%+v: %d %s", c.body, r.status, r.body)
			continue
		}
		if c.cidr != "" {
			var rule policy.Rule
			r.decode(t, &rule)
			if rule.Prefix.String() != c.cidr || rule.Source != policy.SourceManual || rule.CreatedBy != "master" {
				t.Errorf("%+v: %s", c.body, r.body)
			}
		}
	}
	// Usage reported by the proxies shows in the list.
	used := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	f.bolt.RecordUsage(context.Background(), []policy.Usage{{Account: acctA, Rule: 1, LastUsed: used, Hits: 42}})
	var fw Firewall
	f.req("GET", "/api/v1/accounts/10042/firewall", m, nil).decode(t, &fw)
	if fw.Mode != policy.ModeOff || len(fw.Rules) != 4 || fw.Rules[0].Hits != 42 || !fw.Rules[0].LastUsed.Equal(used) {
		t.Fatalf("firewall: %+v", fw)
	}
	if r := f.req("DELETE", "/api/v1/accounts/10042/firewall/rules/1", m, nil); r.status != 204 {
		t.Fatal(r.status)
	}
	for _, p := range []string{"1", "0", "x", "99999999999"} {
		if r := f.req("DELETE", "/api/v1/accounts/10042/firewall/rules/"+p, m, nil); r.status != 404 {
			t.Errorf("delete rule %s: %d", p, r.status)
		}
	}
}

// TestUsers: creation rules and the staff list.
func TestUsers(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.token(master)
	cases := []struct {
		username, pw string
		status       int
		code         string
	}{
		{"jane.smith", "jane-initial-pw", 201, ""},
		{"Jane.Smith", "jane-initial-pw", 409, CodeExists},
		{"alice", "alice-other-pw-1", 409, CodeExists},
		{"jane", "short", 400, CodeWeakPassword},
		{"jane", "jane", 400, CodeWeakPassword},
		{"jane", "10042", 400, CodeWeakPassword},
		{"j", "jane-initial-pw", 400, CodeInvalidUsername},
		{"jane smith", "jane-initial-pw", 400, CodeInvalidUsername},
		{"-jane", "jane-initial-pw", 400, CodeInvalidUsername},
		{strings.Repeat("j", 65), "jane-initial-pw", 400, CodeInvalidUsername},
	}
	for _, g := range []string{"reception", "frontdesk", "front-desk", "Front_Desk", "salesmanager", "manager",
		"office", "staff", "admin", "administrator", "user", "guest", "test", "info", "sales", "support", "team",
		"shared", "desk", "clinic", "studio", "shop", "reception2", "office01", "front.desk.3", "master", "operator", "12345"} {
		cases = append(cases, struct {
			username, pw string
			status       int
			code         string
		}{g, "generic-password-1", 400, CodeGenericUsername})
	}
	for _, c := range cases {
		r := f.req("POST", "/api/v1/accounts/10042/users", m, userBody{Username: c.username, DisplayName: "Jane", Password: c.pw})
		if r.status != c.status || (c.code != "" && r.errCode() != c.code) {
			t.Errorf("%q/%q: %d %s", c.username, c.pw, r.status, r.body)
		}
	}
	// The new user must reset at first login.
	var lr LoginResult
	f.req("POST", "/api/v1/login", "", loginBody(acctA, "JANE.SMITH", "jane-initial-pw")).decode(t, &lr)
	if !lr.MustResetPassword || lr.Role != policy.RoleUser {
		t.Fatalf("new user's login: %+v", lr)
	}
	alice := f.token(user)
	f.req("POST", "/api/v1/accounts/10042/unblock", alice, nil)
	var list struct{ Users []UserView }
	f.req("GET", "/api/v1/accounts/10042/users", m, nil).decode(t, &list)
	var names []string
	for _, u := range list.Users {
		names = append(names, u.Username)
		if u.Username == "alice" && (u.LastLoginAt.IsZero() || u.LastLoginIP != "127.0.0.1" || len(u.Grants) != 1) {
			t.Errorf("alice in the list: %+v", u)
		}
	}
	if !slices.Equal(names, []string{"alice", "bob", "carol", "jane.smith"}) {
		t.Fatalf("list: %v", names)
	}
	// Everyone must reset.
	var pr PasswordResets
	f.req("POST", "/api/v1/accounts/10042/users/reset-passwords", m, nil).decode(t, &pr)
	if pr.Users != 2 { // carol and jane already had to
		t.Fatalf("reset: %+v", pr)
	}
	if r := f.req("POST", "/api/v1/accounts/10042/unblock", alice, nil); r.errCode() != CodePasswordResetRequired {
		t.Fatalf("alice after reset-passwords: %s", r.body)
	}
}

// TestAuditPaging: newest first, pages that chain, bounds on limit.
func TestAuditPaging(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.token(master)
	for i := range 5 {
		f.req("POST", "/api/v1/accounts/10042/firewall/rules", m, ruleBody{CIDR: fmt.Sprintf("198.51.100.%d", i+1)})
	}
	var all []policy.AuditEntry
	before := ""
	for range 10 {
		var p AuditPage
		f.req("GET", "/api/v1/accounts/10042/audit?limit=2&before="+before, m, nil).decode(t, &p)
		all = append(all, p.Entries...)
		if p.Next == "" {
			break
		}
		before = p.Next
	}
	if len(all) != 7 || all[0].Action != "rule.add" || !strings.Contains(all[0].Target, "198.51.100.5") ||
		all[5].Action != "login.success" || all[6].Action != "account.create" {
		t.Fatalf("%d entries: %+v", len(all), all)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Time.After(all[i-1].Time) {
			t.Fatalf("not newest first at %d", i)
		}
	}
	for _, q := range []string{"limit=0x", "limit=1001", "limit=-1"} {
		if r := f.req("GET", "/api/v1/accounts/10042/audit?"+q, m, nil); r.status != 400 {
			t.Errorf("%s: %d", q, r.status)
		}
	}
}

// TestHTTPHygiene: JSON errors for unknown routes and methods, security
// headers, Origin and Host checks, metrics by route pattern.
func TestHTTPHygiene(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.token(master)
	r := f.req("GET", "/api/v1/nope", m, nil)
	if r.status != 404 || r.errCode() != CodeNotFound || r.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("unknown path: %d %v %s", r.status, r.header, r.body)
	}
	r = f.req("DELETE", "/api/v1/me", m, nil)
	if r.status != 405 || r.errCode() != CodeMethodNotAllowed || !strings.Contains(r.header.Get("Allow"), "GET") {
		t.Fatalf("wrong method: %d %v %s", r.status, r.header, r.body)
	}
	r = f.req("GET", "/api/v1/me", m, nil)
	for k, v := range map[string]string{"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
		"X-Frame-Options": "DENY", "Strict-Transport-Security": "max-age=31536000"} {
		if r.header.Get(k) != v {
			t.Errorf("%s: %q", k, r.header.Get(k))
		}
	}
	if r := f.req("GET", "/api/v1/me", m, nil, "Origin: https://evil.example"); r.status != 403 || r.errCode() != CodeBadOrigin {
		t.Errorf("cross origin: %d", r.status)
	}
	if r := f.req("GET", "/api/v1/me", m, nil, "Origin: "+f.ts.URL); r.status != 200 {
		t.Errorf("same origin: %d %s", r.status, r.body)
	}
	// With Hosts set, other Host names are refused (DNS rebinding).
	srv, _ := NewServer(ServerOptions{Service: f.svc, Hosts: []string{"admin.example.com"}})
	for host, want := range map[string]int{"admin.example.com": 401, "ADMIN.example.com:8443": 401, "evil.example": 403} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "https://"+host+"/api/v1/me", nil)
		srv.Handler().ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("host %s: %d, want %d", host, rec.Code, want)
		}
	}
	// Metrics are labelled by route pattern, not by path.
	f.req("GET", "/api/v1/accounts/10043/firewall", m, nil)
	f.req("GET", "/api/v1/accounts/99999/firewall", m, nil)
	got := counterValue(t, f.srv.requests.WithLabelValues("GET /api/v1/accounts/{acct}/firewall", "404"))
	if got != 2 {
		t.Errorf("requests{route=firewall,code=404} = %v", got)
	}
	if got := counterValue(t, f.srv.requests.WithLabelValues("unmatched", "404")); got != 1 {
		t.Errorf("unmatched 404 = %v", got)
	}
	mf, _ := f.reg.Gather()
	names := map[string]bool{}
	for _, m := range mf {
		names[m.GetName()] = true
	}
	if !names["gatekeeper_admin_requests_total"] || !names["gatekeeper_login_failures_total"] {
		t.Errorf("metrics registered: %v", names)
	}
}

// TestClientIP: forwarding headers only from trusted proxies, rightmost
// untrusted entry.
func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}
	cases := []struct {
		peer, xff, want string
	}{
		{"203.0.113.1:5000", "", "203.0.113.1"},
		{"203.0.113.1:5000", "198.51.100.1", "203.0.113.1"}, // untrusted peer: header ignored
		{"10.0.0.1:5000", "", "10.0.0.1"},
		{"10.0.0.1:5000", "198.51.100.1", "198.51.100.1"},
		{"10.0.0.1:5000", "6.6.6.6, 198.51.100.1", "198.51.100.1"},
		{"10.0.0.1:5000", "6.6.6.6, 198.51.100.1, 10.9.9.9", "198.51.100.1"},
		{"10.0.0.1:5000", "10.1.1.1, 10.2.2.2", "10.1.1.1"},
		{"10.0.0.1:5000", "garbage, 198.51.100.1", "198.51.100.1"},
		{"10.0.0.1:5000", "198.51.100.1, garbage", ""},
		{"[::ffff:10.0.0.1]:5000", "::ffff:198.51.100.1", "198.51.100.1"},
		{"[2001:db8:ffff::1]:5000", "2001:db8:1::5", "2001:db8:1::5"},
		{"[fe80::1%eth0]:5000", "", "fe80::1"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		got, err := ClientIP(r, trusted)
		if (c.want == "") != (err != nil) || (err == nil && got.String() != c.want) {
			t.Errorf("peer %s xff %q: %v %v, want %q", c.peer, c.xff, got, err, c.want)
		}
	}
}

// TestUnblockIPv6Prefix: an IPv6 unblock covers the /64, so a privacy
// address that rotates within it renews the same grant; with
// ipv6_grant_prefix 128 it covers the one address.
func TestUnblockIPv6Prefix(t *testing.T) {
	f := newFixture(t, fixtureOptions{trustedProxies: loopback})
	alice := f.token(user)
	unblock := func(ip string) Grant {
		t.Helper()
		var g Grant
		r := f.req("POST", "/api/v1/accounts/10042/unblock", alice, nil, xff(ip))
		if r.status >= 300 {
			t.Fatalf("unblock from %s: %d %s", ip, r.status, r.body)
		}
		r.decode(t, &g)
		return g
	}
	if g := unblock("2001:db8:1:2:aaaa::1"); g.Rule.Prefix.String() != "2001:db8:1:2::/64" || g.Renewed {
		t.Fatalf("first: %+v", g)
	}
	if g := unblock("2001:db8:1:2:bbbb::2"); g.Rule.Prefix.String() != "2001:db8:1:2::/64" || !g.Renewed {
		t.Fatalf("a rotated address in the same /64: %+v", g)
	}
	f.req("PATCH", "/api/v1/accounts/10042/settings", f.token(master), map[string]int{"ipv6_grant_prefix": 128})
	if g := unblock("2001:db8:1:2:cccc::3"); g.Rule.Prefix.String() != "2001:db8:1:2:cccc::3/128" || g.Renewed {
		t.Fatalf("with ipv6_grant_prefix 128: %+v", g)
	}
}
