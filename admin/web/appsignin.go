package web

import (
	"encoding/base64"
	"html/template"
	"net/http"
	"strings"
)

// Sign-in for web applications behind login routes. The gate sends a
// browser without a web session to GET /app/signin?host=H&to=PATH; a
// person logged in here (with every second factor the account asks for)
// gets a single-use hand-off token and goes back to H's callback. One who
// is not is sent to the login page first, and nextCookie brings them
// back here once they are in.

// nextCookie holds the application sign-in to come back to after the
// login (the page's path and query, base64url).
const nextCookie = "__Host-gk_next"

// appSignInPath is the page the gate sends browsers to.
const appSignInPath = "/app/signin"

// appSignIn issues the hand-off and sends the browser to the
// application's callback.
func (p *Pages) appSignIn(w http.ResponseWriter, r *http.Request, c *call) error {
	q := r.URL.Query()
	to, err := p.svc.IssueWebHandoff(r.Context(), c.actor, q.Get("host"), q.Get("to"))
	if err != nil {
		return err
	}
	// Not a redirect: after the login form, a redirect to another origin
	// would be the form's, which the pages' form-action 'self' refuses.
	// The page moves on by itself (Refresh), or by its link.
	w.Header().Set("Refresh", "0; url="+to)
	pg := p.newPage(c, "Signing you in")
	pg.Data = continueData{Host: q.Get("host"), URL: template.URL(to)}
	p.render(w, r, http.StatusOK, "continue", pg)
	return nil
}

// continueData is the page that takes a person on to an application.
type continueData struct {
	Host string
	URL  template.URL // an https URL IssueWebHandoff made
}

// rememberNext keeps, for a browser sent to log in, the application
// sign-in it asked for.
func rememberNext(w http.ResponseWriter, r *http.Request, rt route) {
	if rt.pattern != "GET "+appSignInPath || len(r.URL.RawQuery) > 3000 {
		return
	}
	setCookie(w, nextCookie, base64.RawURLEncoding.EncodeToString([]byte(r.URL.RequestURI())), 600)
}

// takeNext returns the application sign-in a browser asked for before it
// logged in, once; "" if none.
func takeNext(w http.ResponseWriter, r *http.Request) string {
	v := cookieValue(r, nextCookie, 4096)
	if v == "" {
		return ""
	}
	clearCookie(w, nextCookie)
	b, err := base64.RawURLEncoding.DecodeString(v)
	if next := string(b); err == nil && strings.HasPrefix(next, appSignInPath+"?") {
		return next
	}
	return ""
}
