package web

import (
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// The account holder's pages: firewall, staff, audit trail. Each starts
// with Service.Account, which decides who may see the account (403 for a
// user, 404 for anyone else's), exactly as every Service call after it
// does again.

// Master page sections, for the menu and the account switcher.
const (
	sectionFirewall = "firewall"
	sectionUsers    = "users"
	sectionAudit    = "audit"
)

// masterPage starts a page about the account in the path: the account as
// it is now (its name, and its mode for the banner), the menu pointing at
// it, and the accounts a parent's master may switch to.
func (p *Pages) masterPage(r *http.Request, c *call, section, title string) (*page, error) {
	acct, err := p.svc.Account(r.Context(), c.actor, r.PathValue("acct"))
	if err != nil {
		return nil, err
	}
	pg := p.newPage(c, title)
	pg.Account, pg.AccountID, pg.Section, pg.Zone = &acct, acct.ID, section, acct.Settings.Zone()
	own, base := "/accounts/"+c.actor.Account+"/", "/accounts/"+acct.ID+"/"
	for i := range pg.Nav {
		if rest, ok := strings.CutPrefix(pg.Nav[i].Href, own); ok {
			pg.Nav[i].Href = base + rest
		}
	}
	pg.current(base + section)
	accts, err := p.svc.ManagedAccounts(r.Context(), c.actor)
	if err != nil {
		return nil, err
	}
	if len(accts) > 1 {
		pg.Accounts = accts
	}
	return pg, nil
}

// pageStart begins a page about the account in the path; masterPage and
// staffPage are the two.
type pageStart func(r *http.Request, c *call, section, title string) (*page, error)

// staffPage starts a page of the staff list or the audit trail: for the
// master, masterPage; for a user, a page of the account in the path, in
// their own account's time zone. Whether the user may see or change
// anything on it is decided by the Service calls that fill it, exactly
// as for the API: a user holding manage_staff manages employees, one
// holding view_audit reads the audit trail, anyone else is refused (and
// another account is not found).
func (p *Pages) staffPage(r *http.Request, c *call, section, title string) (*page, error) {
	if c.isMaster() {
		return p.masterPage(r, c, section, title)
	}
	pg := p.newPage(c, title)
	pg.AccountID, pg.Section = r.PathValue("acct"), section
	pg.current(accountPath(pg.AccountID, section))
	return pg, nil
}

func accountPath(acct, rest string) string { return "/accounts/" + url.PathEscape(acct) + "/" + rest }

// accountHome is the firewall page.
func (p *Pages) accountHome(w http.ResponseWriter, r *http.Request, c *call) error {
	return redirectTo(accountPath(r.PathValue("acct"), sectionFirewall))
}

// switchAccount is the account switcher's target: the same section of
// another account. Whether the master may see it is the page's to decide.
func (p *Pages) switchAccount(w http.ResponseWriter, r *http.Request, c *call) error {
	if !c.isMaster() {
		return &admin.Error{Status: http.StatusForbidden, Code: admin.CodeForbidden, Msg: "you are not allowed to do this"}
	}
	q := r.URL.Query()
	acct, section := q.Get("account"), q.Get("section")
	if !policy.ValidAccountID(acct) {
		return errNotFound
	}
	switch section {
	case sectionFirewall, sectionUsers, sectionAudit, sectionSettings, sectionDevices:
	default:
		section = sectionFirewall
	}
	return redirectTo(accountPath(acct, section))
}

// ttlChoice is one entry of the expiry menus.
type ttlChoice struct{ Value, Label string }

var ruleTTLs = []ttlChoice{
	{"", "Never"}, {"1h", "In 1 hour"}, {"8h", "In 8 hours"}, {"24h", "In 1 day"}, {"168h", "In 1 week"},
	{"720h", "In 30 days"}, {"2160h", "In 90 days"}, {"8760h", "In 1 year"},
}

type firewallData struct {
	Firewall admin.Firewall
	// Rules are the manual rules, Grants the users' own addresses.
	Rules, Grants []policy.Rule
	ClientIP      string
	TTLs          []ttlChoice
	// Form is the add-a-rule form, ModeForm the mode form.
	Form, ModeForm *form
}

func (p *Pages) firewallPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.showFirewall(w, r, c, http.StatusOK, newForm(), newForm())
}

