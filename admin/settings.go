package admin

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// AccountSettings are an account's settings as the API shows them: the
// value in effect of every setting policy.SettingTable lists, and each
// one's documented default.
type AccountSettings struct {
	Settings map[string]any `json:"settings"`
	Defaults map[string]any `json:"defaults"`

	set policy.Settings
}

// Text returns a setting's value in effect as a form shows it.
func (as AccountSettings) Text(st policy.Setting) string { return st.Text(as.set) }

func accountSettings(set policy.Settings) AccountSettings {
	d := make(map[string]any, len(policy.SettingTable))
	for _, st := range policy.SettingTable {
		d[st.Name] = st.Default()
	}
	return AccountSettings{Settings: set.Values(), Defaults: d, set: set}
}

// Settings returns account's settings.
func (s *Service) Settings(ctx context.Context, a Actor, account string) (AccountSettings, error) {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return AccountSettings{}, err
	}
	var set policy.Settings
	err := s.view(ctx, account, func(tx policy.Tx) error {
		acct, err := tx.Account()
		set = acct.Settings
		return err
	})
	if err != nil {
		return AccountSettings{}, err
	}
	return accountSettings(set), nil
}

// UpdateSettings changes the settings patch names, by name, to the JSON
// values it holds (null puts one back to its default). An unknown name or
// a bad value answers 400 naming the setting, and changes nothing. The
// change is audited with the values before and after of the settings that
// changed; a patch that changes nothing is not.
func (s *Service) UpdateSettings(ctx context.Context, a Actor, account string, patch map[string]json.RawMessage) (AccountSettings, error) {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return AccountSettings{}, err
	}
	names := make([]string, 0, len(patch))
	for name := range patch {
		if _, ok := policy.LookupSetting(name); !ok {
			return AccountSettings{}, badRequest(CodeUnknownSetting, "unknown setting %q", trimName(name))
		}
		names = append(names, name)
	}
	slices.Sort(names) // the first bad one named is the same every time
	var res AccountSettings
	err := s.store.Update(ctx, account, func(tx policy.Tx) error {
		acct, err := tx.Account()
		if err != nil {
			return err
		}
		next := acct.Settings
		for _, name := range names {
			st, _ := policy.LookupSetting(name)
			if err := st.ParseJSON(&next, patch[name]); err != nil {
				return badRequest(CodeInvalidSetting, "%s", err.Error())
			}
		}
		if _, err := next.Check(); err != nil {
			return badRequest(CodeInvalidSetting, "%s", err.Error())
		}
		res = accountSettings(next)
		before, after := acct.Settings.Values(), next.Values()
		for name, v := range before {
			if after[name] == v {
				delete(before, name)
				delete(after, name)
			}
		}
		if len(after) == 0 {
			return errNoChange
		}
		acct.Settings = next
		if err := tx.PutAccount(acct); err != nil {
			return err
		}
		return tx.Audit(s.audit(a, account, "settings.update", "account/"+account, before, after))
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return AccountSettings{}, err
	}
	return res, nil
}

// trimName bounds a name that is echoed back in a message.
func trimName(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
