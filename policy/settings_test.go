package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestSettingsDocumented: docs/admin-api.md has the row SettingTable
// gives for every setting, so the documentation cannot drift from the
// defaults and bounds the API enforces.
func TestSettingsDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/admin-api.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range SettingTable {
		row := fmt.Sprintf("| `%s` | %s | %s | %s |", st.Name, st.DefaultText(), st.Bounds(), st.Doc)
		if !strings.Contains(string(b), row+"\n") {
			t.Errorf("docs/admin-api.md lacks the row\n%s", row)
		}
	}
}

// TestSettingTable: every entry is complete, its default lies within its
// bounds, and its zero value in Settings means that default.
func TestSettingTable(t *testing.T) {
	seen := map[string]bool{}
	for _, st := range SettingTable {
		if st.Name == "" || st.Label == "" || st.Doc == "" || st.get == nil || st.set == nil || seen[st.Name] {
			t.Errorf("incomplete or repeated setting %+v", st)
		}
		seen[st.Name] = true
		if st.def < st.min || st.def > st.max {
			t.Errorf("%s: default %s outside %s", st.Name, st.DefaultText(), st.Bounds())
		}
		if got, want := fmt.Sprint(st.Value(Settings{})), fmt.Sprint(st.Default()); got != want {
			t.Errorf("%s: zero Settings give %s, want the default %s", st.Name, got, want)
		}
		var s Settings
		if err := st.ParseText(&s, st.DefaultText()); err != nil || st.Text(s) != st.DefaultText() {
			t.Errorf("%s: the default does not read back: %v", st.Name, err)
		}
		if err := st.ParseJSON(&s, json.RawMessage("null")); err != nil || st.get(s) != 0 {
			t.Errorf("%s: null does not reset it: %v", st.Name, err)
		}
	}
}

// TestSettingsAgreeWithDefaults: WithDefaults, which the grant code
// reads, gives the same values as the table.
func TestSettingsAgreeWithDefaults(t *testing.T) {
	d := Settings{}.WithDefaults()
	for _, st := range SettingTable {
		if st.get(d) != st.def {
			t.Errorf("%s: WithDefaults gives %d, the table %d", st.Name, st.get(d), st.def)
		}
	}
}

func TestFormJSON(t *testing.T) {
	ttl, _ := LookupSetting("grant_ttl_max")
	n, _ := LookupSetting("max_grants")
	b, _ := LookupSetting("device_approval")
	mfa, _ := LookupSetting("require_mfa")
	for _, c := range []struct {
		st         Setting
		text, want string
	}{
		{ttl, " 2h ", `"2h"`}, {ttl, "", "null"}, {ttl, "5", `"5"`},
		{n, "5", "5"}, {n, "five", `"five"`}, {n, "", "null"},
		{b, "on", "true"}, {b, "off", "false"}, {b, "", "null"}, {b, "yes", `"yes"`},
		{mfa, "everyone", `"everyone"`}, {mfa, "", "null"}, {mfa, "1", `"1"`},
	} {
		if got := string(c.st.FormJSON(c.text)); got != c.want {
			t.Errorf("%s %q: %s, want %s", c.st.Name, c.text, got, c.want)
		}
	}
}

// TestChoiceSetting: require_mfa takes its words (in any case) and
// nothing else, and says who must have a factor.
func TestChoiceSetting(t *testing.T) {
	st, _ := LookupSetting("require_mfa")
	var s Settings
	for _, c := range []struct {
		raw, want string
		ok        bool
	}{
		{`"masters"`, "masters", true}, {`"Everyone"`, "everyone", true}, {`"none"`, "", true}, {`null`, "", true},
		{`"all"`, "", false}, {`1`, "", false}, {`true`, "", false}, {`""`, "", false},
	} {
		s = Settings{}
		err := st.ParseJSON(&s, json.RawMessage(c.raw))
		if (err == nil) != c.ok || s.RequireMFA != c.want {
			t.Errorf("%s: %q %v", c.raw, s.RequireMFA, err)
		}
		if err != nil && !strings.Contains(err.Error(), "none, masters or everyone") {
			t.Errorf("%s: message %v", c.raw, err)
		}
	}
	for _, c := range []struct {
		set          string
		master, user bool
	}{{"", false, false}, {"none", false, false}, {"masters", true, false}, {"everyone", true, true}} {
		s := Settings{RequireMFA: c.set}
		if s.MFARequired(RoleMaster) != c.master || s.MFARequired(RoleUser) != c.user || s.MFARequired(RoleOperator) {
			t.Errorf("%q: master %v user %v", c.set, s.MFARequired(RoleMaster), s.MFARequired(RoleUser))
		}
	}
	if v := (Settings{RequireMFA: "everyone"}).Values()["require_mfa"]; v != "everyone" {
		t.Errorf("value %v", v)
	}
}