func (p *Pages) showFirewall(w http.ResponseWriter, r *http.Request, c *call, status int, ruleForm, modeForm *form) error {
	pg, err := p.masterPage(r, c, sectionFirewall, "Firewall")
	if err != nil {
		return err
	}
	fw, err := p.svc.Firewall(r.Context(), c.actor, pg.Account.ID)
	if err != nil {
		return err
	}
	pg.Account.Mode = fw.Mode
	d := firewallData{Firewall: fw, ClientIP: c.ip.String(), TTLs: ruleTTLs, Form: ruleForm, ModeForm: modeForm}
	for _, rl := range fw.Rules {
		if rl.Source == policy.SourceUnblock {
			d.Grants = append(d.Grants, rl)
		} else {
			d.Rules = append(d.Rules, rl)
		}
	}
	if _, ok := ruleForm.Values["ttl"]; !ok {
		ruleForm.Values["ttl"] = ""
	}
	pg.Data = d
	p.render(w, r, status, "firewall", pg)
	return nil
}

var modeFields = fields{admin.CodeInvalidRequest: "mode"}

// setMode changes the firewall mode. Turning it off needs the warning page
// first: the Service refuses it without confirm, as the API does, and the
// refusal is answered with the page that asks for it.
func (p *Pages) setMode(w http.ResponseWriter, r *http.Request, c *call) error {
	acct := r.PathValue("acct")
	mode := r.PostFormValue("mode")
	res, err := p.svc.SetMode(r.Context(), c.actor, acct, mode, r.PostFormValue("confirm") == "yes")
	if err != nil {
		if admin.AsError(err).Code == admin.CodeConfirmationRequired {
			pg, err := p.masterPage(r, c, sectionFirewall, "Turn the firewall off?")
			if err != nil {
				return err
			}
			p.render(w, r, http.StatusOK, "confirm_off", pg)
			return nil
		}
		f := newForm()
		status, ok := modeFields.place(w, f, err)
		if !ok {
			return err
		}
		return p.showFirewall(w, r, c, status, newForm(), f)
	}
	kind, msg := flashOK, ""
	switch res.Mode {
	case policy.ModeOn:
		msg = "The firewall is on: only the addresses listed here can connect."
	case policy.ModeMonitor:
		kind, msg = flashWarn, "The firewall is in monitor mode: every address can connect, and the ones it would block are logged."
	case policy.ModeOff:
		kind, msg = flashWarn, "The firewall is off: every address can connect."
	}
	if res.Previous == res.Mode {
		msg = "Nothing changed. " + msg
	}
	setFlash(w, kind, msg)
	return redirectTo(accountPath(acct, sectionFirewall))
}

var ruleFields = fields{
	admin.CodeInvalidCIDR: "cidr", admin.CodeTooBroad: "cidr", admin.CodeExists: "cidr",
	admin.CodeInvalidTTL: "ttl", "field:note": "note",
}

type confirmRuleData struct {
	Prefix    string
	Addresses string
	Form      *form
}

// addRule adds a manual rule. A network broader than /16 (IPv4) or /32
// (IPv6) is refused by the Service without confirm; the answer is a page
// that says how many addresses that is and asks.
func (p *Pages) addRule(w http.ResponseWriter, r *http.Request, c *call) error {
	acct := r.PathValue("acct")
	f := newForm()
	f.Values["cidr"] = trim(r.PostFormValue("cidr"), 100)
	f.Values["note"] = r.PostFormValue("note")
	f.Values["ttl"] = trim(r.PostFormValue("ttl"), 20)
	n := admin.NewRule{CIDR: f.Values["cidr"], Note: f.Values["note"], Confirm: r.PostFormValue("confirm") == "yes"}
	if v := f.Values["ttl"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.Errors["ttl"] = `A duration must be a string like "90m" or "12h".`
			return p.showFirewall(w, r, c, http.StatusBadRequest, f, newForm())
		}
		n.TTL = d
	}
	rule, err := p.svc.AddRule(r.Context(), c.actor, acct, n)
	if err != nil {
		if admin.AsError(err).Code == admin.CodeConfirmationRequired {
			return p.confirmRule(w, r, c, f)
		}
		status, ok := ruleFields.place(w, f, err)
		if !ok {
			return err
		}
		return p.showFirewall(w, r, c, status, f, newForm())
	}
	msg := "Added " + rule.Prefix.String()
	if rule.Note != "" {
		msg += " (" + rule.Note + ")"
	}
	if !rule.ExpiresAt.IsZero() {
		msg += ", until " + p.clock(c.actor.TimeZone).when(rule.ExpiresAt)
	}
	setFlash(w, flashOK, msg+".")
	return redirectTo(accountPath(acct, sectionFirewall))
}

