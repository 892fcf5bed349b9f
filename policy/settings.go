package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SettingKind is the type of a setting's value, which fixes how it is
// written in JSON and in a form.
type SettingKind string

// Setting kinds.
const (
	// KindDuration is a duration, a JSON string like "90m" or "12h".
	KindDuration SettingKind = "duration"
	// KindInteger is a whole number, a JSON number.
	KindInteger SettingKind = "integer"
	// KindBoolean is on or off, a JSON boolean; its default must be off,
	// the zero value.
	KindBoolean SettingKind = "boolean"
	// KindChoice is one of a few words, a JSON string; its default is the
	// first.
	KindChoice SettingKind = "choice"
	// KindTimeZone is an IANA time zone name such as "Europe/Berlin", a
	// JSON string; its value is kept as text, not as a number.
	KindTimeZone SettingKind = "time_zone"
)

// Setting describes one per-account setting. SettingTable is the one place
// a setting's name, default, bounds and meaning are written down: the admin
// API, the settings page and docs/admin-api.md all come from it, so a new
// setting is one new entry there plus its field in Settings.
type Setting struct {
	// Name is the setting's key in the API and the form field's name.
	Name string
	// Label names it on the settings page.
	Label string
	// Doc says what it does, for the page and the documentation.
	Doc  string
	Kind SettingKind
	// get returns the value stored in s; zero means the default.
	get func(s Settings) int64
	// set stores v in s; zero stores "the default".
	set func(s *Settings, v int64)
	// def is the default; min and max bound a value that is set.
	def, min, max int64
	// values, if set, are the only values allowed.
	values []int64
	// choices are a KindChoice setting's words; its value is the index.
	choices []string
	// getText and setText hold a KindTimeZone setting, whose value is a
	// name rather than a number (get and set are nil); "" means defText.
	getText func(s Settings) string
	setText func(s *Settings, v string)
	defText string
}

