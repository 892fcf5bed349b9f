package admin

import (
	"bytes"
	"context"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/notify/mailtest"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// waitMail polls the test SMTP server until a message to rcpt whose
// subject contains subject arrives, and returns it.
func waitMail(t *testing.T, srv *mailtest.Server, rcpt, subject string, skip int) mailtest.Message {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		seen := 0
		for _, m := range srv.Messages() {
			if len(m.To) == 1 && m.To[0] == rcpt && strings.Contains(m.Data, "Subject: "+subject) {
				if seen == skip {
					return m
				}
				seen++
			}
		}
		time.Sleep(20 * time.Millisecond) // polling for a condition, not a fixed wait
	}
	t.Fatalf("no mail %q to %s arrived (have %d messages)", subject, rcpt, len(srv.Messages()))
	return mailtest.Message{}
}

var linkToken_ = regexp.MustCompile(`https://gate\.example\.com:8443(/[a-z/]+)\?token=([A-Za-z0-9._-]+)`)

// linkIn returns the path and token of the link in a message.
func linkIn(t *testing.T, m mailtest.Message, path string) string {
	t.Helper()
	sm := linkToken_.FindStringSubmatch(m.Data)
	if sm == nil || sm[1] != path {
		t.Fatalf("no %s link in:\n%s", path, m.Data)
	}
	return sm[2]
}

// confirmedEmail gives alice a confirmed address through the API: the
// master sets it, the link is mailed, alice follows it.
func (f *fixture) confirmedEmail(t *testing.T, m, username, addr string) string {
	t.Helper()
	r := f.req("PUT", "/api/v1/accounts/10042/users/"+username+"/email", m, EmailRequest{Email: addr})
	var v AddressView
	r.decode(t, &v)
	if r.status != http.StatusOK || v.Address != addr || v.Confirmed || !v.ConfirmationSent {
		t.Fatalf("set email: %d %s", r.status, r.body)
	}
	tok := linkIn(t, waitMail(t, f.mail, addr, "gatekeeper: confirm your email address", 0), "/email/confirm")
	if r := f.req("POST", "/api/v1/email/confirm", "", TokenRequest{Token: tok}); r.status != http.StatusNoContent {
		t.Fatalf("confirm: %d %s", r.status, r.body)
	}
	if r := f.req("POST", "/api/v1/email/confirm", "", TokenRequest{Token: tok}); r.errCode() != CodeInvalidToken {
		t.Fatalf("second confirmation: %d %s", r.status, r.body)
	}
	return tok
}

