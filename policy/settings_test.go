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
	for _, c := range []struct {
		st         Setting
		text, want string
	}{
		{ttl, " 2h ", `"2h"`}, {ttl, "", "null"}, {ttl, "5", `"5"`},
		{n, "5", "5"}, {n, "five", `"five"`}, {n, "", "null"},
		{b, "on", "true"}, {b, "off", "false"}, {b, "", "null"}, {b, "yes", `"yes"`},
	} {
		if got := string(c.st.FormJSON(c.text)); got != c.want {
			t.Errorf("%s %q: %s, want %s", c.st.Name, c.text, got, c.want)
		}
	}
}
