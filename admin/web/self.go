package web

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// The pages everyone who logs in uses: login, logout, password, and their
// own address and grants.

type loginData struct {
	// Master is true for the account holder's form (no username).
	Master bool
	Form   *form
	// Ticket, when set, makes this the second step: the password was
	// right, and the form asks for the code (see admin.Service.LoginTicket).
	Ticket string
	// Passkeys says that passkeys are configured, so the page offers one.
	Passkeys bool
	// PasskeyOnly, on the second step, says the person has passkeys and
	// no authenticator app, so the page asks for no code.
	PasskeyOnly bool
}

// loginPage shows the login form: the employee's, or with ?as=master the
// account holder's. A browser already logged in goes home.
func (p *Pages) loginPage(w http.ResponseWriter, r *http.Request, c *call) error {
	if t := sessionToken(r); t != "" {
		if _, err := p.svc.Authenticate(r.Context(), t, c.ip); err == nil {
			return redirectTo("/")
		}
	}
	return p.showLogin(w, r, c, http.StatusOK, r.URL.Query().Get("as") == "master", newForm())
}

// showLogin renders the login form with a CSRF token keyed by the login
// cookie, setting a new cookie when there is none.
func (p *Pages) showLogin(w http.ResponseWriter, r *http.Request, c *call, status int, master bool, f *form) error {
	return p.showLoginStep(w, r, c, status, loginData{Master: master, Form: f})
}

func (p *Pages) showLoginStep(w http.ResponseWriter, r *http.Request, c *call, status int, d loginData) error {
	master := d.Master
	secret := cookieValue(r, loginCookie, maxToken)
	if len(secret) < 40 {
		secret = randomSecret()
		setCookie(w, loginCookie, secret, 0)
	}
	c.csrf = csrfToken(secret)
	d.Passkeys = p.svc.PasskeysAvailable()
	title := "Log in"
	switch {
	case d.Ticket != "" && d.PasskeyOnly && d.Passkeys:
		title = "Use your passkey"
	case d.Ticket != "":
		title = "Enter your code"
	case master:
		title = "Log in as the account holder"
	}
	pg := p.newPage(c, title)
	pg.Data = d
	p.render(w, r, status, "login", pg)
	return nil
}

// A failed login is said on the form, whatever was wrong.
var loginFields = fields{admin.CodeInvalidCredentials: ""}

// login checks the form's CSRF token against the login cookie, logs in
// through the Service (with its rate limits and audit entries) and keeps
// the session token in the session cookie.
func (p *Pages) login(w http.ResponseWriter, r *http.Request, c *call) error {
	master := r.PostFormValue("as") == "master"
	f := newForm()
	f.Values["account"] = trim(r.PostFormValue("account"), 64)
	f.Values["username"] = trim(r.PostFormValue("username"), 64)
	if !validCSRF(cookieValue(r, loginCookie, maxToken), r.PostFormValue(csrfField)) {
		// Most likely a login page left open past the browser session:
		// say so and offer a fresh form rather than a dead end.
		f.Errors[""] = "This login form had expired. Please enter your details again. (Logging in needs cookies: if this keeps happening, allow cookies for this site.)"
		return p.showLogin(w, r, c, http.StatusForbidden, master, f)
	}
	req := admin.LoginRequest{Account: f.Values["account"], Password: r.PostFormValue("password"), UserAgent: r.UserAgent()}
	if !master {
		req.Username = f.Values["username"]
		if req.Username == "" {
			f.Errors["username"] = "Enter your username. The account holder logs in with the other form."
		}
	}
	if req.Account == "" {
		f.Errors["account"] = "Enter the account number."
	}
	if f.HasErrors() {
		return p.showLogin(w, r, c, http.StatusBadRequest, master, f)
	}
	res, err := p.svc.Login(r.Context(), req, c.ip)
	if e := admin.AsError(err); e.Code == admin.CodeOTPRequired {
		passkeyOnly := !slices.Contains(e.Factors, "totp")
		ticket, err := p.svc.LoginTicket(req)
		if err != nil {
			return err
		}
		return p.showLoginStep(w, r, c, http.StatusOK, loginData{Master: master, Form: newForm(), Ticket: ticket, PasskeyOnly: passkeyOnly})
	}
	if err != nil {
		status, ok := loginFields.place(w, f, err)
		if !ok {
			return err
		}
		return p.showLogin(w, r, c, status, master, f)
	}
	return loggedIn(w, res)
}