// SettingTable lists every per-account setting, in the order they are
// shown.
var SettingTable = []Setting{
	{
		Name: "grant_ttl_default", Label: "Unblock lasts",
		Doc:  "How long a user's unblock lasts when they do not say. At most grant_ttl_max.",
		Kind: KindDuration, def: int64(DefaultGrantTTL), min: int64(time.Minute), max: int64(maxGrantTTL),
		get: func(s Settings) int64 { return int64(s.GrantTTLDefault) },
		set: func(s *Settings, v int64) { s.GrantTTLDefault = Duration(v) },
	},
	{
		Name: "grant_ttl_max", Label: "Longest unblock",
		Doc:  "The longest unblock a user may ask for.",
		Kind: KindDuration, def: int64(DefaultGrantTTLMax), min: int64(time.Minute), max: int64(maxGrantTTL),
		get: func(s Settings) int64 { return int64(s.GrantTTLMax) },
		set: func(s *Settings, v int64) { s.GrantTTLMax = Duration(v) },
	},
	{
		Name: "max_grants", Label: "Unblocked addresses per user",
		Doc:  "How many addresses each user may have unblocked at once; the oldest goes when a new one would exceed it.",
		Kind: KindInteger, def: DefaultMaxGrants, min: 1, max: maxMaxGrants,
		get: func(s Settings) int64 { return int64(s.MaxGrants) },
		set: func(s *Settings, v int64) { s.MaxGrants = int(v) },
	},
	{
		Name: "device_approval", Label: "New devices need approval",
		Doc:  "A newly enrolled device waits, pending, until a master approves it.",
		Kind: KindBoolean, def: 0, min: 0, max: 1,
		get: func(s Settings) int64 { return boolInt(s.DeviceApproval) },
		set: func(s *Settings, v int64) { s.DeviceApproval = v == 1 },
	},
	{
		Name: "lease_ttl", Label: "Device lease lasts",
		Doc:  "How long a device's lease of its address lasts after its last renewal; the connector renews it while the application is connected.",
		Kind: KindDuration, def: int64(DefaultLeaseTTL), min: int64(5 * time.Minute), max: int64(24 * time.Hour),
		get: func(s Settings) int64 { return int64(s.LeaseTTL) },
		set: func(s *Settings, v int64) { s.LeaseTTL = Duration(v) },
	},
	{
		Name: "ipv6_grant_prefix", Label: "IPv6 network of an unblock or lease",
		Doc:  "The length of the IPv6 network an unblock or a lease covers: 64, because privacy addresses change within it, or 128 for the one address.",
		Kind: KindInteger, def: DefaultIPv6Grant, min: 64, max: 128, values: []int64{64, 128},
		get: func(s Settings) int64 { return int64(s.IPv6GrantPrefix) },
		set: func(s *Settings, v int64) { s.IPv6GrantPrefix = int(v) },
	},
	{
		Name: "require_device", Label: "Only known devices reach the application",
		Doc:  "On tls listeners, a client whose address is allowed must also present an active device's certificate (gatekeeper connect -identity) of a user with desktop access; a denied address is still refused before that.",
		Kind: KindBoolean, def: 0, min: 0, max: 1,
		get: func(s Settings) int64 { return boolInt(s.RequireDevice) },
		set: func(s *Settings, v int64) { s.RequireDevice = v == 1 },
	},
	{
		Name: "require_mfa", Label: "Second factor required for",
		Doc:  "Who must use a second factor (an authenticator app) to log in: none, masters, or everyone. Someone who must and has none is taken to enrolment after the password and can do nothing else until done.",
		Kind: KindChoice, choices: MFARequirements, def: 0, min: 0, max: int64(len(MFARequirements) - 1),
		get: func(s Settings) int64 { return int64(max(slices.Index(MFARequirements, s.RequireMFA), 0)) },
		set: func(s *Settings, v int64) {
			s.RequireMFA = ""
			if v > 0 {
				s.RequireMFA = MFARequirements[v]
			}
		},
	},
	{
		Name: "password_max_age", Label: "Passwords expire after",
		Doc:  "Once a password is older than this, its owner must choose a new one at the next login. 0s (the default) means never.",
		Kind: KindDuration, def: 0, min: 0, max: int64(maxGrantTTL),
		get: func(s Settings) int64 { return int64(s.PasswordMaxAge) },
		set: func(s *Settings, v int64) { s.PasswordMaxAge = Duration(v) },
	},
	{
		Name: "unblock", Label: "Unblocking needs approval",
		Doc:  "self: a user unblocks their own address at once. approval: the user asks, a master approves or denies, and the masters are notified.",
		Kind: KindChoice, def: 0, min: 0, max: 1, choices: []string{UnblockSelf, UnblockApproval},
		get: func(s Settings) int64 {
			return int64(max(0, slices.Index([]string{UnblockSelf, UnblockApproval}, s.Unblock)))
		},
		set: func(s *Settings, v int64) {
			s.Unblock = ""
			if v == 1 {
				s.Unblock = UnblockApproval
			}
		},
	},
	{
		Name: "review_every", Label: "Access review every",
		Doc:  "How often the master is asked to confirm every active user, device and rule added by hand; an unfinished one is overdue.",
		Kind: KindDuration, def: int64(DefaultReviewEvery), min: int64(24 * time.Hour), max: int64(maxReview),
		get: func(s Settings) int64 { return int64(s.ReviewEvery) },
		set: func(s *Settings, v int64) { s.ReviewEvery = Duration(v) },
	},
	{
		Name: "stale_after", Label: "Unused for this long is marked for removal",
		Doc:  "In an access review, users, devices and rules added by hand that were not used for this long are marked for removal.",
		Kind: KindDuration, def: int64(DefaultStaleAfter), min: int64(24 * time.Hour), max: int64(maxReview),
		get: func(s Settings) int64 { return int64(s.StaleAfter) },
		set: func(s *Settings, v int64) { s.StaleAfter = Duration(v) },
	},
	{
		Name: "time_zone", Label: "Time zone",
		Doc:  "The time zone the pages show times in, and in which a last day entered as a date and time on the staff page is read. The API always writes RFC 3339.",
		Kind: KindTimeZone, defText: DefaultTimeZone,
		getText: func(s Settings) string { return s.TimeZone },
		setText: func(s *Settings, v string) { s.TimeZone = v },
	},
}

// DefaultTimeZone is the time_zone setting's default.
const DefaultTimeZone = "UTC"

// maxTimeZone bounds a time zone name; the longest IANA name is 32 bytes.
const maxTimeZone = 64

