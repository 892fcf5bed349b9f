package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// FuzzRequest sends whole requests to the API: any method, target,
// Authorization, Content-Type and body, with or without the session of
// account A's master, over a real store. Whatever arrives: no panic and no
// 500 (the server turns a panic into one), a JSON answer, nothing about
// account B for A's master, and nothing but a login or a forgotten-password
// request for anyone without a token. Seeds: a call of every route, plus
// the files in testdata/fuzz/FuzzRequest.
//
//	go test ./admin -run '^$' -fuzz '^FuzzRequest$' -fuzztime 1m
func FuzzRequest(f *testing.F) {
	bs, err := boltstore.Open(filepath.Join(f.TempDir(), "gk.db"), boltstore.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { bs.Close() })
	svc, err := New(Options{Store: bs, Logger: zap.NewNop(), PasswordParams: cheap, SecretsKey: testSecretsKey,
		LoginLimits: LoginLimits{PerIP: Limit{Burst: 1 << 20}, PerLogin: Limit{Burst: 1 << 20}}})
	if err != nil {
		f.Fatal(err)
	}
	srv, err := NewServer(ServerOptions{Service: svc, OperatorToken: opToken, Logger: zap.NewNop(),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, RequestTimeout: 5 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	for _, a := range []NewAccount{{ID: acctA, Password: pwA}, {ID: acctB, Password: pwB}} {
		a.Actor, a.Role = "test", policy.RoleOperator
		if _, err := CreateAccount(ctx, bs, a, cheap, time.Now()); err != nil {
			f.Fatal(err)
		}
	}
	res, err := svc.Login(ctx, LoginRequest{Account: acctA, Password: pwA}, netip.MustParseAddr("192.0.2.1"))
	if err != nil {
		f.Fatal(err)
	}
	master := "Bearer " + res.Token

	for _, s := range []struct{ method, target, auth, ctype, body string }{
		{"POST", "/api/v1/login", "", "application/json", `{"account":"10042","password":"` + pwA + `"}`},
		{"GET", "/api/v1/me", master, "", ""},
		{"POST", "/api/v1/me/mfa/totp", master, "", ""},
		{"POST", "/api/v1/me/mfa/totp/confirm", master, "application/json", `{"code":"123456"}`},
		{"DELETE", "/api/v1/me/mfa/totp", master, "", ""},
		{"POST", "/api/v1/me/passkeys/register/begin", master, "", ""},
		{"POST", "/api/v1/me/passkeys/register/finish", master, "application/json", `{"token":"v1.x","name":"laptop","credential":{"id":"AA","rawId":"AA","type":"public-key","response":{"attestationObject":"oA","clientDataJSON":"e30"}}}`},
		{"GET", "/api/v1/me/passkeys", master, "", ""},
		{"DELETE", "/api/v1/me/passkeys/AAAA", master, "", ""},
		{"PATCH", "/api/v1/me/passkeys/AAAA", master, "application/json", `{"name":"desk \u0000"}`},
		{"POST", "/api/v1/login/passkey/begin", "", "application/json", `{}`},
		{"POST", "/api/v1/login/passkey/begin", "", "application/json", `{"ticket":"1.MTAwNDI.YWxpY2U.v1.x"}`},
		{"POST", "/api/v1/login/passkey/finish", "", "application/json", `{"token":"v1.x","credential":{"id":"AA","rawId":"AA","type":"public-key","response":{"authenticatorData":"AA","clientDataJSON":"e30","signature":"AA","userHandle":"MTAwNDIuYQ"}}}`},
		{"GET", "/api/v1/me/sessions", master, "", ""},
		{"DELETE", "/api/v1/me/sessions/0123456789abcdef", master, "", ""},
		{"GET", "/api/v1/accounts/10042/sessions", master, "", ""},
		{"DELETE", "/api/v1/accounts/10043/sessions/0123456789abcdef", master, "", ""},
		{"DELETE", "/api/v1/accounts/10042/users/alice/mfa", master, "", ""},
		{"DELETE", "/api/v1/accounts/10042/master/mfa", "Bearer " + opToken, "", ""},
		{"PATCH", "/api/v1/accounts/10042/settings", master, "application/json", `{"require_mfa":"none","password_max_age":"720h"}`},
		{"POST", "/api/v1/login", "", "application/json", `{"account":"10042","password":"` + pwA + `","otp":"123456"}`},
		{"POST", "/api/v1/password/forgot", "", "application/json", `{"account":"10042","username":"alice"}`},
		{"POST", "/api/v1/password/reset", "", "application/json", `{"token":"10042.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.alice","new":"a-new-password-1"}`},
		{"POST", "/api/v1/email/confirm", "", "application/json", `{"token":"10042.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`},
		{"PUT", "/api/v1/me/email", master, "application/json", `{"email":"owner@example.com"}`},
		{"PUT", "/api/v1/accounts/10042/users/alice/email", master, "application/json", `{"email":""}`},
		{"GET", "/api/v1/accounts/10042/firewall", master, "", ""},
		{"POST", "/api/v1/accounts/10042/firewall/rules", master, "application/json", `{"cidr":"198.51.100.0/24","note":"office"}`},
		{"DELETE", "/api/v1/accounts/10042/firewall/rules/1", master, "", ""},
		{"PUT", "/api/v1/accounts/10042/firewall/mode", master, "application/json", `{"mode":"monitor"}`},
		{"POST", "/api/v1/accounts/10042/unblock", master, "application/json", `{"ttl":"1h"}`},
		{"GET", "/api/v1/accounts/10042/users", master, "", ""},
		{"PATCH", "/api/v1/accounts/10042/users/alice", master, "application/json", `{"active":false}`},
		{"GET", "/api/v1/accounts/10042/audit?limit=5&before=3&user=master", master, "", ""},
		{"GET", "/api/v1/accounts/10043/firewall", master, "", ""},
		{"GET", "/api/v1/accounts/10042/../10043/firewall", master, "", ""},
		{"GET", "/api/v1/accounts/10042%2F..%2F10043/firewall", master, "", ""},
		{"GET", "/api/v1/accounts", "Bearer " + opToken, "", ""},
		{"GET", "/api/v1/accounts/10042/notifications", master, "", ""},
		{"PUT", "/api/v1/accounts/10042/notifications", master, "application/json", `{"webhooks":[{"url":"https://h.example/x"}],"emails":[{"address":"o@example.com"}]}`},
		{"POST", "/api/v1/accounts/10042/notifications/test", master, "", ""},
		{"GET", "/api/v1/accounts/10042/access-requests?status=pending", master, "", ""},
		{"POST", "/api/v1/accounts/10042/access-requests/abc/approve", master, "application/json", `{"ttl":"30m"}`},
		{"POST", "/api/v1/accounts/10042/access-requests/abc/deny", master, "application/json", `{"reason":"no"}`},
		{"GET", "/api/v1/me/access-requests", master, "", ""},
		{"POST", "/api/v1/accounts", "Bearer " + opToken, "application/json", `{"id":"10044"}`},
		{"GET", "/api/v1/accounts/10042/firewall", "Bearer 10042.forged", "", ""},
		{"POST", "/api/v1/password", master, "application/json; charset=latin1", `{"current":"x","new":"y"}`},
		{"POST", "/api/v1/accounts/10042/users/alice/password", master, "application/json", `{"password":"a-temporary-password"}`},
		{"POST", "/api/v1/accounts/10042/users/alice/password", master, "", ""},
		{"POST", "/api/v1/accounts/10043/master/password", "Bearer " + opToken, "application/json", `{"password":""}`},
	} {
		f.Add(s.method, s.target, s.auth, s.ctype, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, method, target, auth, ctype string, body []byte) {
		req, err := http.NewRequest(method, "https://gate.test"+target, bytes.NewReader(body))
		if err != nil || req.URL.Host != "gate.test" {
			return // not a request a server could receive
		}
		req.RemoteAddr = "192.0.2.1:40000"
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("X-Forwarded-For", string(body[:min(len(body), 40)]))
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, req)

		code := w.Code
		if code == http.StatusInternalServerError {
			t.Fatalf("%s %s: 500 %s", method, target, w.Body)
		}
		if code >= 300 && code < 400 {
			return // the mux's redirect of a path to its clean form
		}
		if !json.Valid(w.Body.Bytes()) && !(code == http.StatusNoContent && w.Body.Len() == 0) {
			t.Fatalf("%s %s: %d with a body that is not JSON: %q", method, target, code, w.Body)
		}
		if code >= 300 {
			return
		}
		p := path.Clean(req.URL.Path)
		if auth == master && strings.Contains(p, "/accounts/"+acctB) {
			t.Fatalf("%s %s: %d for account A's master about account B", method, target, code)
		}
		// Without a token only a login and a forgotten password (the same
		// 202 for anyone) succeed; a reset or confirmation needs a mailed
		// token nobody can guess.
		// The scheme's name is case-insensitive (RFC 9110 section 11.1).
		bearer := len(auth) >= 7 && strings.EqualFold(auth[:7], "Bearer ")
		if !bearer && !(method == "POST" && (p == "/api/v1/login" || p == "/api/v1/password/forgot")) {
			t.Fatalf("%s %s: %d without a token", method, target, code)
		}
	})
}

// FuzzClientIP feeds ClientIP any socket peer and X-Forwarded-For from a
// trusted proxy or anyone else: it never panics, an address from an
// untrusted peer is that peer, and what it returns is a valid address with
// no zone, IPv4 unmapped.
func FuzzClientIP(f *testing.F) {
	for _, s := range [][2]string{
		{"203.0.113.9:443", "198.51.100.7"},
		{"10.0.0.5:443", "198.51.100.7, 10.0.0.9"},
		{"10.0.0.5:443", "not-an-ip, 198.51.100.7"},
		{"10.0.0.5:443", "::ffff:198.51.100.7"},
		{"10.0.0.5:443", "fe80::1%eth0"},
		{"[::ffff:10.0.0.5]:443", ",,,"},
		{"[2001:db8::1]:443", "2001:db8::2"},
		{"garbage", ""},
	} {
		f.Add(s[0], s[1])
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	f.Fuzz(func(t *testing.T, peer, xff string) {
		r := &http.Request{RemoteAddr: peer, Header: http.Header{"X-Forwarded-For": {xff}}}
		a, err := ClientIP(r, trusted)
		if err != nil {
			return
		}
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			t.Fatalf("ClientIP(%q, %q) = %v", peer, xff, a)
		}
		ap, perr := netip.ParseAddrPort(peer)
		if perr == nil && !policy.Prefixes(trusted).Contains(ap.Addr()) && a != ap.Addr().Unmap().WithZone("") {
			t.Fatalf("ClientIP(%q, %q) = %v: an untrusted peer's header was believed", peer, xff, a)
		}
	})
}