// A wrong code is said beside the code field.
var otpFields = fields{admin.CodeInvalidOTP: "otp", admin.CodeInvalidCredentials: ""}

// loginOTP is the login's second step: the ticket from the first, and the
// code. The Service checks both as one login, with the same limits.
func (p *Pages) loginOTP(w http.ResponseWriter, r *http.Request, c *call) error {
	master := r.PostFormValue("as") == "master"
	ticket := trim(r.PostFormValue("ticket"), 1024)
	f := newForm()
	if !validCSRF(cookieValue(r, loginCookie, maxToken), r.PostFormValue(csrfField)) {
		f.Errors[""] = "This login form had expired. Please log in again."
		return p.showLogin(w, r, c, http.StatusForbidden, master, f)
	}
	req, err := p.svc.OpenLoginTicket(ticket)
	if err != nil {
		if status, ok := otpFields.place(w, f, err); ok {
			return p.showLogin(w, r, c, status, master, f)
		}
		return err
	}
	req.OTP, req.UserAgent = trim(r.PostFormValue("otp"), 64), r.UserAgent()
	if req.OTP == "" {
		f.Errors["otp"] = "Enter the code from your authenticator app, or a recovery code."
		return p.showLoginStep(w, r, c, http.StatusBadRequest, loginData{Master: master, Form: f, Ticket: ticket})
	}
	res, err := p.svc.Login(r.Context(), req, c.ip)
	if err != nil {
		status, ok := otpFields.place(w, f, err)
		if !ok {
			return err
		}
		if admin.AsError(err).Code == admin.CodeInvalidCredentials {
			return p.showLogin(w, r, c, status, master, f) // the password changed meanwhile: start again
		}
		return p.showLoginStep(w, r, c, status, loginData{Master: master, Form: f, Ticket: ticket})
	}
	return loggedIn(w, res)
}

// loggedIn keeps a new session in its cookie and sends the person on: to
// choose a password or enrol a factor first when they must.
func loggedIn(w http.ResponseWriter, res admin.LoginResult) error {
	setCookie(w, sessionCookie, res.Token, 0)
	clearCookie(w, loginCookie)
	switch {
	case res.MustResetPassword:
		return redirectTo("/password")
	case res.MustEnrollMFA:
		setFlash(w, flashInfo, "This account asks everyone in your role to use a second factor. Set one up to go on.")
		return redirectTo("/security")
	}
	return redirectTo("/")
}

// logout ends the session, here and in the store.
func (p *Pages) logout(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := p.svc.Logout(r.Context(), c.actor); err != nil {
		return err
	}
	clearCookie(w, sessionCookie)
	setFlash(w, flashOK, "You have logged out.")
	return redirectTo("/login")
}

// home sends a user to their address page and a master to the firewall.
func (p *Pages) home(w http.ResponseWriter, r *http.Request, c *call) error {
	if next := takeNext(w, r); next != "" {
		return redirectTo(next)
	}
	if c.isMaster() {
		return redirectTo("/accounts/" + c.actor.Account + "/firewall")
	}
	return redirectTo("/me")
}

type passwordData struct {
	MustReset bool
	Form      *form
}

func (p *Pages) passwordPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.showPassword(w, r, c, http.StatusOK, newForm())
}

func (p *Pages) showPassword(w http.ResponseWriter, r *http.Request, c *call, status int, f *form) error {
	title := "Change your password"
	if c.actor.MustResetPassword {
		title = "Choose a new password"
	}
	pg := p.newPage(c, title)
	pg.current("/password")
	pg.Data = passwordData{MustReset: c.actor.MustResetPassword, Form: f}
	p.render(w, r, status, "password", pg)
	return nil
}

var passwordFields = fields{admin.CodeWeakPassword: "new", admin.CodeWrongPassword: "current"}

