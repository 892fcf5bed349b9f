package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Cookies. The __Host- prefix makes the browser refuse them unless they
// are Secure, for path / and without a Domain, so that no other site, not
// even a subdomain, can set them.
const (
	// sessionCookie holds the session token the API would hand out as a
	// bearer token.
	sessionCookie = "__Host-gk_session"
	// loginCookie holds a random secret that keys the login form's CSRF
	// token, before there is a session.
	loginCookie = "__Host-gk_login"
	// flashCookie holds a message for the next page, after a redirect.
	flashCookie = "__Host-gk_flash"
)

// csrfField is the name of every form's CSRF token field.
const csrfField = "csrf"

// setCookie sets a cookie the way every cookie here is set: Secure,
// HttpOnly, SameSite=Strict, for the whole site. maxAge 0 makes it last
// until the browser closes.
func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func clearCookie(w http.ResponseWriter, name string) { setCookie(w, name, "", -1) }

// maxToken bounds the session and login cookies: longer than any token
// made here.
const maxToken = 256

// cookieValue returns a cookie's value, or "" when it is missing or longer
// than max, the longest value set here under that name.
func cookieValue(r *http.Request, name string, max int) string {
	c, err := r.Cookie(name)
	if err != nil || len(c.Value) > max {
		return ""
	}
	return c.Value
}

// sessionToken returns the session token from the cookie, if it looks like
// one; the Service decides whether it is valid.
func sessionToken(r *http.Request) string {
	t := cookieValue(r, sessionCookie, maxToken)
	if !strings.Contains(t, ".") {
		return ""
	}
	return t
}

// randomSecret returns 256 random bits, base64url.
func randomSecret() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// csrfToken is the CSRF token for forms of the session (or login form)
// whose secret is secret: an HMAC keyed by that secret, which only this
// browser has (it is in an HttpOnly cookie) and which the token does not
// reveal. It needs no server-side state, is the same on every instance,
// and dies with the session.
func csrfToken(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("gatekeeper web form v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// validCSRF reports whether got is the CSRF token for secret.
func validCSRF(secret, got string) bool {
	if secret == "" || got == "" {
		return false
	}
	return hmac.Equal([]byte(csrfToken(secret)), []byte(got))
}

// Kinds of flash message.
const (
	flashOK   = "ok"
	flashInfo = "info"
	flashWarn = "warn"
)

// flash is a one-time message about what the last form did.
type flash struct {
	Kind string
	Text string
}

// maxFlash bounds a flash message's text in bytes, and maxFlashCookie the
// cookie that carries it with its kind, so that every message set is read
// back.
const (
	maxFlash       = 600
	maxFlashCookie = (len(flashInfo) + 1 + maxFlash + 2) / 3 * 4
)

// setFlash leaves a message for the next page. It lives a minute. A text
// too long is cut at a character boundary, since a cut character would
// make the whole message unreadable.
func setFlash(w http.ResponseWriter, kind, text string) {
	if len(text) > maxFlash {
		cut := maxFlash
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut]
	}
	setCookie(w, flashCookie, base64.RawURLEncoding.EncodeToString([]byte(kind+"\n"+text)), 60)
}

// takeFlash returns the message left for this page, if any, and clears it.
func takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	v := cookieValue(r, flashCookie, maxFlashCookie)
	if v == "" {
		return nil
	}
	clearCookie(w, flashCookie)
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || !utf8.Valid(b) {
		return nil
	}
	kind, text, ok := strings.Cut(string(b), "\n")
	if !ok || text == "" {
		return nil
	}
	switch kind {
	case flashOK, flashInfo, flashWarn:
	default:
		return nil
	}
	return &flash{Kind: kind, Text: text}
}