// TestForgotPasswordEndToEnd: an employee with a confirmed address asks
// for a link, it arrives through a real SMTP server, and sets a new
// password once; every session ends, the master's destinations hear of
// it, and the link, token and passwords appear in no log line.
func TestForgotPasswordEndToEnd(t *testing.T) {
	f := newFixture(t, fixtureOptions{mail: true})
	var clock atomic.Int64
	f.svc.now = func() time.Time { return time.Now().Add(time.Duration(clock.Load())) }
	f.setNotifications(acctA, policy.Notifications{Emails: []policy.Email{{Address: "owner@example.com"}}})
	m := f.token(master)
	alice := f.token(user)
	confirmTok := f.confirmedEmail(t, m, "alice", "alice@example.com")

	// The staff list shows the address, confirmed.
	var list struct{ Users []UserView }
	f.req("GET", "/api/v1/accounts/10042/users", m, nil).decode(t, &list)
	for _, u := range list.Users {
		if u.Username == "alice" && (u.Email == nil || u.Email.Address != "alice@example.com" || !u.Email.Confirmed) {
			t.Errorf("staff list: %+v", u.Email)
		}
	}

	r := f.req("POST", "/api/v1/password/forgot", "", ForgotRequest{Account: acctA, Username: "alice"})
	if r.status != http.StatusAccepted {
		t.Fatalf("forgot: %d %s", r.status, r.body)
	}
	mail := waitMail(t, f.mail, "alice@example.com", "gatekeeper: set a new password", 0)
	if !mail.TLS {
		t.Error("the reset link went in the clear")
	}
	tok := linkIn(t, mail, "/password/reset")

	const newPw = "alice-chose-this-one-7"
	r = f.req("POST", "/api/v1/password/reset", "", ResetRequest{Token: tok, New: newPw})
	var pc PasswordChange
	r.decode(t, &pc)
	if r.status != http.StatusOK || pc.SessionsEnded != 1 {
		t.Fatalf("reset: %d %s", r.status, r.body)
	}
	if r := f.req("GET", "/api/v1/me", alice, nil); r.status != http.StatusUnauthorized {
		t.Errorf("the old session after a reset: %d", r.status)
	}
	f.login(acctA, "alice", newPw)
	if r := f.req("POST", "/api/v1/login", "", LoginRequest{Account: acctA, Username: "alice", Password: pwAlice}); r.status != http.StatusUnauthorized {
		t.Errorf("the old password still works: %d", r.status)
	}
	// Once only.
	if r := f.req("POST", "/api/v1/password/reset", "", ResetRequest{Token: tok, New: "alice-again-pw-8888"}); r.errCode() != CodeInvalidToken {
		t.Errorf("second use: %d %s", r.status, r.body)
	}
	// Audited and notified as password.reset, without the token.
	es, err := f.bolt.Audit(context.Background(), acctA, policy.AuditQuery{Limit: 100})
	resets := 0
	for _, e := range es {
		if e.Action == "password.reset" {
			resets++
			if e.Actor != "alice" || e.Target != "user/alice" {
				t.Errorf("audit: %+v", e)
			}
		}
	}
	if err != nil || resets != 1 {
		t.Fatalf("audit: %d resets, %v", resets, err)
	}
	out, err := f.bolt.OutboxEntries(context.Background(), acctA)
	if err != nil || len(out) == 0 || out[len(out)-1].Event != policy.EventPasswordReset ||
		len(out[len(out)-1].Deliveries) != 1 {
		t.Fatalf("outbox: %+v %v", out, err)
	}

	// Expired: a link older than 30 minutes is refused.
	f.req("POST", "/api/v1/password/forgot", "", ForgotRequest{Account: acctA, Username: "alice"})
	expired := linkIn(t, waitMail(t, f.mail, "alice@example.com", "gatekeeper: set a new password", 1), "/password/reset")
	clock.Store(int64(31 * time.Minute))
	if r := f.req("POST", "/api/v1/password/reset", "", ResetRequest{Token: expired, New: "alice-late-pw-99999"}); r.errCode() != CodeInvalidToken {
		t.Errorf("expired link: %d %s", r.status, r.body)
	}
	clock.Store(0)

	// Voided by any later password change.
	f.req("POST", "/api/v1/password/forgot", "", ForgotRequest{Account: acctA, Username: "alice"})
	voided := linkIn(t, waitMail(t, f.mail, "alice@example.com", "gatekeeper: set a new password", 2), "/password/reset")
	if r := f.req("POST", "/api/v1/accounts/10042/users/alice/password", m, newPasswordBody{Password: "a-temporary-pw-4242"}); r.status != http.StatusOK {
		t.Fatalf("temporary password: %d %s", r.status, r.body)
	}
	if r := f.req("POST", "/api/v1/password/reset", "", ResetRequest{Token: voided, New: "alice-void-pw-55555"}); r.errCode() != CodeInvalidToken {
		t.Errorf("a link from before a password change: %d %s", r.status, r.body)
	}

	// The master's own address and reset.
	r = f.req("PUT", "/api/v1/me/email", m, EmailRequest{Email: "owner@studio.example"})
	if r.status != http.StatusOK {
		t.Fatalf("master email: %d %s", r.status, r.body)
	}
	mtok := linkIn(t, waitMail(t, f.mail, "owner@studio.example", "gatekeeper: confirm your email address", 0), "/email/confirm")
	if r := f.req("POST", "/api/v1/email/confirm", "", TokenRequest{Token: mtok}); r.status != http.StatusNoContent {
		t.Fatalf("master confirm: %d %s", r.status, r.body)
	}
	f.req("POST", "/api/v1/password/forgot", "", ForgotRequest{Account: acctA})
	mreset := linkIn(t, waitMail(t, f.mail, "owner@studio.example", "gatekeeper: set a new password", 0), "/password/reset")
	const newMaster = "the-owner-new-pw-31"
	if r := f.req("POST", "/api/v1/password/reset", "", ResetRequest{Token: mreset, New: newMaster}); r.status != http.StatusOK {
		t.Fatalf("master reset: %d %s", r.status, r.body)
	}
	if r := f.req("GET", "/api/v1/me", m, nil); r.status != http.StatusUnauthorized {
		t.Errorf("the master's session after a reset: %d", r.status)
	}
	m = f.login(acctA, "", newMaster)

	// Changing alice's address tells the old one.
	f.req("PUT", "/api/v1/accounts/10042/users/alice/email", m, EmailRequest{Email: "alice@elsewhere.example"})
	notice := waitMail(t, f.mail, "alice@example.com", "gatekeeper: your email address was changed", 0)
	if !strings.Contains(notice.Data, "alice@elsewhere.example") || linkToken_.MatchString(notice.Data) {
		t.Errorf("change notice:\n%s", notice.Data)
	}
	f.svc.WaitMail()

	logs := f.logs.String()
	for _, s := range []string{confirmTok, tok, expired, voided, mtok, mreset, newPw, newMaster, "/password/reset?", "/email/confirm?"} {
		if strings.Contains(logs, s) {
			t.Errorf("secret %q is in the log", s)
		}
	}
	audit, _ := f.bolt.Audit(context.Background(), acctA, policy.AuditQuery{Limit: 100})
	for _, e := range audit {
		for _, s := range []string{confirmTok, tok, mtok, mreset, strings.SplitN(tok, ".", 3)[1]} {
			if bytes.Contains(e.Before, []byte(s)) || bytes.Contains(e.After, []byte(s)) {
				t.Errorf("audit entry %s holds a token", e.Action)
			}
		}
	}
}

