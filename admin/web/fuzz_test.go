package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCookies: the cookies a browser (or anyone) sends are outside input.
// Whatever the Cookie header: the flash message is one of the kinds set
// here with valid text, a session token is one that looks like one, and
// only the right CSRF token passes.
func FuzzCookies(f *testing.F) {
	for _, s := range []string{
		flashCookie + "=b2sKUnVsZSBhZGRlZA", // "ok\nRule added"
		flashCookie + "=ZXZpbApoaQ",         // "evil\nhi"
		flashCookie + "=%%%; " + sessionCookie + "=10042.abc",
		sessionCookie + "=" + strings.Repeat("a", 300) + ".b",
		"a=b; a=c; " + flashCookie + "=d2Fybgo",
	} {
		f.Add(s, "secret", csrfToken("secret"))
	}
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, header, secret, token string) {
		r := &http.Request{Header: http.Header{"Cookie": {header}}}
		if fl := takeFlash(httptest.NewRecorder(), r); fl != nil {
			if fl.Kind != flashOK && fl.Kind != flashInfo && fl.Kind != flashWarn || fl.Text == "" || !utf8.ValidString(fl.Text) {
				t.Fatalf("flash from %q: %+v", header, fl)
			}
		}
		if tok := sessionToken(r); tok != "" && (!strings.Contains(tok, ".") || len(tok) > 256) {
			t.Fatalf("session token from %q: %q", header, tok)
		}
		if validCSRF(secret, token) && (secret == "" || token != csrfToken(secret)) {
			t.Fatalf("CSRF token %q accepted for secret %q", token, secret)
		}
	})
}
