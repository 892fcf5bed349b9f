package web

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TestSettingsForm: the page shows every setting with its value in effect
// and its default; saving changes them and says what changed; a bad value
// comes back next to its field, as entered, and changes nothing.
func TestSettingsForm(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.client().mustLogin(acctA, "", pwA)
	page := m.get("/accounts/10042/settings")
	if page.status != 200 {
		t.Fatalf("settings page: %s", page.summary())
	}
	for _, st := range policy.SettingTable {
		if st.Kind == policy.KindBoolean {
			if !strings.Contains(page.body, `name="`+st.Name+`" value="on" aria-describedby`) {
				t.Errorf("page lacks %s unchecked", st.Name)
			}
			continue
		}
		if st.Kind == policy.KindChoice {
			if !strings.Contains(page.body, `<option value="`+st.DefaultText()+`" selected>`) || !strings.Contains(page.body, st.Label) {
				t.Errorf("page lacks %s at its default %s", st.Name, st.DefaultText())
			}
			continue
		}
		if !strings.Contains(page.body, `name="`+st.Name+`" value="`+st.DefaultText()+`"`) || !strings.Contains(page.body, st.Label) {
			t.Errorf("page lacks %s at its default %s", st.Name, st.DefaultText())
		}
	}
	if !strings.Contains(page.body, `href="/accounts/10042/settings"`) {
		t.Errorf("no menu entry for the settings")
	}
	res := m.submit("/accounts/10042/settings", url.Values{"grant_ttl_default": {"2h"}, "grant_ttl_max": {"48h"}, "max_grants": {"5"}, "device_approval": {"on"}})
	if res.summary() != "303 /accounts/10042/settings" {
		t.Fatalf("save: %s %s", res.summary(), res.body)
	}
	page = m.get("/accounts/10042/settings")
	for _, want := range []string{`value="2h"`, `value="48h"`, `value="5"`, "Longest unblock: 48h", `value="on" checked`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("after saving, the page lacks %s", want)
		}
	}
	acct, err := f.bolt.Account(context.Background(), acctA)
	if err != nil || acct.Settings.MaxGrants != 5 || !acct.Settings.DeviceApproval || acct.Settings.GrantTTLMax != policy.Duration(48*60*60*1e9) {
		t.Fatalf("stored %+v %v", acct.Settings, err)
	}
	if e := f.lastAudit(acctA); e.Action != "settings.update" {
		t.Fatalf("last audit %+v", e)
	}
	for _, c := range []struct {
		form  url.Values
		field string
	}{
		{url.Values{"grant_ttl_max": {"48h"}, "max_grants": {"lots"}}, "max_grants"},
		{url.Values{"grant_ttl_max": {"tomorrow"}, "max_grants": {"5"}}, "grant_ttl_max"},
		{url.Values{"grant_ttl_default": {"72h"}, "grant_ttl_max": {"48h"}}, "grant_ttl_default"},
	} {
		res := m.submit("/accounts/10042/settings", c.form)
		if res.status != 400 || !strings.Contains(res.body, `id="`+c.field+`-error"`) {
			t.Errorf("%v: %s, want 400 with an error on %s\n%s", c.form, res.summary(), c.field, res.body)
		}
		for k, v := range c.form {
			if !strings.Contains(res.body, `value="`+v[0]+`"`) {
				t.Errorf("%v: %s is not shown again as entered", c.form, k)
			}
		}
	}
	if again, _ := f.bolt.Account(context.Background(), acctA); again.Settings != acct.Settings {
		t.Fatalf("a refused form changed the settings: %+v", again.Settings)
	}
	// An empty field is the default again, an unticked box off.
	m.submit("/accounts/10042/settings", url.Values{"grant_ttl_default": {"2h"}, "grant_ttl_max": {"48h"}, "max_grants": {""}})
	if acct, _ := f.bolt.Account(context.Background(), acctA); acct.Settings.MaxGrants != 0 || acct.Settings.DeviceApproval {
		t.Fatalf("an empty field did not go back to the default: %+v", acct.Settings)
	}
}
