package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// page is what every template gets: the frame around the page's own Data.
type page struct {
	Title string
	// Who is the person logged in; nil on the login page.
	Who *who
	// CSRF is the token every form carries.
	CSRF string
	// Nav is the menu; empty when logged out.
	Nav []navItem
	// Account is the account a master page is about; nil elsewhere.
	Account *admin.AccountView
	// AccountID is the account a master's page, or a manager's or an
	// auditor's staff or audit page, is about.
	AccountID string
	// Accounts are the accounts a parent's master may switch between;
	// empty when there is only one.
	Accounts []admin.AccountView
	// Section is the master page shown, kept by the account switcher.
	Section string
	// Zone is the IANA name of the time zone the page shows times in: the
	// account's time_zone setting; "" is UTC.
	Zone  string
	Flash *flash
	Data  any
}

type who struct {
	Account  string
	Username string
	Name     string
	Master   bool
}

type navItem struct {
	Label, Href string
	Current     bool
}

// newPage starts a page for the call: who is logged in and their menu.
func (p *Pages) newPage(c *call, title string) *page {
	pg := &page{Title: title, CSRF: c.csrf, Zone: c.actor.TimeZone}
	a := c.actor
	if a.Role == policy.RoleMaster || a.Role == policy.RoleUser {
		pg.Who = &who{Account: a.Account, Username: a.Username, Name: a.Username, Master: c.isMaster()}
		if pg.Who.Master {
			pg.Who.Name = "account holder"
		}
		if !a.MustResetPassword && !a.MustEnrollMFA {
			if c.isMaster() {
				base := "/accounts/" + a.Account
				pg.Nav = append(pg.Nav, navItem{Label: "Firewall", Href: base + "/firewall"},
					navItem{Label: "Staff", Href: base + "/users"}, navItem{Label: "Devices", Href: base + "/devices"}, navItem{Label: "Audit trail", Href: base + "/audit"},
					navItem{Label: "Settings", Href: base + "/settings"},
					navItem{Label: "Requests", Href: base + "/access-requests"}, navItem{Label: "Notifications", Href: base + "/notifications"})
			}
			if !c.isMaster() {
				pg.Nav = append(pg.Nav, staffNav(a)...)
			}
			pg.Nav = append(pg.Nav, navItem{Label: "My address", Href: "/me"}, navItem{Label: "My computers", Href: "/me/devices"})
			if !c.isMaster() {
				pg.Nav = append(pg.Nav, navItem{Label: "Request access", Href: "/me/access"})
			}
		}
		if a.MustResetPassword {
			pg.Nav = append(pg.Nav, navItem{Label: "Password", Href: "/password"})
		} else {
			pg.Nav = append(pg.Nav, navItem{Label: "Sign-in and security", Href: "/security"})
		}
	}
	return pg
}

// staffNav is the menu of a user who holds a permission: the staff page
// for manage_staff, the audit trail for view_audit. What those pages
// show and allow is decided by the Service, as for the API.
func staffNav(a admin.Actor) []navItem {
	var nav []navItem
	base := accountPath(a.Account, "")
	if a.Can(a.Account, policy.PermManageStaff) {
		nav = append(nav, navItem{Label: "Staff", Href: base + sectionUsers})
	}
	if a.Can(a.Account, policy.PermViewAudit) {
		nav = append(nav, navItem{Label: "Audit trail", Href: base + sectionAudit})
	}
	return nav
}

// current marks the menu item whose link is href.
func (pg *page) current(href string) {
	for i := range pg.Nav {
		pg.Nav[i].Current = pg.Nav[i].Href == href
	}
}