func (p *Pages) changePassword(w http.ResponseWriter, r *http.Request, c *call) error {
	f := newForm()
	next := r.PostFormValue("new")
	if next != r.PostFormValue("repeat") {
		f.Errors["repeat"] = "The two new passwords are not the same."
		return p.showPassword(w, r, c, http.StatusBadRequest, f)
	}
	res, err := p.svc.ChangePassword(r.Context(), c.actor, r.PostFormValue("current"), next)
	if err != nil {
		status, ok := passwordFields.place(w, f, err)
		if !ok {
			return err
		}
		return p.showPassword(w, r, c, status, f)
	}
	msg := "Your new password is set."
	if res.SessionsEnded > 0 {
		msg += fmt.Sprintf(" You were logged out everywhere else (%s).", count(res.SessionsEnded, "session"))
	}
	setFlash(w, flashOK, msg)
	return redirectTo("/")
}

type meData struct {
	Me admin.Me
	// Current is the grant for the address the page is seen from, if any.
	Current *policy.Rule
	Form    *form
}

func (p *Pages) mePage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.showMe(w, r, c, http.StatusOK, newForm())
}

func (p *Pages) showMe(w http.ResponseWriter, r *http.Request, c *call, status int, f *form) error {
	me, err := p.svc.Me(r.Context(), c.actor)
	if err != nil {
		return err
	}
	d := meData{Me: me, Form: f}
	if ip := c.ip.Unmap(); ip.IsValid() {
		for i := range me.Grants {
			if me.Grants[i].Prefix.Contains(ip) { // an IPv6 grant covers the /64
				d.Current = &me.Grants[i]
			}
		}
	}
	pg := p.newPage(c, "Your address")
	pg.current("/me")
	pg.Data = d
	p.render(w, r, status, "me", pg)
	return nil
}

// A user without desktop access is told on the page, not on an error page.
var unblockFields = fields{admin.CodeNoDesktopAccess: ""}

// unblock allows the caller's own address into their account, for the
// account's default time.
func (p *Pages) unblock(w http.ResponseWriter, r *http.Request, c *call) error {
	g, err := p.svc.Unblock(r.Context(), c.actor, c.actor.Account, 0)
	if err != nil && admin.AsError(err).Code == admin.CodeApprovalRequired {
		return p.requestAccess(w, r, c) // unblock: approval
	}
	if err != nil {
		f := newForm()
		status, ok := unblockFields.place(w, f, err)
		if !ok {
			return err
		}
		return p.showMe(w, r, c, status, f)
	}
	until := p.clock(c.actor.TimeZone).when(g.Rule.ExpiresAt)
	msg := fmt.Sprintf("%s is unblocked until %s.", g.Rule.Prefix.Addr(), until)
	if g.Renewed {
		msg = fmt.Sprintf("%s stays unblocked, now until %s.", g.Rule.Prefix.Addr(), until)
	}
	for _, old := range g.Removed {
		msg += fmt.Sprintf(" Your oldest unblocked address, %s, was removed to make room.", old.Prefix.Addr())
	}
	setFlash(w, flashOK, msg)
	return redirectTo("/me")
}

// deleteGrant removes one of the caller's own grants.
func (p *Pages) deleteGrant(w http.ResponseWriter, r *http.Request, c *call) error {
	id, err := ruleID(r)
	if err != nil {
		return err
	}
	me, err := p.svc.Me(r.Context(), c.actor)
	if err != nil {
		return err
	}
	label := "The address"
	for _, g := range me.Grants {
		if g.ID == id {
			label = g.Prefix.Addr().String()
		}
	}
	if err := p.svc.DeleteGrant(r.Context(), c.actor, id); err != nil {
		return err
	}
	setFlash(w, flashOK, label+" is no longer unblocked.")
	return redirectTo("/me")
}

// ruleID reads the {id} of a path; anything but a positive number is not
// found.
func ruleID(r *http.Request) (policy.RuleID, error) {
	n, err := strconv.ParseUint(r.PathValue("id"), 10, 32)
	if err != nil || n == 0 {
		return 0, errNotFound
	}
	return policy.RuleID(n), nil
}