func (p *Pages) confirmRule(w http.ResponseWriter, r *http.Request, c *call, f *form) error {
	pg, err := p.masterPage(r, c, sectionFirewall, "Allow a whole network?")
	if err != nil {
		return err
	}
	pfx, err := policy.ParsePrefix(f.Values["cidr"])
	if err != nil {
		return err // the Service parsed it a moment ago
	}
	bits := pfx.Addr().BitLen() - pfx.Bits()
	addrs := new(big.Int).Lsh(big.NewInt(1), uint(bits))
	pg.Data = confirmRuleData{Prefix: pfx.String(), Addresses: groupDigits(addrs.String()), Form: f}
	p.render(w, r, http.StatusOK, "confirm_rule", pg)
	return nil
}

// groupDigits writes 16777216 as 16,777,216.
func groupDigits(s string) string {
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}

type deleteRuleData struct {
	Rule policy.Rule
	Mode policy.Mode
}

// findRule returns one live rule of the account in the path.
func (p *Pages) findRule(r *http.Request, c *call, acct string) (policy.Rule, policy.Mode, error) {
	id, err := ruleID(r)
	if err != nil {
		return policy.Rule{}, "", err
	}
	fw, err := p.svc.Firewall(r.Context(), c.actor, acct)
	if err != nil {
		return policy.Rule{}, "", err
	}
	i := slices.IndexFunc(fw.Rules, func(rl policy.Rule) bool { return rl.ID == id })
	if i < 0 {
		return policy.Rule{}, "", &admin.Error{Status: http.StatusNotFound, Code: admin.CodeNotFound,
			Msg: "this rule does not exist any more; perhaps it expired or someone deleted it"}
	}
	return fw.Rules[i], fw.Mode, nil
}

// deleteRulePage asks before deleting a rule, saying what it lets in.
func (p *Pages) deleteRulePage(w http.ResponseWriter, r *http.Request, c *call) error {
	pg, err := p.masterPage(r, c, sectionFirewall, "Delete this rule?")
	if err != nil {
		return err
	}
	rule, mode, err := p.findRule(r, c, pg.Account.ID)
	if err != nil {
		return err
	}
	pg.Data = deleteRuleData{Rule: rule, Mode: mode}
	p.render(w, r, http.StatusOK, "confirm_delete_rule", pg)
	return nil
}

func (p *Pages) deleteRule(w http.ResponseWriter, r *http.Request, c *call) error {
	acct := r.PathValue("acct")
	rule, _, err := p.findRule(r, c, acct)
	if err != nil {
		return err
	}
	if err := p.svc.DeleteRule(r.Context(), c.actor, acct, rule.ID); err != nil {
		return err
	}
	setFlash(w, flashOK, "Deleted the rule for "+rule.Prefix.String()+".")
	return redirectTo(accountPath(acct, sectionFirewall))
}

type usersData struct {
	Users []admin.UserView
	// All is true when deactivated users are shown too.
	All bool
	// Manager is set when a user holding manage_staff, not the master,
	// looks: the page leaves out what only the master may do.
	Manager bool
	// Devices are each user's enrolled devices, by username; nil on a
	// manager's page.
	Devices map[string][]admin.DeviceView
	// Form is the add-a-user form.
	Form *form
}

func (p *Pages) usersPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.showUsers(w, r, c, http.StatusOK, nil)
}

func (p *Pages) showUsers(w http.ResponseWriter, r *http.Request, c *call, status int, f *form) error {
	pg, err := p.staffPage(r, c, sectionUsers, "Staff")
	if err != nil {
		return err
	}
	all := r.URL.Query().Get("all") == "1" || r.PostFormValue("all") == "1"
	users, err := p.svc.Users(r.Context(), c.actor, pg.AccountID, all)
	if err != nil {
		return err
	}
	d := usersData{Users: users, All: all, Manager: !c.isMaster(), Form: f}
	if c.isMaster() { // devices are the master's; a manager's page leaves them out
		ds, err := p.svc.Devices(r.Context(), c.actor, pg.AccountID)
		if err != nil {
			return err
		}
		d.Devices = map[string][]admin.DeviceView{}
		for _, dv := range ds {
			d.Devices[dv.Owner] = append(d.Devices[dv.Owner], dv)
		}
	}
	if d.Form == nil {
		d.Form = newForm()
		d.Form.Values["password"] = password.Generate()
	}
	pg.Data = d
	p.render(w, r, status, "users", pg)
	return nil
}