// render writes a page with status, all at once: a template that fails
// leaves an error instead of half a page.
func (p *Pages) render(w http.ResponseWriter, r *http.Request, status int, name string, pg *page) {
	if pg.Flash == nil && r.Method == http.MethodGet && status == http.StatusOK {
		pg.Flash = takeFlash(w, r)
	}
	var buf bytes.Buffer
	t, ok := p.zoned(pg.Zone).tmpl[name]
	var err error
	if !ok {
		err = fmt.Errorf("no template %q", name)
	} else {
		err = t.ExecuteTemplate(&buf, "layout", pg)
	}
	if err != nil {
		p.log.Error("render page", zap.String("template", name), zap.Error(err))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte("internal error; it has been logged\n"))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// zoned is one time zone's clock and its own copies of the templates,
// whose time functions write that zone's times.
type zoned struct {
	clock clock
	tmpl  map[string]*template.Template
}

// zoned returns the templates of the time zone named name, cloning them
// from p.tmpl the first time the zone is asked for. Names are checked
// before they are stored (policy.LoadTimeZone), so there are at most as
// many as the tz database has; one that no longer loads shows UTC.
func (p *Pages) zoned(name string) *zoned {
	if name == "" {
		name = policy.DefaultTimeZone
	}
	p.zoneMu.Lock()
	defer p.zoneMu.Unlock()
	if z, ok := p.zones[name]; ok {
		return z
	}
	loc, err := policy.LoadTimeZone(name)
	if err != nil {
		p.log.Warn("time zone unknown here, pages show UTC", zap.String("zone", name), zap.Error(err))
		loc = time.UTC
	}
	z := &zoned{clock: clock{loc: loc, now: p.opts.Now}, tmpl: make(map[string]*template.Template, len(p.tmpl))}
	for base, t := range p.tmpl {
		c, err := t.Clone() // p.tmpl are never executed, so this cannot fail
		if err != nil {
			panic(fmt.Sprintf("web: clone template %s: %v", base, err))
		}
		z.tmpl[base] = c.Funcs(p.funcs(z.clock))
	}
	p.zones[name] = z
	return z
}

// clock returns the clock of the time zone named zone ("" is UTC).
func (p *Pages) clock(zone string) clock { return p.zoned(zone).clock }

// parseTemplates parses each page with the layout, once.
func (p *Pages) parseTemplates() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(p.funcs(clock{loc: time.UTC, now: p.opts.Now})).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("web: parse %s: %w", n, err)
		}
		out[base] = t
	}
	return out, nil
}

// funcs are the template helpers; k writes the times.
func (p *Pages) funcs(k clock) template.FuncMap {
	return template.FuncMap{
		"css":  func() string { return p.static["style.css"].url },
		"icon": func() string { return p.static["icon.svg"].url },
		"js":   func() string { return p.static["passkey.js"].url },
		"passkeyForm": func(csrf, ticket string, master, only bool) passkeyForm {
			return passkeyForm{CSRF: csrf, Ticket: ticket, Master: master, Only: only}
		},
		"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"abs":   k.short,
		"abss":  func(t time.Time) string { return k.short(t) + t.In(k.loc).Format(":05") },
		"zone":  k.zone,
		"abbr":  func(t time.Time) string { return t.In(k.loc).Format("MST") },
		"local": k.local,
		"rel":   func(t time.Time) string { return relative(t, k.now()) },
		"who":   describeActor,
		"action": func(a string) string {
			if s, ok := actionLabels[a]; ok {
				return s
			}
			return a
		},
		"details": details,
		"plural": func(n any, one, many string) string {
			s := fmt.Sprint(n)
			if s == "1" {
				return "1 " + one
			}
			return s + " " + many
		},
		"sentence": sentence,
	}
}

// clock writes times in one time zone: the one place pages format a
// time.
type clock struct {
	loc *time.Location
	now func() time.Time
}

// short writes t in the clock's time zone, without the year when it is
// this year's and without the zone, which the footer names: "2 Jan 21:04".
func (k clock) short(t time.Time) string {
	t = t.In(k.loc)
	if t.Year() == k.now().In(k.loc).Year() {
		return t.Format("2 Jan 15:04")
	}
	return t.Format("2 Jan 2006 15:04")
}

// when says when t is, for a sentence: "2 Jan 21:04 CET (in 12 hours)".
func (k clock) when(t time.Time) string {
	return k.short(t) + " " + t.In(k.loc).Format("MST") + " (" + relative(t, k.now()) + ")"
}

// zone names the time zone, as the footer says it: "UTC", or
// "Europe/Berlin (CET)".
func (k clock) zone() string {
	name, abbr := k.loc.String(), k.now().In(k.loc).Format("MST")
	if name == abbr {
		return name
	}
	return name + " (" + abbr + ")"
}

// localLayout is how a form's datetime-local field writes a date and time.
const localLayout = "2006-01-02T15:04"

