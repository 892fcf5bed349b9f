package web

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/notify/mailtest"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

var mailedLink = regexp.MustCompile(`https://gate\.example\.com:8443(/password/reset\?token=[A-Za-z0-9._-]+)`)

// waitLink polls the SMTP server for the n-th reset mail to rcpt and
// returns the path of its link.
func waitLink(t *testing.T, srv *mailtest.Server, rcpt string, n int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		seen := 0
		for _, m := range srv.Messages() {
			if sm := mailedLink.FindStringSubmatch(m.Data); sm != nil && len(m.To) == 1 && m.To[0] == rcpt {
				if seen == n {
					return sm[1]
				}
				seen++
			}
		}
		time.Sleep(20 * time.Millisecond) // polling for a condition
	}
	t.Fatalf("no reset mail to %s", rcpt)
	return ""
}

// TestForgotPasswordPages: from the login page's "Forgot your password?"
// to a mailed link (through a real SMTP server) whose page sets a new
// password once.
func TestForgotPasswordPages(t *testing.T) {
	f := newFixture(t, fixtureOptions{mail: true})
	err := f.bolt.Update(context.Background(), acctA, func(tx policy.Tx) error {
		u, err := tx.User("alice")
		if err != nil {
			return err
		}
		u.Email = policy.MailAddress{Address: "alice@example.com", Confirmed: true}
		return tx.PutUser(u)
	})
	if err != nil {
		t.Fatal(err)
	}
	c := f.client()
	c.get("/login").has(t, `href="/password/forgot"`)
	c.get("/password/forgot").has(t, "Email me a link")
	p := c.submit("/password/forgot", url.Values{"account": {acctA}, "username": {"alice"}})
	if p.status != http.StatusAccepted {
		t.Fatalf("forgot: %s\n%s", p.summary(), p.body)
	}
	p.has(t, "If this login has a confirmed email address")
	link := waitLink(t, f.mail, "alice@example.com", 0)

	c2 := f.client() // the mail is opened elsewhere, as it may be
	c2.get(link).has(t, "Set the new password")
	const newPw = "alice-web-chosen-pw-1"
	tok := strings.TrimPrefix(link, "/password/reset?token=")
	if p := c2.submit("/password/reset", url.Values{"token": {tok}, "new": {newPw}, "repeat": {"something-else-12"}}); p.status != http.StatusBadRequest {
		t.Errorf("different repeat: %s", p.summary())
	}
	if p := c2.submit("/password/reset", url.Values{"token": {tok}, "new": {newPw}, "repeat": {newPw}}); p.summary() != "303 /login" {
		t.Fatalf("reset: %s\n%s", p.summary(), p.body)
	}
	f.client().mustLogin(acctA, "alice", newPw)
	c2.get(link)
	p = c2.submit("/password/reset", url.Values{"token": {tok}, "new": {"alice-second-try-22"}, "repeat": {"alice-second-try-22"}})
	if p.status != http.StatusBadRequest {
		t.Errorf("second use: %s", p.summary())
	}
	p.has(t, "This link is not valid")
}

// TestForgotPasswordWithoutMail: without notify.smtp the page says whom to
// ask instead of offering a form that could never deliver.
func TestForgotPasswordWithoutMail(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	c := f.client()
	p := c.get("/password/forgot")
	p.has(t, "Ask the account holder")
	p.lacks(t, "Email me a link")
	c.get("/login?as=master").has(t, `href="/password/forgot?as=master"`)
	c.get("/password/forgot?as=master").has(t, "Ask the operator")
}

var confirmLink = regexp.MustCompile(`https://gate\.example\.com:8443(/email/confirm\?token=([A-Za-z0-9._-]+))`)

// TestEmailPages: the master sets an employee's address on the staff
// page, the staff list shows it unconfirmed, and the link mailed to it
// confirms it through a page that asks for a click.
func TestEmailPages(t *testing.T) {
	f := newFixture(t, fixtureOptions{mail: true})
	m := f.as(master)
	m.get("/accounts/10042/users").has(t, `href="/accounts/10042/users/alice/email"`)
	m.get("/accounts/10042/users/alice/email")
	if p := m.submit("/accounts/10042/users/alice/email", url.Values{"email": {"Alice <x@y>"}}); p.status != http.StatusBadRequest {
		t.Errorf("a display name: %s", p.summary())
	}
	m.get("/accounts/10042/users/alice/email")
	if p := m.submit("/accounts/10042/users/alice/email", url.Values{"email": {"alice@example.com"}}); p.summary() != "303 /accounts/10042/users" {
		t.Fatalf("set: %s\n%s", p.summary(), p.body)
	}
	m.get("/accounts/10042/users").has(t, "alice@example.com", "not confirmed")

	var link, tok string
	deadline := time.Now().Add(30 * time.Second)
	for link == "" && time.Now().Before(deadline) {
		for _, msg := range f.mail.Messages() {
			if sm := confirmLink.FindStringSubmatch(msg.Data); sm != nil {
				link, tok = sm[1], sm[2]
			}
		}
		time.Sleep(20 * time.Millisecond) // polling for a condition
	}
	if link == "" {
		t.Fatal("no confirmation mail")
	}
	c := f.client()
	c.get(link).has(t, "Confirm my address")
	c.submit("/email/confirm", url.Values{"token": {tok}}).has(t, "Your email address is confirmed")
	p := m.get("/accounts/10042/users")
	p.has(t, "alice@example.com", ">confirmed<")
	p.lacks(t, "not confirmed")

	// Everyone sets their own.
	a := f.as(user)
	a.get("/me/email")
	if p := a.submit("/me/email", url.Values{"email": {"alice@home.example"}}); p.summary() != "303 /me/email" {
		t.Fatalf("own: %s", p.summary())
	}
	a.get("/me/email").has(t, "alice@home.example", "not confirmed yet")
}
