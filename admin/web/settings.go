package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// The account settings page: one field per entry of policy.SettingTable,
// so a setting added there appears here with nothing else to write.

const sectionSettings = "settings"

// settingField is one setting as the page shows it.
type settingField struct {
	Name, Label, Doc, Default, Bounds string
	// Checkbox is set for an on/off setting.
	Checkbox bool
	// Choices, when set, are the words of a choice setting, for a select.
	Choices []string
	// Suggest, when set, are values the field offers as one types (a
	// datalist); any other valid one may be typed.
	Suggest []string
}

// zoneSuggestions are the time zones the time_zone field offers; the
// field takes any IANA name.
var zoneSuggestions = []string{"UTC", "Europe/London", "Europe/Dublin", "Europe/Lisbon", "Europe/Paris",
	"Europe/Berlin", "Europe/Madrid", "Europe/Rome", "Europe/Amsterdam", "Europe/Vienna", "Europe/Zurich",
	"Europe/Stockholm", "Europe/Warsaw", "Europe/Athens", "Europe/Helsinki", "America/New_York",
	"America/Chicago", "America/Denver", "America/Los_Angeles", "America/Toronto", "America/Sao_Paulo",
	"Asia/Tokyo", "Asia/Singapore", "Asia/Kolkata", "Australia/Sydney", "Pacific/Auckland"}

type settingsData struct {
	Fields []settingField
	Form   *form
}

func (p *Pages) settingsPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.showSettings(w, r, c, http.StatusOK, nil)
}

// showSettings shows the settings as they are, or, with f, as entered
// with its errors.
func (p *Pages) showSettings(w http.ResponseWriter, r *http.Request, c *call, status int, f *form) error {
	pg, err := p.masterPage(r, c, sectionSettings, "Settings")
	if err != nil {
		return err
	}
	if f == nil {
		set, err := p.svc.Settings(r.Context(), c.actor, pg.Account.ID)
		if err != nil {
			return err
		}
		f = newForm()
		for _, st := range policy.SettingTable {
			f.Values[st.Name] = set.Text(st)
		}
	}
	d := settingsData{Form: f}
	for _, st := range policy.SettingTable {
		sf := settingField{Name: st.Name, Label: st.Label, Doc: st.Doc,
			Default: st.DefaultText(), Bounds: st.Bounds(), Checkbox: st.Kind == policy.KindBoolean,
			Choices: st.Choices()}
		if st.Kind == policy.KindTimeZone {
			sf.Suggest = zoneSuggestions
		}
		d.Fields = append(d.Fields, sf)
	}
	pg.Data = d
	p.render(w, r, status, "settings", pg)
	return nil
}

// updateSettings sends every field of the form as one patch: the Service
// checks them all and changes all or none. An empty field means the
// default.
func (p *Pages) updateSettings(w http.ResponseWriter, r *http.Request, c *call) error {
	acct := r.PathValue("acct")
	f := newForm()
	patch := make(map[string]json.RawMessage, len(policy.SettingTable))
	for _, st := range policy.SettingTable {
		v := trim(r.PostFormValue(st.Name), 40)
		f.Values[st.Name] = v
		patch[st.Name] = st.FormJSON(v)
	}
	before, err := p.svc.Settings(r.Context(), c.actor, acct)
	if err != nil {
		return err
	}
	after, err := p.svc.UpdateSettings(r.Context(), c.actor, acct, patch)
	if err != nil {
		e := admin.AsError(err)
		if e.Code != admin.CodeInvalidSetting {
			return err
		}
		f.Errors[settingAtFault(e.Msg)] = sentence(withLabels(e.Msg))
		return p.showSettings(w, r, c, e.Status, f)
	}
	var changed []string
	for _, st := range policy.SettingTable {
		if before.Text(st) != after.Text(st) {
			changed = append(changed, fmt.Sprintf("%s: %s", st.Label, after.Text(st)))
		}
	}
	if len(changed) == 0 {
		setFlash(w, flashOK, "Nothing changed.")
	} else {
		setFlash(w, flashOK, "Saved. "+strings.Join(changed, "; ")+".")
	}
	return redirectTo(accountPath(acct, sectionSettings))
}

// settingAtFault is the setting an invalid_setting message begins with;
// "" (the form as a whole) if none does.
func settingAtFault(msg string) string {
	for _, st := range policy.SettingTable {
		if strings.HasPrefix(msg, st.Name+" ") {
			return st.Name
		}
	}
	return ""
}

// withLabels writes a message about settings with the names the page
// shows.
func withLabels(msg string) string {
	for _, st := range policy.SettingTable {
		msg = strings.ReplaceAll(msg, st.Name, `"`+st.Label+`"`)
	}
	return msg
}
