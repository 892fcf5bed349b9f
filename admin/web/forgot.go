package web

import (
	"errors"
	"net/http"

	"github.com/gatekeeper-dev/gatekeeper/admin"
)

// forgotData is the forgotten-password, reset and confirmation pages'.
type forgotData struct {
	Master bool
	// CanMail is false without notify.smtp: then the page says whom to
	// ask instead of offering a form.
	CanMail bool
	// Sent is true once a request was made: the one answer, whoever asked.
	Sent    bool
	Message string
	// Token is the link's token, carried by the form; Done says it worked.
	Token string
	Done  bool
	Form  *form
}

// publicCSRF keys a public form's CSRF token to the login cookie, as the
// login form does, setting one when there is none.
func publicCSRF(w http.ResponseWriter, r *http.Request, c *call) {
	secret := cookieValue(r, loginCookie, maxToken)
	if len(secret) < 40 {
		secret = randomSecret()
		setCookie(w, loginCookie, secret, 0)
	}
	c.csrf = csrfToken(secret)
}

var errExpiredForm = errors.New("This form had expired. Please try again. (It needs cookies: if this keeps happening, allow cookies for this site.)")

func (p *Pages) showForgot(w http.ResponseWriter, r *http.Request, c *call, status int, d forgotData) error {
	publicCSRF(w, r, c)
	d.CanMail = p.svc.CanMail()
	pg := p.newPage(c, "Forgot your password?")
	pg.Data = d
	p.render(w, r, status, "forgot", pg)
	return nil
}

func (p *Pages) forgotPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.showForgot(w, r, c, http.StatusOK, forgotData{Master: r.URL.Query().Get("as") == "master", Form: newForm()})
}

// forgot asks the Service for a reset link and shows the one answer it
// gives whether or not the login or its address exists.
func (p *Pages) forgot(w http.ResponseWriter, r *http.Request, c *call) error {
	d := forgotData{Master: r.PostFormValue("as") == "master", Form: newForm()}
	d.Form.Values["account"] = trim(r.PostFormValue("account"), 64)
	d.Form.Values["username"] = trim(r.PostFormValue("username"), 64)
	if !validCSRF(cookieValue(r, loginCookie, maxToken), r.PostFormValue(csrfField)) {
		d.Form.Errors[""] = errExpiredForm.Error()
		return p.showForgot(w, r, c, http.StatusForbidden, d)
	}
	if d.Form.Values["account"] == "" {
		d.Form.Errors["account"] = "Enter the account number."
	}
	if !d.Master && d.Form.Values["username"] == "" {
		d.Form.Errors["username"] = "Enter your username."
	}
	if d.Form.HasErrors() {
		return p.showForgot(w, r, c, http.StatusBadRequest, d)
	}
	req := admin.ForgotRequest{Account: d.Form.Values["account"]}
	if !d.Master {
		req.Username = d.Form.Values["username"]
	}
	res, err := p.svc.ForgotPassword(r.Context(), req, c.ip)
	if err != nil {
		status, ok := fields{}.place(w, d.Form, err)
		if !ok {
			return err
		}
		return p.showForgot(w, r, c, status, d)
	}
	d.Sent, d.Message = true, res.Message
	return p.showForgot(w, r, c, http.StatusAccepted, d)
}

func (p *Pages) showReset(w http.ResponseWriter, r *http.Request, c *call, status int, d forgotData) error {
	publicCSRF(w, r, c)
	pg := p.newPage(c, "Set a new password")
	pg.Data = d
	p.render(w, r, status, "reset", pg)
	return nil
}

// resetPage shows the form of a reset link. The token is checked when the
// form is sent, not here: a link scanner that opens it changes nothing.
func (p *Pages) resetPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.showReset(w, r, c, http.StatusOK, forgotData{Token: trim(r.URL.Query().Get("token"), 200), Form: newForm()})
}

var resetFields = fields{admin.CodeWeakPassword: "new", admin.CodeInvalidToken: ""}

func (p *Pages) reset(w http.ResponseWriter, r *http.Request, c *call) error {
	d := forgotData{Token: trim(r.PostFormValue("token"), 200), Form: newForm()}
	if !validCSRF(cookieValue(r, loginCookie, maxToken), r.PostFormValue(csrfField)) {
		d.Form.Errors[""] = errExpiredForm.Error()
		return p.showReset(w, r, c, http.StatusForbidden, d)
	}
	next := r.PostFormValue("new")
	if next != r.PostFormValue("repeat") {
		d.Form.Errors["repeat"] = "The two new passwords are not the same."
		return p.showReset(w, r, c, http.StatusBadRequest, d)
	}
	if _, err := p.svc.ResetPassword(r.Context(), admin.ResetRequest{Token: d.Token, New: next}, c.ip); err != nil {
		status, ok := resetFields.place(w, d.Form, err)
		if !ok {
			return err
		}
		return p.showReset(w, r, c, status, d)
	}
	clearCookie(w, sessionCookie)
	setFlash(w, flashOK, "Your new password is set, and every session of your login has ended. Log in with it now.")
	return redirectTo("/login")
}

