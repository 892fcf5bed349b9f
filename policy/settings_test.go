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
		text := st.Kind == KindTimeZone
		if st.Name == "" || st.Label == "" || st.Doc == "" || seen[st.Name] ||
			!text && (st.get == nil || st.set == nil) || text && (st.getText == nil || st.setText == nil) {
			t.Errorf("incomplete or repeated setting %+v", st)
		}
		seen[st.Name] = true
		if text {
			var s Settings
			if st.Value(s) != st.Default() {
				t.Errorf("%s: zero Settings give %v, want the default %v", st.Name, st.Value(s), st.Default())
			}
			if err := st.ParseText(&s, st.DefaultText()); err != nil || st.Text(s) != st.DefaultText() || st.getText(s) != "" {
				t.Errorf("%s: the default does not read back as the default: %v", st.Name, err)
			}
			continue
		}
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
		if st.Kind == KindTimeZone {
			continue // WithDefaults leaves it empty; Zone names the default
		}
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

// TestTimeZoneSetting: time_zone takes an IANA name and keeps it, UTC
// (the default) as empty, and refuses what is no zone, "Local" (each
// instance's own) and paths, naming the setting.
func TestTimeZoneSetting(t *testing.T) {
	st, _ := LookupSetting("time_zone")
	for _, c := range []struct {
		raw, stored string
		ok          bool
	}{
		{`"Europe/Berlin"`, "Europe/Berlin", true}, {`"America/Argentina/Buenos_Aires"`, "America/Argentina/Buenos_Aires", true},
		{`" Asia/Tokyo "`, "Asia/Tokyo", true}, {`"UTC"`, "", true}, {`null`, "", true},
		{`"Mars/Olympus"`, "", false}, {`"Local"`, "", false}, {`""`, "", false}, {`"../../etc/passwd"`, "", false},
		{`"/etc/localtime"`, "", false}, {`"Europe\\Berlin"`, "", false}, {`1`, "", false}, {`"utc"`, "", false},
	} {
		s := Settings{TimeZone: "Asia/Tokyo"}
		if c.ok {
			s = Settings{}
		}
		err := st.ParseJSON(&s, json.RawMessage(c.raw))
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.raw, err)
			continue
		}
		if !c.ok {
			if s.TimeZone != "Asia/Tokyo" || !strings.HasPrefix(err.Error(), "time_zone ") {
				t.Errorf("%s: kept %q, message %v", c.raw, s.TimeZone, err)
			}
			continue
		}
		if s.TimeZone != c.stored {
			t.Errorf("%s: stored %q, want %q", c.raw, s.TimeZone, c.stored)
		}
	}
	s := Settings{TimeZone: "Europe/Berlin"}
	if v := s.Values()["time_zone"]; v != "Europe/Berlin" || (Settings{}).Zone() != "UTC" || s.Zone() != "Europe/Berlin" {
		t.Errorf("value %v, zones %q %q", v, (Settings{}).Zone(), s.Zone())
	}
	if got := string(st.FormJSON(" Europe/Paris ")); got != `"Europe/Paris"` {
		t.Errorf("form %s", got)
	}
}

// FuzzSettingJSON fuzzes every setting's value as the settings patch
// sends it. Whatever the bytes: no panic; a refusal names the setting
// and leaves the settings as they were; a value taken reads back as a
// value the setting takes again, unchanged.
func FuzzSettingJSON(f *testing.F) {
	for _, s := range []string{`"90m"`, `"12h"`, `5`, `true`, `null`, `"everyone"`, `"Europe/Berlin"`, `"Local"`,
		`"../../etc/passwd"`, `"UTC"`, `""`, `-1`, `1e99`, `"9000h"`, `[]`, `{}`, "\"\xff\""} {
		for i := range SettingTable {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		st := SettingTable[int(which)%len(SettingTable)]
		before := Settings{TimeZone: "Asia/Tokyo", MaxGrants: 7}
		s := before
		if err := st.ParseJSON(&s, json.RawMessage(raw)); err != nil {
			if !strings.HasPrefix(err.Error(), st.Name+" ") || s != before {
				t.Fatalf("%s %q: %v, settings %+v", st.Name, raw, err, s)
			}
			return
		}
		b, err := json.Marshal(st.Value(s))
		if err != nil {
			t.Fatal(err)
		}
		again := Settings{}
		if err := st.ParseJSON(&again, b); err != nil || st.Value(again) != st.Value(s) {
			t.Fatalf("%s %q: the value %s does not read back: %v", st.Name, raw, b, err)
		}
	})
}
