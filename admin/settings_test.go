package admin

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TestSettingsDefaults: a new account shows every setting of the table,
// each at its documented default.
func TestSettingsDefaults(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	var got AccountSettings
	f.req("GET", "/api/v1/accounts/10042/settings", f.token(master), nil).decode(t, &got)
	want := map[string]any{"grant_ttl_default": "12h", "grant_ttl_max": "168h", "max_grants": float64(3), "device_approval": false,
		"lease_ttl": "1h", "ipv6_grant_prefix": float64(64)}
	if len(got.Settings) != len(policy.SettingTable) || len(got.Defaults) != len(policy.SettingTable) {
		t.Fatalf("settings %v, defaults %v: want one of each per setting", got.Settings, got.Defaults)
	}
	for name, v := range want {
		if got.Settings[name] != v || got.Defaults[name] != v {
			t.Errorf("%s = %v (default %v), want %v", name, got.Settings[name], got.Defaults[name], v)
		}
	}
}

// TestSettingsPatch: a change applies, is audited with what it was and
// what it became, takes effect on the next unblock, and null goes back to
// the default.
func TestSettingsPatch(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tok := f.token(master)
	r := f.req("PATCH", "/api/v1/accounts/10042/settings", tok, `{"grant_ttl_max":"2h","grant_ttl_default":"90m","max_grants":1}`)
	if r.status != 200 {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	var got AccountSettings
	r.decode(t, &got)
	if got.Settings["grant_ttl_max"] != "2h" || got.Settings["grant_ttl_default"] != "1h30m" || got.Settings["max_grants"] != float64(1) {
		t.Fatalf("after patch: %v", got.Settings)
	}
	e := f.lastAudit(acctA)
	if e.Action != "settings.update" || e.Target != "account/10042" {
		t.Fatalf("audit: %+v", e)
	}
	var before, after map[string]any
	if json.Unmarshal(e.Before, &before) != nil || json.Unmarshal(e.After, &after) != nil ||
		before["grant_ttl_max"] != "168h" || after["grant_ttl_max"] != "2h" || before["max_grants"] != float64(3) || after["max_grants"] != float64(1) {
		t.Fatalf("audit before %s after %s", e.Before, e.After)
	}
	if acct, err := f.bolt.Account(t.Context(), acctA); err != nil || acct.Settings.MaxGrants != 1 {
		t.Fatalf("stored: %+v %v", acct.Settings, err)
	}
	// The new bound holds for the next unblock.
	if r := f.req("POST", "/api/v1/accounts/10042/unblock", f.token(user), map[string]string{"ttl": "3h"}); r.errCode() != CodeInvalidTTL {
		t.Fatalf("unblock beyond the new bound: %d %s", r.status, r.body)
	}
	// The same values again change nothing and are not audited.
	n := f.auditCount(acctA)
	if r := f.req("PATCH", "/api/v1/accounts/10042/settings", tok, `{"max_grants":1}`); r.status != 200 || f.auditCount(acctA) != n {
		t.Fatalf("no-op patch: %d %s, %d audit entries added", r.status, r.body, f.auditCount(acctA)-n)
	}
	// null is the default again.
	f.req("PATCH", "/api/v1/accounts/10042/settings", tok, `{"max_grants":null}`).decode(t, &got)
	if got.Settings["max_grants"] != float64(3) {
		t.Fatalf("after null: %v", got.Settings)
	}
	// A time zone is its IANA name; the API's times stay RFC 3339 in UTC.
	f.req("PATCH", "/api/v1/accounts/10042/settings", tok, `{"time_zone":"America/New_York"}`).decode(t, &got)
	if got.Settings["time_zone"] != "America/New_York" || got.Defaults["time_zone"] != "UTC" {
		t.Fatalf("time zone: %v defaults %v", got.Settings, got.Defaults)
	}
	if acct, err := f.bolt.Account(t.Context(), acctA); err != nil || acct.Settings.TimeZone != "America/New_York" {
		t.Fatalf("stored: %+v %v", acct.Settings, err)
	}
	f.req("PATCH", "/api/v1/accounts/10042/settings", tok, `{"time_zone":null}`).decode(t, &got)
	if got.Settings["time_zone"] != "UTC" {
		t.Fatalf("after null: %v", got.Settings)
	}
}

// TestSettingsRefused: an unknown key or a bad value answers 400 naming
// the setting, and changes nothing.
func TestSettingsRefused(t *testing.T) {
	cases := []struct{ body, code, names string }{
		{`{"grant_ttl":"1h"}`, CodeUnknownSetting, "grant_ttl"},
		{`{"max_grants":3,"lease_tttl":"1h"}`, CodeUnknownSetting, "lease_tttl"},
		{`{"max_grants":0}`, CodeInvalidSetting, "max_grants"},
		{`{"max_grants":101}`, CodeInvalidSetting, "max_grants"},
		{`{"max_grants":2.5}`, CodeInvalidSetting, "max_grants"},
		{`{"max_grants":"3"}`, CodeInvalidSetting, "max_grants"},
		{`{"grant_ttl_max":"soon"}`, CodeInvalidSetting, "grant_ttl_max"},
		{`{"grant_ttl_max":3600}`, CodeInvalidSetting, "grant_ttl_max"},
		{`{"grant_ttl_max":"30s"}`, CodeInvalidSetting, "grant_ttl_max"},
		{`{"grant_ttl_max":"-1h"}`, CodeInvalidSetting, "grant_ttl_max"},
		{`{"grant_ttl_max":"9000h"}`, CodeInvalidSetting, "grant_ttl_max"},
		{`{"grant_ttl_default":"200h"}`, CodeInvalidSetting, "grant_ttl_default"},
		{`{"max_grants":2,"grant_ttl_default":"3h","grant_ttl_max":"2h"}`, CodeInvalidSetting, "grant_ttl_default"},
		{`{"device_approval":"yes"}`, CodeInvalidSetting, "device_approval"},
		{`{"device_approval":1}`, CodeInvalidSetting, "device_approval"},
		{`{"ipv6_grant_prefix":96}`, CodeInvalidSetting, "ipv6_grant_prefix"},
		{`{"lease_ttl":"1m"}`, CodeInvalidSetting, "lease_ttl"},
		{`{"time_zone":"Mars/Olympus"}`, CodeInvalidSetting, "time_zone"},
		{`{"time_zone":"Local"}`, CodeInvalidSetting, "time_zone"},
		{`{"time_zone":"../../etc/passwd"}`, CodeInvalidSetting, "time_zone"},
		{`{"time_zone":1}`, CodeInvalidSetting, "time_zone"},
		{`{"max_grants":2,"time_zone":""}`, CodeInvalidSetting, "time_zone"},
		{`[]`, CodeInvalidRequest, "JSON object"},
	}
	f := newFixture(t, fixtureOptions{})
	tok := f.token(master)
	want := f.state(acctA)
	for _, c := range cases {
		r := f.req("PATCH", "/api/v1/accounts/10042/settings", tok, c.body)
		if r.status != 400 || r.errCode() != c.code || !strings.Contains(string(r.body), c.names) {
			t.Errorf("%s: %d %s, want 400 %s naming %s", c.body, r.status, r.body, c.code, c.names)
		}
	}
	if got := f.state(acctA); got != want {
		t.Fatalf("a refused patch changed the account:\n%s\nwant\n%s", got, want)
	}
}