func (p *Pages) showConfirm(w http.ResponseWriter, r *http.Request, c *call, status int, d forgotData) error {
	publicCSRF(w, r, c)
	pg := p.newPage(c, "Confirm your email address")
	pg.Data = d
	p.render(w, r, status, "confirm_email", pg)
	return nil
}

// confirmPage asks for a click rather than confirming on opening: mail
// scanners open links, and only the person should confirm.
func (p *Pages) confirmPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.showConfirm(w, r, c, http.StatusOK, forgotData{Token: trim(r.URL.Query().Get("token"), 200), Form: newForm()})
}

func (p *Pages) confirm(w http.ResponseWriter, r *http.Request, c *call) error {
	d := forgotData{Token: trim(r.PostFormValue("token"), 200), Form: newForm()}
	if !validCSRF(cookieValue(r, loginCookie, maxToken), r.PostFormValue(csrfField)) {
		d.Form.Errors[""] = errExpiredForm.Error()
		return p.showConfirm(w, r, c, http.StatusForbidden, d)
	}
	if err := p.svc.ConfirmEmail(r.Context(), d.Token, c.ip); err != nil {
		status, ok := fields{}.place(w, d.Form, err)
		if !ok {
			return err
		}
		return p.showConfirm(w, r, c, status, d)
	}
	d.Done = true
	return p.showConfirm(w, r, c, http.StatusOK, d)
}

// emailData is the page that sets an address: one's own (Self) or an
// employee's.
type emailData struct {
	Self     bool
	Username string
	Current  *admin.AddressView
	CanMail  bool
	Form     *form
}

var emailFields = fields{admin.CodeInvalidEmail: "email"}

func (p *Pages) showMyEmail(w http.ResponseWriter, r *http.Request, c *call, status int, f *form) error {
	cur, err := p.svc.MyEmail(r.Context(), c.actor)
	if err != nil {
		return err
	}
	pg := p.newPage(c, "Your email address")
	pg.current("/password")
	pg.Data = emailData{Self: true, Current: cur, CanMail: p.svc.CanMail(), Form: f}
	p.render(w, r, status, "email", pg)
	return nil
}

func (p *Pages) myEmailPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.showMyEmail(w, r, c, http.StatusOK, newForm())
}

func (p *Pages) setMyEmail(w http.ResponseWriter, r *http.Request, c *call) error {
	f := newForm()
	f.Values["email"] = trim(r.PostFormValue("email"), 300)
	v, err := p.svc.SetEmail(r.Context(), c.actor, c.actor.Account, c.actor.Username, f.Values["email"])
	if err != nil {
		status, ok := emailFields.place(w, f, err)
		if !ok {
			return err
		}
		return p.showMyEmail(w, r, c, status, f)
	}
	setFlash(w, flashOK, emailFlash(v))
	return redirectTo("/me/email")
}

func emailFlash(v admin.AddressView) string {
	switch {
	case v.Address == "":
		return "The email address is removed."
	case v.Confirmed:
		return "The email address is unchanged."
	case v.ConfirmationSent:
		return "A confirmation link is on its way to " + v.Address + "; the address is used once it is followed."
	}
	return "The address is saved, but this server sends no email, so it cannot be confirmed or used yet."
}

func (p *Pages) userEmailPage(w http.ResponseWriter, r *http.Request, c *call) error {
	pg, err := p.masterPage(r, c, sectionUsers, "Email address")
	if err != nil {
		return err
	}
	u, err := p.findUser(r, c, pg.Account.ID)
	if err != nil {
		return err
	}
	pg.Data = emailData{Username: u.Username, Current: u.Email, CanMail: p.svc.CanMail(), Form: newForm()}
	p.render(w, r, http.StatusOK, "email", pg)
	return nil
}

// setUserEmail is the staff page's: the master's (a user sets their own
// on /me/email), so it is refused to anyone who may not see the staff.
func (p *Pages) setUserEmail(w http.ResponseWriter, r *http.Request, c *call) error {
	acct, username := r.PathValue("acct"), r.PathValue("username")
	pg, err := p.masterPage(r, c, sectionUsers, "Email address")
	if err != nil {
		return err
	}
	f := newForm()
	f.Values["email"] = trim(r.PostFormValue("email"), 300)
	v, err := p.svc.SetEmail(r.Context(), c.actor, acct, username, f.Values["email"])
	if err != nil {
		status, ok := emailFields.place(w, f, err)
		if !ok {
			return err
		}
		pg.Data = emailData{Username: username, CanMail: p.svc.CanMail(), Form: f}
		p.render(w, r, status, "email", pg)
		return nil
	}
	setFlash(w, flashOK, emailFlash(v))
	return redirectTo("/accounts/" + acct + "/users")
}
