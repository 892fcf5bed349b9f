package web

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/gatekeeper-dev/gatekeeper/admin"
)

// The "Sign-in and security" page everyone has: their second factor, and
// the way there when the account requires one. No JavaScript for TOTP: the
// QR code is an image drawn on the server. Passkeys are in passkeys.go.

// qrSize is the side of the QR code image, in pixels: large enough for a
// phone camera across a desk.
const qrSize = 240

type securityData struct {
	Me       admin.Me
	Sessions []admin.SessionView
	// Everyone is, for a master, every session of the account's people.
	Everyone []admin.SessionView
	// Enrolment is set while the QR code and the confirm form are shown.
	Enrolment *admin.TOTPEnrolment
	// RecoveryCodes are shown once, right after a confirmed enrolment.
	RecoveryCodes []string
	Form          *form
	// Passkeys are the person's; PasskeysOn says that passkeys are
	// configured here.
	Passkeys   []admin.PasskeyInfo
	PasskeysOn bool
}

func (p *Pages) securityPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.showSecurity(w, r, c, http.StatusOK, securityData{Form: newForm()})
}

func (p *Pages) showSecurity(w http.ResponseWriter, r *http.Request, c *call, status int, d securityData) error {
	me, err := p.svc.Me(r.Context(), c.actor)
	if err != nil {
		return err
	}
	d.Me = me
	if d.Sessions, err = p.svc.MySessions(r.Context(), c.actor); err != nil {
		return err
	}
	if d.Passkeys, err = p.svc.Passkeys(r.Context(), c.actor); err != nil {
		return err
	}
	d.PasskeysOn = p.svc.PasskeysAvailable()
	if c.isMaster() && !c.actor.MustEnrollMFA {
		all, err := p.svc.AccountSessions(r.Context(), c.actor, c.actor.Account)
		if err != nil {
			return err
		}
		for _, s := range all {
			if s.Username != "" {
				d.Everyone = append(d.Everyone, s)
			}
		}
	}
	pg := p.newPage(c, "Sign-in and security")
	pg.current("/security")
	pg.Data = d
	p.render(w, r, status, "security", pg)
	return nil
}

// beginTOTP makes a new secret and shows its QR code with the confirm
// form. The secret is also written out, for an app on the same computer.
func (p *Pages) beginTOTP(w http.ResponseWriter, r *http.Request, c *call) error {
	en, err := p.svc.BeginTOTP(r.Context(), c.actor)
	if err != nil {
		return err
	}
	return p.showSecurity(w, r, c, http.StatusOK, securityData{Enrolment: &en, Form: newForm()})
}

// totpQR is the QR code of the pending enrolment, as a PNG image.
func (p *Pages) totpQR(w http.ResponseWriter, r *http.Request, c *call) error {
	img, err := p.svc.TOTPQRCode(r.Context(), c.actor, qrSize)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Content-Length", strconv.Itoa(len(img)))
	w.WriteHeader(http.StatusOK)
	w.Write(img)
	return nil
}

var confirmFields = fields{admin.CodeInvalidOTP: "code"}

// confirmTOTP checks the first code and shows the recovery codes, this
// once: the answer is the page itself, not a redirect, so that nothing
// keeps them.
func (p *Pages) confirmTOTP(w http.ResponseWriter, r *http.Request, c *call) error {
	f := newForm()
	res, err := p.svc.ConfirmTOTP(r.Context(), c.actor, trim(r.PostFormValue("code"), 64))
	if err != nil {
		status, ok := confirmFields.place(w, f, err)
		if !ok {
			return err
		}
		d := securityData{Form: f}
		if admin.AsError(err).Code == admin.CodeInvalidOTP {
			// The same QR code again: the pending secret stays until confirmed.
			d.Enrolment = &admin.TOTPEnrolment{}
		}
		return p.showSecurity(w, r, c, status, d)
	}
	d := securityData{RecoveryCodes: res.Codes, Form: newForm()}
	c.actor.MustEnrollMFA = false // enrolled now: the menu may show everything
	return p.showSecurity(w, r, c, http.StatusOK, d)
}

func (p *Pages) removeTOTP(w http.ResponseWriter, r *http.Request, c *call) error {
	res, err := p.svc.RemoveTOTP(r.Context(), c.actor)
	if err != nil {
		return err
	}
	msg := "Your authenticator app is no longer asked for; the password alone logs you in."
	if res.SessionsEnded > 0 {
		msg += fmt.Sprintf(" You were logged out everywhere else (%s).", count(res.SessionsEnded, "session"))
	}
	setFlash(w, flashOK, msg)
	return redirectTo("/security")
}

// endSession ends one of the person's own sessions: another browser, or
// this one, which is then logged out.
func (p *Pages) endSession(w http.ResponseWriter, r *http.Request, c *call) error {
	mine, err := p.svc.MySessions(r.Context(), c.actor)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := p.svc.EndMySession(r.Context(), c.actor, id); err != nil {
		return err
	}
	for _, s := range mine {
		if s.ID == id && s.Current {
			clearCookie(w, sessionCookie)
			setFlash(w, flashOK, "You have logged out.")
			return redirectTo("/login")
		}
	}
	setFlash(w, flashOK, "That session has ended: its browser is logged out.")
	return redirectTo("/security")
}

// endStaffSession is a master ending an employee's session: that browser
// or client is logged out at its next call.
func (p *Pages) endStaffSession(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := p.svc.EndAccountSession(r.Context(), c.actor, r.PathValue("acct"), r.PathValue("id")); err != nil {
		return err
	}
	setFlash(w, flashOK, "That session has ended: whoever used it is logged out.")
	return redirectTo("/security")
}
