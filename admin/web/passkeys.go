package web

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/gatekeeper-dev/gatekeeper/admin"
)

// Passkeys on the pages. The WebAuthn ceremony is a browser API, so here,
// and only here, a script (static/passkey.js) runs: it asks for a
// ceremony's options (the begin routes answer JSON), calls the browser,
// and puts the answer in a hidden field of an ordinary form, which it then
// submits. Everything else about passkeys (the list, removing one) is
// plain forms, and the passkey forms stay hidden without the script.

// maxCredential bounds a browser's WebAuthn answer in a form field.
const maxCredential = 16 << 10

// writeCeremony answers a begin route: the options and the sealed token.
func writeCeremony(w http.ResponseWriter, c admin.PasskeyCeremony) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	return json.NewEncoder(w).Encode(c)
}

// beginPasskey starts registering a passkey for the person logged in.
func (p *Pages) beginPasskey(w http.ResponseWriter, r *http.Request, c *call) error {
	res, err := p.svc.BeginPasskeyRegistration(r.Context(), c.actor)
	if err != nil {
		return err
	}
	return writeCeremony(w, res)
}

// addPasskey stores the passkey the browser made, under its name.
func (p *Pages) addPasskey(w http.ResponseWriter, r *http.Request, c *call) error {
	cred := r.PostFormValue("credential")
	if cred == "" || len(cred) > maxCredential {
		setFlash(w, flashWarn, "Your browser did not make a passkey. Adding one needs a browser with passkeys and JavaScript on.")
		return redirectTo("/security")
	}
	info, err := p.svc.FinishPasskeyRegistration(r.Context(), c.actor, admin.PasskeyRegistration{
		Token: trim(r.PostFormValue("token"), 8192), Name: trim(r.PostFormValue("name"), 256),
		Credential: json.RawMessage(cred)})
	if err != nil {
		if e := admin.AsError(err); e.Status == http.StatusBadRequest || e.Status == http.StatusConflict {
			setFlash(w, flashWarn, e.Msg)
			return redirectTo("/security")
		}
		return err
	}
	c.actor.MustEnrollMFA = false
	setFlash(w, flashOK, fmt.Sprintf("Passkey %q added: it logs you in without a password, and stands in for the code after one.", info.Name))
	return redirectTo("/security")
}

func (p *Pages) removePasskey(w http.ResponseWriter, r *http.Request, c *call) error {
	res, err := p.svc.RemovePasskey(r.Context(), c.actor, r.PathValue("id"))
	if err != nil {
		return err
	}
	msg := "That passkey no longer logs you in."
	if res.SessionsEnded > 0 {
		msg += fmt.Sprintf(" You were logged out everywhere else (%s).", count(res.SessionsEnded, "session"))
	}
	setFlash(w, flashOK, msg)
	return redirectTo("/security")
}

func (p *Pages) renamePasskey(w http.ResponseWriter, r *http.Request, c *call) error {
	k, err := p.svc.RenamePasskey(r.Context(), c.actor, r.PathValue("id"), trim(r.PostFormValue("name"), 256))
	if err != nil {
		return err
	}
	setFlash(w, flashOK, fmt.Sprintf("The passkey is now called %q.", k.Name))
	return redirectTo("/security")
}

// beginPasskeyLogin starts a passkey login from the login page, or from
// its second step with the ticket.
func (p *Pages) beginPasskeyLogin(w http.ResponseWriter, r *http.Request, c *call) error {
	if !validCSRF(cookieValue(r, loginCookie, maxToken), r.PostFormValue(csrfField)) {
		return errCSRF
	}
	res, err := p.svc.BeginPasskeyLogin(r.Context(), admin.PasskeyLoginBegin{Ticket: trim(r.PostFormValue("ticket"), 1024)})
	if err != nil {
		return err
	}
	return writeCeremony(w, res)
}

// passkeyLogin finishes a passkey login and opens the session.
func (p *Pages) passkeyLogin(w http.ResponseWriter, r *http.Request, c *call) error {
	master := r.PostFormValue("as") == "master"
	f := newForm()
	if !validCSRF(cookieValue(r, loginCookie, maxToken), r.PostFormValue(csrfField)) {
		f.Errors[""] = "This login form had expired. Please log in again."
		return p.showLogin(w, r, c, http.StatusForbidden, master, f)
	}
	cred := r.PostFormValue("credential")
	if cred == "" || len(cred) > maxCredential {
		f.Errors[""] = "Your browser gave no passkey. Logging in with one needs a browser with passkeys and JavaScript on; the password works without."
		return p.showLogin(w, r, c, http.StatusBadRequest, master, f)
	}
	res, err := p.svc.FinishPasskeyLogin(r.Context(), admin.PasskeyLogin{Token: trim(r.PostFormValue("token"), 8192),
		Ticket: trim(r.PostFormValue("ticket"), 1024), Credential: json.RawMessage(cred), UserAgent: r.UserAgent()}, c.ip)
	if err != nil {
		if e := admin.AsError(err); e.Status == http.StatusUnauthorized || e.Status == http.StatusBadRequest {
			f.Errors[""] = e.Msg
			return p.showLogin(w, r, c, e.Status, master, f)
		}
		return err
	}
	return loggedIn(w, res)
}

// passkeyForm is what the login page's passkey form needs.
type passkeyForm struct {
	CSRF, Ticket string
	Master       bool
	// Only says the passkey is the one way on (no code asked beside it).
	Only bool
}