var userFields = fields{
	admin.CodeInvalidUsername: "username", admin.CodeGenericUsername: "username", admin.CodeExists: "username",
	admin.CodeWeakPassword: "password", "field:display_name": "display_name",
	admin.CodeInvalidAccessUntil: "access_until",
}

// accountZone is the time zone of the account in the path, in which a
// date and time typed on its pages is read: the caller's own account's,
// or, for a parent's master on a child account, the child's.
func (p *Pages) accountZone(r *http.Request, c *call) (*time.Location, error) {
	zone := c.actor.TimeZone
	if acct := r.PathValue("acct"); c.isMaster() && acct != c.actor.Account {
		v, err := p.svc.Account(r.Context(), c.actor, acct)
		if err != nil {
			return nil, err
		}
		zone = v.Settings.Zone()
	}
	return p.clock(zone).loc, nil
}

// createUser adds a user, who must choose their own password at first
// login.
func (p *Pages) createUser(w http.ResponseWriter, r *http.Request, c *call) error {
	acct := r.PathValue("acct")
	f := newForm()
	f.Values["username"] = trim(r.PostFormValue("username"), 100)
	f.Values["display_name"] = r.PostFormValue("display_name")
	f.Values["password"] = r.PostFormValue("password")
	f.Values["access_until"] = trim(r.PostFormValue("access_until"), 64)
	loc, err := p.accountZone(r, c)
	if err != nil {
		return err
	}
	var u admin.UserView
	until, err := admin.ParseAccessUntil(f.Values["access_until"], loc)
	if err == nil {
		u, err = p.svc.CreateUser(r.Context(), c.actor, acct, admin.NewUser{Username: f.Values["username"],
			DisplayName: f.Values["display_name"], Password: f.Values["password"], AccessUntil: until})
	}
	if err != nil {
		status, ok := userFields.place(w, f, err)
		if !ok {
			return err
		}
		return p.showUsers(w, r, c, status, f)
	}
	msg := fmt.Sprintf("Added %s. Give them their starting password in person: they must choose their own when they first log in.", u.Username)
	if !until.IsZero() {
		msg += " Their last day is " + p.clock(loc.String()).when(until) + "."
	}
	setFlash(w, flashOK, msg)
	return redirectTo(accountPath(acct, sectionUsers))
}

// updateUser changes one flag of a user: set=active|desktop_access|
// web_access|must_reset_password, value=true|false.
func (p *Pages) updateUser(w http.ResponseWriter, r *http.Request, c *call) error {
	acct, name := r.PathValue("acct"), r.PathValue("username")
	var v bool
	switch r.PostFormValue("value") {
	case "true":
		v = true
	case "false":
	default:
		return &admin.Error{Status: http.StatusBadRequest, Code: admin.CodeInvalidRequest, Msg: "value must be true or false"}
	}
	var patch admin.UserPatch
	field := r.PostFormValue("set")
	switch field {
	case "active":
		patch.Active = &v
	case "desktop_access":
		patch.DesktopAccess = &v
	case "web_access":
		patch.WebAccess = &v
	case "must_reset_password":
		patch.MustResetPassword = &v
	default:
		return &admin.Error{Status: http.StatusBadRequest, Code: admin.CodeInvalidRequest,
			Msg: "set must be active, desktop_access, web_access or must_reset_password"}
	}
	res, err := p.svc.UpdateUser(r.Context(), c.actor, acct, name, patch)
	if err != nil {
		return err
	}
	u := res.User.Username
	var msg string
	switch {
	case field == "active" && v:
		msg = u + " can log in again, with the password they had."
	case field == "active":
		msg = fmt.Sprintf("%s is deactivated and can no longer log in: %s ended, %s removed.", u,
			count(res.SessionsEnded, "session"), count(res.GrantsRevoked, "unblocked address"))
	case field == "desktop_access" && v:
		msg = u + " has desktop access: they can unblock their own address."
	case field == "desktop_access":
		msg = fmt.Sprintf("%s no longer has desktop access: %s removed.", u, count(res.GrantsRevoked, "unblocked address"))
	case field == "web_access" && v:
		msg = u + " has web access: they can sign in to the web applications."
	case field == "web_access":
		msg = u + " no longer has web access: their web sessions end within a second."
	case v:
		msg = u + " must choose a new password before doing anything else."
	default:
		msg = u + " no longer has to choose a new password."
	}
	if res.ConnectionsClosed != nil && *res.ConnectionsClosed > 0 {
		msg += fmt.Sprintf(" %s closed.", count(*res.ConnectionsClosed, "desktop connection"))
	}
	setFlash(w, flashOK, msg)
	to := accountPath(acct, sectionUsers)
	if r.PostFormValue("all") == "1" {
		to += "?all=1"
	}
	return redirectTo(to)
}