// LoadTimeZone returns the zone an IANA name names: a name from the tz
// database or "UTC", never "Local" (which would be each instance's own)
// and never a path. It reads the tz database: callers keep the result.
func LoadTimeZone(name string) (*time.Location, error) {
	if name == "" || name == "Local" || len(name) > maxTimeZone || strings.ContainsAny(name, "\\\x00") {
		return nil, fmt.Errorf("%q is not a time zone name", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q is not a time zone name", name)
	}
	return loc, nil
}

// Zone returns the name of the account's time zone: the time_zone
// setting, DefaultTimeZone when unset.
func (s Settings) Zone() string {
	if s.TimeZone == "" {
		return DefaultTimeZone
	}
	return s.TimeZone
}

// MFARequirements are the values of require_mfa, the default first.
var MFARequirements = []string{MFANone, MFAMasters, MFAEveryone}

// Values of require_mfa.
const (
	MFANone     = "none"
	MFAMasters  = "masters"
	MFAEveryone = "everyone"
)

// MFARequired reports whether s asks a person of role to have a second
// factor.
func (s Settings) MFARequired(role string) bool {
	switch s.RequireMFA {
	case MFAEveryone:
		return role == RoleMaster || role == RoleUser
	case MFAMasters:
		return role == RoleMaster
	}
	return false
}

// Values of the unblock setting.
const (
	UnblockSelf     = "self"
	UnblockApproval = "approval"
)

// maxReview bounds review_every and stale_after: two years.
const maxReview = 2 * 365 * 24 * time.Hour

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Bounds of the grant settings.
const (
	maxGrantTTL  = 365 * 24 * time.Hour
	maxMaxGrants = 100
)

// Choices returns the words of a KindChoice setting, the default first;
// nil for other kinds.
func (st Setting) Choices() []string { return slices.Clone(st.choices) }

// LookupSetting returns the setting named name.
func LookupSetting(name string) (Setting, bool) {
	for _, st := range SettingTable {
		if st.Name == name {
			return st, true
		}
	}
	return Setting{}, false
}

// Default returns the default value in its JSON form.
func (st Setting) Default() any {
	if st.Kind == KindTimeZone {
		return st.defText
	}
	return st.jsonValue(st.def)
}

// Value returns the value in effect in s, the default when s holds none,
// in its JSON form: a duration string or a number.
func (st Setting) Value(s Settings) any {
	if st.Kind == KindTimeZone {
		return st.effectiveText(s)
	}
	return st.jsonValue(st.effective(s))
}

// Text returns the value in effect in s as a form shows it ("12h", "3").
func (st Setting) Text(s Settings) string {
	if st.Kind == KindTimeZone {
		return st.effectiveText(s)
	}
	return st.text(st.effective(s))
}

// DefaultText returns the default as a form shows it.
func (st Setting) DefaultText() string {
	if st.Kind == KindTimeZone {
		return st.defText
	}
	return st.text(st.def)
}

// Bounds describes the values st accepts, for messages and documentation.
func (st Setting) Bounds() string {
	switch {
	case st.Kind == KindBoolean:
		return "on or off"
	case st.Kind == KindTimeZone:
		return "an IANA time zone name such as Europe/Berlin or America/New_York"
	case st.Kind == KindChoice:
		return strings.Join(st.choices[:len(st.choices)-1], ", ") + " or " + st.choices[len(st.choices)-1]
	case st.values != nil:
		out := ""
		for i, v := range st.values {
			switch {
			case i == 0:
			case i == len(st.values)-1:
				out += " or "
			default:
				out += ", "
			}
			out += st.text(v)
		}
		return out
	}
	return st.text(st.min) + " to " + st.text(st.max)
}

func (st Setting) effectiveText(s Settings) string {
	if v := st.getText(s); v != "" {
		return v
	}
	return st.defText
}

func (st Setting) effective(s Settings) int64 {
	if v := st.get(s); v > 0 {
		return v
	}
	return st.def
}

func (st Setting) jsonValue(v int64) any {
	switch st.Kind {
	case KindDuration:
		return shortDuration(time.Duration(v))
	case KindBoolean:
		return v == 1
	case KindChoice:
		return st.choices[v]
	}
	return v
}

func (st Setting) text(v int64) string {
	switch st.Kind {
	case KindDuration:
		return shortDuration(time.Duration(v))
	case KindBoolean:
		if v == 1 {
			return "on"
		}
		return "off"
	case KindChoice:
		return st.choices[v]
	}
	return strconv.FormatInt(v, 10)
}

// shortDuration writes 12h0m0s as 12h and 1h30m0s as 1h30m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ParseJSON checks a value sent to the API and stores it in s. JSON null
// puts the setting back to its default. The error names the setting and
// what it accepts, never anything else.
func (st Setting) ParseJSON(s *Settings, raw json.RawMessage) error {
	if string(raw) == "null" {
		if st.Kind == KindTimeZone {
			st.setText(s, "")
			return nil
		}
		st.set(s, 0)
		return nil
	}
	switch st.Kind {
	case KindTimeZone:
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return fmt.Errorf("%s must be a string, %s", st.Name, st.Bounds())
		}
		return st.ParseText(s, text)
	case KindDuration:
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return fmt.Errorf("%s must be a duration string like \"90m\" or \"12h\", from %s", st.Name, st.Bounds())
		}
		return st.ParseText(s, text)
	case KindChoice:
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return fmt.Errorf("%s must be %s", st.Name, st.Bounds())
		}
		return st.ParseText(s, text)
	case KindBoolean:
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return fmt.Errorf("%s must be true or false", st.Name)
		}
		st.set(s, boolInt(b))
		return nil
	default:
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil {
			return fmt.Errorf("%s must be a whole number from %s", st.Name, st.Bounds())
		}
		return st.ParseText(s, strconv.FormatInt(n, 10))
	}
}