// local writes t for a datetime-local field, in the clock's zone; "" for
// the zero time.
func (k clock) local(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(k.loc).Format(localLayout)
}

// relative says how long ago or how soon t is, roughly.
func relative(t, now time.Time) string {
	d := t.Sub(now)
	future := d > 0
	if !future {
		d = -d
	}
	// Rounded to the nearest unit: a grant made a moment ago for 12 hours
	// runs out "in 12 hours", not "in 11 hours".
	round := func(unit time.Duration) int { return int((d + unit/2) / unit) }
	var s string
	switch {
	case d < time.Minute:
		if future {
			return "in under a minute"
		}
		return "just now"
	case d < time.Hour-30*time.Second:
		s = count(round(time.Minute), "minute")
	case d < 47*time.Hour+30*time.Minute:
		s = count(round(time.Hour), "hour")
	case d < 59*24*time.Hour+12*time.Hour:
		s = count(round(24*time.Hour), "day")
	case d < 729*24*time.Hour:
		s = count(round(30*24*time.Hour), "month")
	default:
		s = count(round(365*24*time.Hour), "year")
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

func count(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// describeActor names who did something, as the audit trail and rule
// records name them.
func describeActor(name string) string {
	switch {
	case name == policy.RoleMaster:
		return "account holder"
	case strings.HasPrefix(name, "master@"):
		return "account holder of " + strings.TrimPrefix(name, "master@")
	}
	return name
}

// actionLabels say what audit actions mean.
var actionLabels = map[string]string{
	"account.create":                "account created",
	"login.success":                 "logged in",
	"login.failure":                 "failed to log in",
	"logout":                        "logged out",
	"password.change":               "changed the password",
	"password.change_failed":        "failed to change the password",
	"grant.create":                  "unblocked an address",
	"grant.renew":                   "renewed an unblocked address",
	"grant.delete":                  "removed an unblocked address",
	"firewall.mode":                 "changed the firewall mode",
	"rule.add":                      "added a rule",
	"rule.delete":                   "deleted a rule",
	"user.create":                   "added a user",
	"user.update":                   "changed a user",
	"user.offboard":                 "offboarded a user",
	"user.temporary_password":       "gave a temporary password",
	"account.master_password_reset": "reset the master password",
	"users.reset_passwords":         "required new passwords from everyone",
}

// details renders an audit entry's before and after as indented JSON.
func details(e policy.AuditEntry) string {
	var b strings.Builder
	for _, part := range []struct {
		label string
		raw   json.RawMessage
	}{{"before", e.Before}, {"after", e.After}} {
		if len(part.raw) == 0 {
			continue
		}
		var out bytes.Buffer
		if json.Indent(&out, part.raw, "", "  ") != nil {
			out.Reset()
			out.Write(part.raw)
		}
		fmt.Fprintf(&b, "%s: %s\n", part.label, out.String())
	}
	return strings.TrimSpace(b.String())
}

// staticFile is an embedded asset and the versioned URL pages link it by.
type staticFile struct {
	body        []byte
	contentType string
	hash        string
	url         string
}

func loadStatic() (map[string]staticFile, error) {
	out := map[string]staticFile{}
	err := fs.WalkDir(staticFS, "static", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:8])
		base := path.Base(name)
		ct := mime.TypeByExtension(path.Ext(base))
		switch path.Ext(base) {
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		case ".js":
			ct = "text/javascript; charset=utf-8"
		}
		out[base] = staticFile{body: b, contentType: ct, hash: h, url: "/static/" + base + "?v=" + h}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: static files: %w", err)
	}
	for _, need := range []string{"style.css", "icon.svg", "passkey.js"} {
		if _, ok := out[need]; !ok {
			return nil, fmt.Errorf("web: static file %s missing", need)
		}
	}
	return out, nil
}

// staticFile serves the stylesheet and icon. The URL carries the content's
// hash, so a matching one may be cached for good.
func (p *Pages) staticFile(w http.ResponseWriter, r *http.Request, _ *call) error {
	f, ok := p.static[r.PathValue("file")]
	if !ok {
		return errNotFound
	}
	h := w.Header()
	if r.URL.Query().Get("v") == f.hash {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", `"`+f.hash+`"`)
	if r.Header.Get("If-None-Match") == `"`+f.hash+`"` {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.Write(f.body)
	return nil
}