// countingStore counts the store calls a request or a pass makes.
type countingStore struct {
	Store
	views, updates, lists, reads atomic.Int64
}

// Accounts counts the listings of every account.
func (c *countingStore) Accounts(ctx context.Context) ([]policy.Account, error) {
	c.lists.Add(1)
	return c.Store.Accounts(ctx)
}

// Account counts the reads of one account.
func (c *countingStore) Account(ctx context.Context, id string) (policy.Account, error) {
	c.reads.Add(1)
	return c.Store.Account(ctx, id)
}

func (c *countingStore) View(ctx context.Context, account string, fn func(policy.Tx) error) error {
	c.views.Add(1)
	return c.Store.View(ctx, account, fn)
}

func (c *countingStore) Update(ctx context.Context, account string, fn func(policy.Tx) error) error {
	c.updates.Add(1)
	return c.Store.Update(ctx, account, fn)
}

// TestForgotPasswordCostsTheSame: whether or not the account, the user or
// a confirmed address exists, the answer is the same 202 and the request
// does the same work before answering: one store read, one secret
// minted, no write. The link is stored and mailed afterwards. Counted,
// not timed.
func TestForgotPasswordCostsTheSame(t *testing.T) {
	f := newFixture(t, fixtureOptions{mail: true})
	m := f.token(master)
	f.confirmedEmail(t, m, "alice", "alice@example.com")
	f.req("PUT", "/api/v1/accounts/10042/users/bob/email", m, EmailRequest{Email: "bob@example.com"}) // never confirmed
	f.svc.WaitMail()

	cs := &countingStore{Store: f.svc.store}
	f.svc.store = cs
	var mu sync.Mutex
	mints := 0
	f.svc.mintSecret = func() string {
		mu.Lock()
		mints++
		mu.Unlock()
		return newSecret()
	}
	var first []byte
	for _, tc := range []struct {
		name     string
		body     ForgotRequest
		mailSent bool
	}{
		{"confirmed email", ForgotRequest{Account: acctA, Username: "alice"}, true},
		{"unknown account", ForgotRequest{Account: "99999", Username: "alice"}, false},
		{"malformed account", ForgotRequest{Account: "not-an-account", Username: "alice"}, false},
		{"unknown user", ForgotRequest{Account: acctA, Username: "nobody-here"}, false},
		{"user without email", ForgotRequest{Account: acctA, Username: "carol"}, false},
		{"unconfirmed email", ForgotRequest{Account: acctA, Username: "bob"}, false},
		{"master without email", ForgotRequest{Account: acctA}, false},
		{"master of a missing account", ForgotRequest{Account: "99999"}, false},
	} {
		cs.views.Store(0)
		cs.updates.Store(0)
		mu.Lock()
		mints = 0
		mu.Unlock()
		sent := len(f.mail.Messages())
		r := f.req("POST", "/api/v1/password/forgot", "", tc.body)
		views, updates := cs.views.Load(), cs.updates.Load()
		mu.Lock()
		n := mints
		mu.Unlock()
		if r.status != http.StatusAccepted {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
		if first == nil {
			first = r.body
		} else if !bytes.Equal(r.body, first) {
			t.Errorf("%s: body %s, want %s", tc.name, r.body, first)
		}
		if views != 1 || n != 1 {
			t.Errorf("%s: %d reads and %d secrets before answering, want 1 and 1", tc.name, views, n)
		}
		f.svc.WaitMail()
		if got := len(f.mail.Messages()) - sent; (got == 1) != tc.mailSent || got > 1 {
			t.Errorf("%s: %d mails sent", tc.name, got)
		}
		if !tc.mailSent && cs.updates.Load() != 0 {
			t.Errorf("%s: %d writes", tc.name, cs.updates.Load())
		}
		_ = updates
	}
}

// TestForgotPasswordLimited: requests are limited per login like logins,
// so nobody can flood someone's mailbox.
func TestForgotPasswordLimited(t *testing.T) {
	f := newFixture(t, fixtureOptions{mail: true, limits: LoginLimits{PerIP: Limit{Burst: 1000}, PerLogin: Limit{Burst: 2}}})
	m := f.token(master)
	f.confirmedEmail(t, m, "alice", "alice@example.com")
	codes := []int{}
	for range 4 {
		codes = append(codes, f.req("POST", "/api/v1/password/forgot", "", ForgotRequest{Account: acctA, Username: "alice"}).status)
	}
	if codes[0] != http.StatusAccepted || codes[1] != http.StatusAccepted || codes[3] != http.StatusTooManyRequests {
		t.Errorf("statuses %v", codes)
	}
	f.svc.WaitMail()
	n := 0
	for _, msg := range f.mail.Messages() {
		if strings.Contains(msg.Data, "Subject: gatekeeper: set a new password") {
			n++
		}
	}
	if n > 2 {
		t.Errorf("%d reset mails after a limit of 2", n)
	}
}

// TestEmailWithoutMailServer: with no SMTP server an address is kept
// unconfirmed and a forgotten password mails nothing, answering the same.
func TestEmailWithoutMailServer(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.token(master)
	r := f.req("PUT", "/api/v1/accounts/10042/users/alice/email", m, EmailRequest{Email: "alice@example.com"})
	var v AddressView
	r.decode(t, &v)
	if r.status != http.StatusOK || v.Confirmed || v.ConfirmationSent {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if r := f.req("POST", "/api/v1/password/forgot", "", ForgotRequest{Account: acctA, Username: "alice"}); r.status != http.StatusAccepted {
		t.Errorf("forgot: %d %s", r.status, r.body)
	}
	for _, bad := range []string{"not an address", "Alice <alice@example.com>", "a@b\r\nBcc: x@y"} {
		if r := f.req("PUT", "/api/v1/me/email", m, EmailRequest{Email: bad}); r.errCode() != CodeInvalidEmail {
			t.Errorf("%q: %d %s", bad, r.status, r.body)
		}
	}
}

// TestAccessRequestOutcomeMailed: a requester with a confirmed address
// is mailed the outcome of their access request; one without is not.
func TestAccessRequestOutcomeMailed(t *testing.T) {
	f := newFixture(t, fixtureOptions{mail: true})
	m := f.token(master)
	f.confirmedEmail(t, m, "alice", "alice@example.com")
	now := time.Now()
	for _, r := range []policy.AccessRequest{
		{ID: "ar1", User: "alice", IP: netip.MustParseAddr("192.0.2.44")},
		{ID: "ar2", User: "alice", IP: netip.MustParseAddr("192.0.2.45")},
		{ID: "ar3", User: "bob", IP: netip.MustParseAddr("192.0.2.46")},
	} {
		r.Status, r.CreatedAt, r.ExpiresAt = policy.RequestPending, now, now.Add(policy.RequestLifetime)
		f.putRequest(acctA, r)
	}
	if r := f.req("POST", "/api/v1/accounts/10042/access-requests/ar1/approve", m, nil); r.status != http.StatusOK {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
	if r := f.req("POST", "/api/v1/accounts/10042/access-requests/ar2/deny", m, denyBody{Reason: "use the office VPN"}); r.status != http.StatusOK {
		t.Fatalf("deny: %d %s", r.status, r.body)
	}
	if r := f.req("POST", "/api/v1/accounts/10042/access-requests/ar3/deny", m, denyBody{Reason: "no"}); r.status != http.StatusOK {
		t.Fatalf("deny bob: %d %s", r.status, r.body)
	}
	ok := waitMail(t, f.mail, "alice@example.com", "gatekeeper: your access request was approved", 0)
	if !strings.Contains(ok.Data, "192.0.2.44") || !strings.Contains(ok.Data, "allowed until") {
		t.Errorf("approval mail:\n%s", ok.Data)
	}
	no := waitMail(t, f.mail, "alice@example.com", "gatekeeper: your access request was denied", 0)
	if !strings.Contains(no.Data, "192.0.2.45") || !strings.Contains(no.Data, "use the office VPN") {
		t.Errorf("denial mail:\n%s", no.Data)
	}
	f.svc.WaitMail()
	for _, msg := range f.mail.Messages() {
		if strings.Contains(msg.Data, "192.0.2.46") {
			t.Errorf("bob has no address, yet a mail went to %v", msg.To)
		}
	}
}

// TestForgotPasswordLimitedPerAddress: one address asking for many logins
// (a mail bomb, or a probe for who has an address) is limited too, found
// or not, before any mail.
func TestForgotPasswordLimitedPerAddress(t *testing.T) {
	f := newFixture(t, fixtureOptions{mail: true, limits: LoginLimits{PerIP: Limit{Burst: 2}, PerLogin: Limit{Burst: 1000}}})
	m := f.token(master)
	f.confirmedEmail(t, m, "alice", "alice@example.com")
	var codes []int
	for _, who := range []string{"alice", "nobody", "bob", "alice"} {
		codes = append(codes, f.req("POST", "/api/v1/password/forgot", "", ForgotRequest{Account: acctA, Username: who}).status)
	}
	if codes[0] != http.StatusAccepted || codes[1] != http.StatusAccepted || codes[2] != http.StatusTooManyRequests || codes[3] != http.StatusTooManyRequests {
		t.Errorf("statuses %v, want 202 202 429 429", codes)
	}
	f.svc.WaitMail()
	n := 0
	for _, msg := range f.mail.Messages() {
		if strings.Contains(msg.Data, "Subject: gatekeeper: set a new password") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d reset mails, want alice's first one only", n)
	}
}
