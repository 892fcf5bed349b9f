package admin

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

var webClient = netip.MustParseAddr("198.51.100.7")

// actorOf logs in and returns the session's actor.
func (f *fixture) actorOf(account, username, pw string) Actor {
	f.t.Helper()
	a, err := f.svc.Authenticate(context.Background(), f.login(account, username, pw), webClient)
	if err != nil {
		f.t.Fatal(err)
	}
	return a
}

func (f *fixture) setWebAccess(username string, on bool) {
	f.t.Helper()
	err := f.bolt.Update(context.Background(), acctA, func(tx policy.Tx) error {
		u, err := tx.User(username)
		u.WebAccess = on
		return errors.Join(err, tx.PutUser(u))
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// tokenOf returns the token of a hand-off address.
func tokenOf(t *testing.T, to string) string {
	t.Helper()
	u, err := url.Parse(to)
	if err != nil || u.Scheme != "https" || u.Path != CallbackPath {
		t.Fatalf("hand-off address %q", to)
	}
	return u.Query().Get("token")
}

func TestWebHandoff(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx := context.Background()
	f.setWebAccess("alice", true)
	alice := f.actorOf(acctA, "alice", pwAlice)
	g := NewWebGate(f.bolt, 0, nil)

	to, err := f.svc.IssueWebHandoff(ctx, alice, "app.test:8444", "/reports?q=1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(to, "https://app.test:8444"+CallbackPath+"?token=") {
		t.Fatalf("sent to %q", to)
	}
	token := tokenOf(t, to)
	if u := f.user(acctA, "alice"); len(u.Web.Handoffs) != 1 || strings.Contains(u.Web.Handoffs[0].Hash, token) {
		t.Fatalf("stored hand-offs %+v: want one, hashed", u.Web.Handoffs)
	}
	// Not on another host.
	if _, err := g.TakeHandoff(ctx, acctA, "app.test:9999", token, webClient); err == nil {
		t.Fatal("a hand-off taken on another host")
	}
	// Used up by that attempt: a token is good for one try.
	if _, err := g.TakeHandoff(ctx, acctA, "app.test:8444", token, webClient); err == nil {
		t.Fatal("a hand-off taken after a refused try")
	}
	to, _ = f.svc.IssueWebHandoff(ctx, alice, "app.test:8444", "/reports?q=1")
	id, err := g.TakeHandoff(ctx, acctA, "app.test:8444", tokenOf(t, to), webClient)
	if err != nil || id.Username != "alice" || id.Return != "/reports?q=1" {
		t.Fatalf("TakeHandoff: %+v %v", id, err)
	}
	if e := f.lastAudit(acctA); e.Action != "web.sign_in" || e.Actor != "alice" || e.Target != "web/app.test:8444" {
		t.Fatalf("audit: %+v", e)
	}
	if _, err := g.TakeHandoff(ctx, acctA, "app.test:8444", tokenOf(t, to), webClient); err == nil {
		t.Fatal("a replayed hand-off was taken")
	}
	// Another account's gate does not know it.
	to, _ = f.svc.IssueWebHandoff(ctx, alice, "app.test", "/")
	if _, err := g.TakeHandoff(ctx, acctB, "app.test", tokenOf(t, to), webClient); err == nil {
		t.Fatal("a hand-off taken by another account's route")
	}

	for _, tc := range []struct{ host, to string }{
		{"b-app.test", "/"},            // another account's application
		{"evil.example", "/"},          // no login route
		{"app.test", "//evil.example"}, // a return address off the host
		{"app.test", "/\\evil.example"},
		{"app.test", "https://evil.example/"},
		{"app.test", "javascript:alert(1)"},
		{"app.test", "/%2F%2Fevil.example"},
		{"app.test", "/a\r\nLocation: https://evil.example"},
		{"app.test:x", "/"},
		{"", "/"},
	} {
		if _, err := f.svc.IssueWebHandoff(ctx, alice, tc.host, tc.to); AsError(err).Status != http.StatusBadRequest {
			t.Errorf("IssueWebHandoff(%q, %q): %v, want 400", tc.host, tc.to, err)
		}
	}
	// Without web access: refused, and a token issued before is refused.
	to, _ = f.svc.IssueWebHandoff(ctx, alice, "app.test", "/")
	f.setWebAccess("alice", false)
	if _, err := g.TakeHandoff(ctx, acctA, "app.test", tokenOf(t, to), webClient); err == nil {
		t.Fatal("a hand-off taken by a user whose web access was taken away")
	}
	if _, err := f.svc.IssueWebHandoff(ctx, alice, "app.test", "/"); AsError(err).Code != CodeNoWebAccess {
		t.Fatalf("IssueWebHandoff without web access: %v", err)
	}
	// A master always may.
	master := f.actorOf(acctA, "", pwA)
	to, err = f.svc.IssueWebHandoff(ctx, master, "app.test", "/")
	if err != nil {
		t.Fatal(err)
	}
	if id, err := g.TakeHandoff(ctx, acctA, "app.test", tokenOf(t, to), webClient); err != nil || id.Username != "" {
		t.Fatalf("master's hand-off: %+v %v", id, err)
	}
}

// TestWebHandoffExpires: a token older than a minute is refused.
func TestWebHandoffExpires(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f := newFixture(t, fixtureOptions{now: clock})
	f.setWebAccess("alice", true)
	ctx := context.Background()
	to, err := f.svc.IssueWebHandoff(ctx, f.actorOf(acctA, "alice", pwAlice), "app.test", "/")
	if err != nil {
		t.Fatal(err)
	}
	g := NewWebGate(f.bolt, 0, nil)
	g.now = func() time.Time { return clock().Add(policy.WebHandoffTTL) }
	if _, err := g.TakeHandoff(ctx, acctA, "app.test", tokenOf(t, to), webClient); err == nil {
		t.Fatal("an expired hand-off was taken")
	}
}

// TestWebHandoffOnce: two gates taking one token at once (two instances
// of a fleet): exactly one gets it.
func TestWebHandoffOnce(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.setWebAccess("alice", true)
	ctx := context.Background()
	to, err := f.svc.IssueWebHandoff(ctx, f.actorOf(acctA, "alice", pwAlice), "app.test", "/")
	if err != nil {
		t.Fatal(err)
	}
	token := tokenOf(t, to)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := NewWebGate(f.bolt, 0, nil).TakeHandoff(ctx, acctA, "app.test", token, webClient); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d gates took the token, want 1", ok)
	}
}

// TestWebSessionsEnd: a logout here or at the application, taking web
// access away, deactivating and offboarding each raise the web epoch.
func TestWebSessionsEnd(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx := context.Background()
	f.setWebAccess("alice", true)
	epoch := func() uint64 { return f.user(acctA, "alice").Web.Epoch }
	e0 := epoch()
	if err := f.svc.Logout(ctx, f.actorOf(acctA, "alice", pwAlice)); err != nil {
		t.Fatal(err)
	}
	if epoch() != e0+1 {
		t.Fatalf("admin logout: epoch %d, want %d", epoch(), e0+1)
	}
	tok := f.login(acctA, "alice", pwAlice)
	if err := NewWebGate(f.bolt, 0, nil).EndWebSessions(ctx, acctA, "alice", webClient); err != nil {
		t.Fatal(err)
	}
	if epoch() != e0+2 {
		t.Fatalf("logout at the application: epoch %d, want %d", epoch(), e0+2)
	}
	if r := f.req("GET", "/api/v1/me", tok, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("admin session after a logout at the application: %d", r.status)
	}
	master := f.login(acctA, "", pwA)
	off := false
	if r := f.req("PATCH", "/api/v1/accounts/"+acctA+"/users/alice", master, map[string]any{"web_access": off}); r.status != http.StatusOK {
		t.Fatalf("PATCH web_access: %d %s", r.status, r.body)
	}
	if u := f.user(acctA, "alice"); u.WebAccess || u.Web.Epoch != e0+3 {
		t.Fatalf("web access taken away: %+v", u.Web)
	}
	f.setWebAccess("alice", true)
	if r := f.req("POST", "/api/v1/accounts/"+acctA+"/users/alice/offboard", master, nil); r.status != http.StatusOK {
		t.Fatalf("offboard: %d %s", r.status, r.body)
	}
	if u := f.user(acctA, "alice"); u.WebAccess || u.MayUseWeb() || u.Web.Epoch != e0+4 {
		t.Fatalf("offboarded: web access %v, epoch %d", u.WebAccess, u.Web.Epoch)
	}
}

// TestWebAccessAPI: POST and PATCH take web_access and the staff list
// shows it.
func TestWebAccessAPI(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	master := f.login(acctA, "", pwA)
	r := f.req("POST", "/api/v1/accounts/"+acctA+"/users", master,
		map[string]any{"username": "dora", "password": "dora-password-long-1", "web_access": true})
	if r.status != http.StatusCreated {
		t.Fatalf("POST: %d %s", r.status, r.body)
	}
	var v UserView
	r.decode(t, &v)
	if !v.WebAccess {
		t.Fatalf("created %+v without web access", v)
	}
	r = f.req("PATCH", "/api/v1/accounts/"+acctA+"/users/dora", master, map[string]any{"web_access": false})
	var ch UserChange
	r.decode(t, &ch)
	if r.status != http.StatusOK || ch.User.WebAccess {
		t.Fatalf("PATCH: %d %+v", r.status, ch)
	}
	if e := f.lastAudit(acctA); e.Action != "user.update" || !strings.Contains(string(e.Before), `"web_access":true`) {
		t.Fatalf("audit: %+v", e)
	}
}

func FuzzHandoffToken(f *testing.F) {
	f.Add("YWxpY2U.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "alice")
	f.Add(".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "")
	f.Add("..", "a.b")
	f.Fuzz(func(t *testing.T, raw, user string) {
		parseHandoffToken(raw)
		if len(user) > 100 {
			return
		}
		tok, hash := newHandoffToken(user)
		got, ok := parseHandoffToken(tok)
		if !ok || got != user || hash != hashToken(tok) {
			t.Fatalf("token for %q read back as %q %v", user, got, ok)
		}
	})
}

// TestWebAccessByManager: whoever may change desktop_access may change
// web_access, by the same rule: a manager for the users they manage, a
// user without the permission never.
func TestWebAccessByManager(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	err := f.bolt.Update(context.Background(), acctA, func(tx policy.Tx) error {
		u, err := tx.User("bob")
		u.Permissions = []string{policy.PermManageStaff}
		return errors.Join(err, tx.PutUser(u))
	})
	if err != nil {
		t.Fatal(err)
	}
	bob := f.login(acctA, "bob", pwBob)
	alice := f.login(acctA, "alice", pwAlice)
	for _, tc := range []struct {
		who, token, target string
		field              string
		want               int
	}{
		{"manager", bob, "alice", "web_access", http.StatusOK},
		{"manager", bob, "alice", "desktop_access", http.StatusOK},
		{"user", alice, "carol", "web_access", http.StatusForbidden},
		{"user", alice, "carol", "desktop_access", http.StatusForbidden},
	} {
		r := f.req("PATCH", "/api/v1/accounts/"+acctA+"/users/"+tc.target, tc.token, map[string]any{tc.field: true})
		if r.status != tc.want {
			t.Errorf("%s sets %s of %s: %d, want %d (%s)", tc.who, tc.field, tc.target, r.status, tc.want, r.body)
		}
	}
}