// FormJSON turns what a form field holds into the JSON value ParseJSON
// takes: an empty field means the default (null), a number stays a
// number, anything else is a string, which a duration setting parses and
// a number setting refuses.
func (st Setting) FormJSON(text string) json.RawMessage {
	text = strings.TrimSpace(text)
	if text == "" {
		return json.RawMessage("null")
	}
	if _, err := strconv.ParseInt(text, 10, 64); err == nil && st.Kind == KindInteger {
		return json.RawMessage(text)
	}
	if st.Kind == KindBoolean && (text == "on" || text == "off") { // a checkbox, or Text's form
		return json.RawMessage(strconv.FormatBool(text == "on"))
	}
	b, _ := json.Marshal(text) // a string always marshals
	return b
}

// ParseText checks a value entered in a form and stores it in s.
func (st Setting) ParseText(s *Settings, text string) error {
	text = strings.TrimSpace(text)
	var v int64
	switch st.Kind {
	case KindTimeZone:
		loc, err := LoadTimeZone(text)
		if err != nil {
			return fmt.Errorf("%s must be %s", st.Name, st.Bounds())
		}
		if name := loc.String(); name != st.defText {
			st.setText(s, name)
		} else {
			st.setText(s, "")
		}
		return nil
	case KindDuration:
		d, err := time.ParseDuration(text)
		if err != nil {
			return fmt.Errorf("%s must be a duration like \"90m\" or \"12h\", from %s", st.Name, st.Bounds())
		}
		v = int64(d)
	case KindChoice:
		i := slices.Index(st.choices, strings.ToLower(text))
		if i < 0 {
			return fmt.Errorf("%s must be %s", st.Name, st.Bounds())
		}
		v = int64(i)
	case KindBoolean:
		switch text {
		case "on", "true":
			v = 1
		case "off", "false":
		default:
			return fmt.Errorf("%s must be on or off", st.Name)
		}
	default:
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return fmt.Errorf("%s must be a whole number from %s", st.Name, st.Bounds())
		}
		v = n
	}
	if v < st.min || v > st.max || st.values != nil && !slices.Contains(st.values, v) {
		if st.values != nil {
			return fmt.Errorf("%s must be %s", st.Name, st.Bounds())
		}
		return fmt.Errorf("%s must be from %s", st.Name, st.Bounds())
	}
	st.set(s, v)
	return nil
}

// Check reports a combination of values that cannot hold together, naming
// the setting at fault.
func (s Settings) Check() (name string, err error) {
	def, max := time.Duration(s.GrantTTLDefault), time.Duration(s.GrantTTLMax)
	if def <= 0 {
		def = DefaultGrantTTL
	}
	if max <= 0 {
		max = DefaultGrantTTLMax
	}
	if def > max {
		return "grant_ttl_default", fmt.Errorf("grant_ttl_default (%s) may not be longer than grant_ttl_max (%s)",
			shortDuration(def), shortDuration(max))
	}
	return "", nil
}

// Values returns every setting's value in effect in s, by name, in JSON
// form.
func (s Settings) Values() map[string]any {
	m := make(map[string]any, len(SettingTable))
	for _, st := range SettingTable {
		m[st.Name] = st.Value(s)
	}
	return m
}
