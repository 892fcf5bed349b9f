// Package web is the admin listener's web pages for account holders and
// their employees: login and the forced password reset, "your IP address
// is X — unblock it" with one's own grants, and for a master the firewall
// mode and rules, the staff list with offboarding, the audit trail and a
// switcher between a parent account's children.
//
// The pages are plain server-rendered HTML (html/template, with the
// templates and the stylesheet embedded) that work without JavaScript and
// on a phone; only passkeys need a script (static/passkey.js), WebAuthn
// being a browser API. They hold no logic of their own: every read and change is a
// call to the same admin.Service method the JSON API calls, so the
// authorization rules, rate limits, validation messages and audit entries
// are the API's. Errors are shown next to the field they concern, with
// the API's messages; a change that needs a confirmation through the API
// (turning the firewall off, a broad network) gets a confirmation page.
//
//	pages, _ := web.New(web.Options{Service: svc, Logger: log})
//	srv, _ := admin.NewServer(admin.ServerOptions{Service: svc, Pages: pages, …})
//
// Sessions are the API's: the session token that POST /api/v1/login
// returns is kept in a __Host- cookie that is Secure, HttpOnly and
// SameSite=Strict. Every form carries a CSRF token, an HMAC keyed by the
// session token (before login, by a random login cookie), so it needs no
// server-side state and dies with the session; a POST without it is
// refused with a 403 page. Origin and Host are checked as for the API.
// Pages with data are Cache-Control: no-store; the Content-Security-Policy
// allows this origin's script files (no inline script, no eval) and no
// framing.
//
// After a successful form the answer is a redirect (post/redirect/get) and
// the outcome is shown once from a short-lived cookie.
//
// It does not serve the API (package admin does, and mounts these pages
// beside it through admin.ServerOptions.Pages), and it fetches nothing
// from outside the admin listener.
package web