// setAccessUntil sets a user's last day (access_until), a date and time
// read in the account's time zone, or clears it when empty.
func (p *Pages) setAccessUntil(w http.ResponseWriter, r *http.Request, c *call) error {
	acct := r.PathValue("acct")
	loc, err := p.accountZone(r, c)
	if err != nil {
		return err
	}
	until, err := admin.ParseAccessUntil(trim(r.PostFormValue("access_until"), 64), loc)
	if err != nil {
		return err
	}
	res, err := p.svc.UpdateUser(r.Context(), c.actor, acct, r.PathValue("username"), admin.UserPatch{AccessUntil: &until})
	if err != nil {
		return err
	}
	msg := res.User.Username + " has no last day any more."
	if !until.IsZero() {
		msg = res.User.Username + "'s last day is " + p.clock(loc.String()).when(until) + ": then they are offboarded by itself."
	}
	setFlash(w, flashOK, msg)
	to := accountPath(acct, sectionUsers)
	if r.PostFormValue("all") == "1" {
		to += "?all=1"
	}
	return redirectTo(to)
}

// findUser returns one user of the account, deactivated ones included.
func (p *Pages) findUser(r *http.Request, c *call, acct string) (admin.UserView, error) {
	users, err := p.svc.Users(r.Context(), c.actor, acct, true)
	if err != nil {
		return admin.UserView{}, err
	}
	name := strings.ToLower(r.PathValue("username"))
	i := slices.IndexFunc(users, func(u admin.UserView) bool { return u.Username == name })
	if i < 0 {
		return admin.UserView{}, &admin.Error{Status: http.StatusNotFound, Code: admin.CodeNotFound, Msg: "user not found"}
	}
	return users[i], nil
}

// confirmUserPage is a page that asks before doing something to one
// person of the staff: it shows template tmpl with that user, on a page
// that start begins (masterPage for what only the master may do,
// staffPage for what a manager may do too).
func (p *Pages) confirmUserPage(w http.ResponseWriter, r *http.Request, c *call, start pageStart, title, tmpl string) error {
	pg, err := start(r, c, sectionUsers, title)
	if err != nil {
		return err
	}
	u, err := p.svc.StaffMember(r.Context(), c.actor, pg.AccountID, r.PathValue("username"))
	if err != nil {
		return err
	}
	pg.Data = u
	p.render(w, r, http.StatusOK, tmpl, pg)
	return nil
}

// offboardPage says exactly what offboarding will do, and asks.
func (p *Pages) offboardPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.confirmUserPage(w, r, c, p.staffPage, "Offboard this person?", "confirm_offboard")
}

func (p *Pages) offboard(w http.ResponseWriter, r *http.Request, c *call) error {
	acct := r.PathValue("acct")
	res, err := p.svc.Offboard(r.Context(), c.actor, acct, r.PathValue("username"))
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("%s is offboarded: login deactivated, desktop access off, %s ended, %s removed.",
		res.User.Username, count(res.SessionsEnded, "session"), count(res.GrantsRevoked, "unblocked address"))
	if res.ConnectionsClosed != nil {
		msg += fmt.Sprintf(" %s closed.", count(*res.ConnectionsClosed, "desktop connection"))
	}
	setFlash(w, flashOK, msg)
	return redirectTo(accountPath(acct, sectionUsers))
}

// clearFactorPage asks before clearing an employee's second factor, for
// someone who lost their phone or passkey.
func (p *Pages) clearFactorPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.confirmUserPage(w, r, c, p.masterPage, "Clear the second factor?", "confirm_clear_factor")
}

func (p *Pages) clearFactor(w http.ResponseWriter, r *http.Request, c *call) error {
	acct, username := r.PathValue("acct"), strings.ToLower(r.PathValue("username"))
	res, err := p.svc.ClearUserFactor(r.Context(), c.actor, acct, username)
	if err != nil {
		return err
	}
	setFlash(w, flashOK, fmt.Sprintf("%s's second factor is cleared: they log in with their password alone until they set up a new one; %s ended.",
		username, count(res.SessionsEnded, "session")))
	return redirectTo(accountPath(acct, sectionUsers))
}

