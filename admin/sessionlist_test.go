package admin

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

type sessionList struct {
	Sessions []SessionView `json:"sessions"`
}

// TestSessionsSeenAndEnded is issue 16's show: each session records its
// device, address, creation and last use; a person lists and ends their
// own; a master lists the account's and ends an employee's, whose token
// answers 401 at once.
func TestSessionsSeenAndEnded(t *testing.T) {
	clock := newTestClock()
	f := newFixture(t, fixtureOptions{now: clock.now})
	login := func(ua string) string {
		r := f.req("POST", "/api/v1/login", "", LoginRequest{Account: acctA, Username: "alice", Password: pwAlice},
			"User-Agent: "+ua)
		var res LoginResult
		r.decode(t, &res)
		return res.Token
	}
	laptop := login("Mozilla/5.0 (Windows NT 10.0) Firefox/140.0")
	phone := login("Mozilla/5.0 (iPhone) Safari " + strings.Repeat("é", 300))
	master := f.login(acctA, "", pwA)

	var mine sessionList
	f.req("GET", "/api/v1/me/sessions", laptop, nil).decode(t, &mine)
	if len(mine.Sessions) != 2 {
		t.Fatalf("own sessions: %+v", mine)
	}
	var cur, other SessionView
	for _, s := range mine.Sessions {
		if s.Current {
			cur = s
		} else {
			other = s
		}
	}
	if cur.UserAgent != "Mozilla/5.0 (Windows NT 10.0) Firefox/140.0" || cur.ClientIP != "127.0.0.1" || cur.CreatedAt.IsZero() ||
		cur.LastUsedAt.IsZero() || cur.Username != "alice" {
		t.Errorf("current session: %+v", cur)
	}
	if len(other.UserAgent) > maxUserAgent || len(other.UserAgent) < maxUserAgent-1 || !utf8.ValidString(other.UserAgent) {
		t.Errorf("phone's user agent kept as %q", other.UserAgent)
	}
	// Last use moves when the session is used a minute later.
	clock.ns.Add(int64(2 * time.Minute))
	f.req("GET", "/api/v1/me", phone, nil)
	f.req("GET", "/api/v1/me/sessions", laptop, nil).decode(t, &mine)
	for _, s := range mine.Sessions {
		if s.ID == other.ID && !s.LastUsedAt.After(other.LastUsedAt) {
			t.Errorf("last use did not move: %v, was %v", s.LastUsedAt, other.LastUsedAt)
		}
	}

	// A master sees every session of the account, and ends alice's phone.
	var all sessionList
	f.req("GET", "/api/v1/accounts/10042/sessions", master, nil).decode(t, &all)
	if len(all.Sessions) != 3 {
		t.Fatalf("account sessions: %+v", all)
	}
	if r := f.req("DELETE", "/api/v1/accounts/10042/sessions/"+other.ID, master, nil); r.status != 204 {
		t.Fatalf("master ends alice's session: %d %s", r.status, r.body)
	}
	if r := f.req("GET", "/api/v1/me", phone, nil); r.status != 401 {
		t.Fatalf("ended token: %d", r.status)
	}
	e := f.lastAudit(acctA)
	if e.Action != "session.end" || e.Target != "user/alice" || e.Actor != "master" {
		t.Errorf("audit: %+v", e)
	}
	if r := f.req("DELETE", "/api/v1/accounts/10042/sessions/"+other.ID, master, nil); r.status != 404 {
		t.Fatalf("ended twice: %d", r.status)
	}
	// Another account's master cannot end it, nor see it.
	if r := f.req("DELETE", "/api/v1/accounts/10042/sessions/"+cur.ID, f.login(acctB, "", pwB), nil); r.status != 404 {
		t.Fatalf("other master: %d", r.status)
	}
	// Alice cannot end the master's session through her own call.
	var ms sessionList
	f.req("GET", "/api/v1/me/sessions", master, nil).decode(t, &ms)
	if r := f.req("DELETE", "/api/v1/me/sessions/"+ms.Sessions[0].ID, laptop, nil); r.status != 404 {
		t.Fatalf("alice ends the master's: %d", r.status)
	}
	// Ending one's own current session is a logout.
	if r := f.req("DELETE", "/api/v1/me/sessions/"+cur.ID, laptop, nil); r.status != 204 {
		t.Fatalf("end own: %d %s", r.status, r.body)
	}
	if r := f.req("GET", "/api/v1/me", laptop, nil); r.status != 401 {
		t.Fatalf("own ended token: %d", r.status)
	}
}

// TestTouchDoesNotRevive: recording a last use never puts back a session
// that was ended meanwhile.
func TestTouchDoesNotRevive(t *testing.T) {
	clock := newTestClock()
	f := newFixture(t, fixtureOptions{now: clock.now})
	tok := f.login(acctA, "alice", pwAlice)
	ses, err := f.bolt.Session(context.Background(), acctA, hashToken(tok))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.bolt.Update(context.Background(), acctA, func(tx policy.Tx) error { return tx.DeleteSession(ses.TokenHash) }); err != nil {
		t.Fatal(err)
	}
	clock.ns.Add(int64(time.Hour))
	f.svc.touch(context.Background(), ses)
	if _, err := f.bolt.Session(context.Background(), acctA, ses.TokenHash); err == nil {
		t.Fatal("an ended session came back")
	}
	if r := f.req("GET", "/api/v1/me", tok, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("ended token: %d", r.status)
	}
}

func TestTrimUserAgent(t *testing.T) {
	for in, want := range map[string]string{
		"  Firefox\x00\x07\n 1 ":  "Firefox 1",
		"\xff\xfeok":              "ok",
		strings.Repeat("ab", 100): strings.Repeat("ab", 80),
		strings.Repeat("é", 100):  strings.Repeat("é", 80),
	} {
		if got := trimUserAgent(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