// tempPasswordPage asks before giving someone a temporary password.
func (p *Pages) tempPasswordPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.confirmUserPage(w, r, c, p.staffPage, "Give a temporary password?", "confirm_temp_password")
}

// tempPassword sets it and shows a generated one on the answer itself,
// never in a redirect's flash cookie: the password must not outlive this
// page (which, like every page with data, is no-store).
func (p *Pages) tempPassword(w http.ResponseWriter, r *http.Request, c *call) error {
	acct := r.PathValue("acct")
	res, err := p.svc.SetTemporaryPassword(r.Context(), c.actor, acct, r.PathValue("username"), r.PostFormValue("password"))
	if err != nil {
		return err
	}
	pg, err := p.staffPage(r, c, sectionUsers, "Temporary password")
	if err != nil {
		return err
	}
	pg.Data = res
	p.render(w, r, http.StatusOK, "temp_password", pg)
	return nil
}

type resetData struct {
	// Users is how many active users will newly have to choose a password.
	Users int
	// Already is how many had to already.
	Already int
}

func (p *Pages) resetPasswordsPage(w http.ResponseWriter, r *http.Request, c *call) error {
	pg, err := p.masterPage(r, c, sectionUsers, "Everyone must choose a new password?")
	if err != nil {
		return err
	}
	users, err := p.svc.Users(r.Context(), c.actor, pg.Account.ID, false)
	if err != nil {
		return err
	}
	var d resetData
	for _, u := range users {
		if u.MustResetPassword {
			d.Already++
		} else {
			d.Users++
		}
	}
	pg.Data = d
	p.render(w, r, http.StatusOK, "confirm_reset", pg)
	return nil
}

func (p *Pages) resetPasswords(w http.ResponseWriter, r *http.Request, c *call) error {
	acct := r.PathValue("acct")
	res, err := p.svc.ResetPasswords(r.Context(), c.actor, acct)
	if err != nil {
		return err
	}
	setFlash(w, flashOK, fmt.Sprintf("Done: every user must choose a new password the next time they use gatekeeper (%s newly asked).",
		count(res.Users, "user")))
	return redirectTo(accountPath(acct, sectionUsers))
}

type auditData struct {
	Entries []policy.AuditEntry
	// User is the person the trail is filtered by; empty for everyone.
	User string
	// People are the choices of the filter.
	People []string
	// Before is the entry this page starts after; empty for the newest.
	Before string
	// Older links the next page, Newest the first; empty when there is
	// none.
	Older, Newest string
}

const auditPageSize = 50

func (p *Pages) auditPage(w http.ResponseWriter, r *http.Request, c *call) error {
	pg, err := p.staffPage(r, c, sectionAudit, "Audit trail")
	if err != nil {
		return err
	}
	acct := pg.AccountID
	q := r.URL.Query()
	d := auditData{User: trim(q.Get("user"), 80), Before: trim(q.Get("before"), 64)}
	page, err := p.svc.Audit(r.Context(), c.actor, acct, admin.AuditQuery{Limit: auditPageSize, Before: d.Before, User: d.User})
	if err != nil {
		return err
	}
	d.Entries = page.Entries
	// The filter's choices are the staff list, for those who may read it;
	// an auditor who may not types a name instead.
	users, err := p.svc.Users(r.Context(), c.actor, acct, true)
	switch {
	case err == nil:
		d.People = append(d.People, policy.RoleMaster)
		if pg.Account != nil && pg.Account.Parent != "" {
			d.People = append(d.People, "master@"+pg.Account.Parent)
		}
		for _, u := range users {
			d.People = append(d.People, u.Username)
		}
	case admin.AsError(err).Status != http.StatusForbidden:
		return err
	}
	link := func(before string) string {
		v := url.Values{}
		if d.User != "" {
			v.Set("user", d.User)
		}
		if before != "" {
			v.Set("before", before)
		}
		if len(v) == 0 {
			return accountPath(acct, sectionAudit)
		}
		return accountPath(acct, sectionAudit) + "?" + v.Encode()
	}
	if page.Next != "" {
		d.Older = link(page.Next)
	}
	if d.Before != "" {
		d.Newest = link("")
	}
	pg.Data = d
	p.render(w, r, http.StatusOK, "audit", pg)
	return nil
}
