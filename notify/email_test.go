package notify_test

import (
	"crypto/tls"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/notify"
	"github.com/gatekeeper-dev/gatekeeper/notify/mailtest"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

var modeOff = policy.OutboxEntry{ID: "7", Account: "10042", Event: policy.EventFirewallModeChanged,
	Entry: policy.AuditEntry{ID: "7", Account: "10042", Actor: "master", Role: policy.RoleMaster, ClientIP: "192.0.2.7",
		Action: "firewall.mode", Target: "account/10042", Time: time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC),
		Before: json.RawMessage(`{"mode":"on"}`), After: json.RawMessage(`{"mode":"off"}`)}}

func TestEmailOverSTARTTLS(t *testing.T) {
	srv := mailtest.Start(t, true)
	m := notify.NewMail(notify.MailOptions{Addr: srv.Addr, From: "gatekeeper@example.com",
		TLS: &tls.Config{RootCAs: srv.Roots, ServerName: "127.0.0.1"}, PageURL: "https://gate.example.com:8443"})
	status, err := m.Send(t.Context(), policy.Destination{Kind: policy.DestEmail, Address: "owner@example.com"}, modeOff)
	if err != nil || status != "250" {
		t.Fatalf("Send: %q, %v", status, err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	got := msgs[0]
	if !got.TLS || got.From != "gatekeeper@example.com" || len(got.To) != 1 || got.To[0] != "owner@example.com" {
		t.Errorf("envelope %+v", got)
	}
	for _, want := range []string{
		"Subject: gatekeeper: firewall.mode_changed on account 10042",
		"Content-Type: text/plain",
		`After:   {"mode":"off"}`,
		"See https://gate.example.com:8443/accounts/10042/firewall",
		"Event id 7",
	} {
		if !strings.Contains(got.Data, want) {
			t.Errorf("message lacks %q:\n%s", want, got.Data)
		}
	}
}

func TestEmailNeedsSTARTTLS(t *testing.T) {
	srv := mailtest.Start(t, false)
	m := notify.NewMail(notify.MailOptions{Addr: srv.Addr, From: "gatekeeper@example.com"})
	if _, err := m.Send(t.Context(), policy.Destination{Kind: policy.DestEmail, Address: "owner@example.com"}, modeOff); err == nil ||
		!strings.Contains(err.Error(), "STARTTLS") {
		t.Errorf("a server without STARTTLS: %v", err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("sent in the clear: %d messages", n)
	}
	m = notify.NewMail(notify.MailOptions{Addr: srv.Addr, From: "gatekeeper@example.com", Insecure: true})
	if _, err := m.Send(t.Context(), policy.Destination{Kind: policy.DestEmail, Address: "owner@example.com"}, modeOff); err != nil {
		t.Errorf("starttls: false: %v", err)
	}
}

// TestFirewallOffNotifiesBoth: one change, one signed webhook and one
// email, through the outbox.
func TestFirewallOffNotifiesBoth(t *testing.T) {
	rec := newRecorder(t)
	mail := mailtest.Start(t, true)
	s := openBolt(t)
	setup(t, s, rec.srv.URL)
	err := s.Update(t.Context(), "10042", func(tx policy.Tx) error {
		a, _ := tx.Account()
		a.Notifications.Emails = []policy.Email{{Address: "owner@example.com"}}
		a.Mode = policy.ModeOff
		if err := tx.PutAccount(a); err != nil {
			return err
		}
		return tx.Audit(policy.AuditEntry{Actor: "master", Role: policy.RoleMaster, Action: "firewall.mode"})
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, notify.NewDispatcher(s, notify.Options{
		Webhooks: notify.NewWebhooks(notify.WebhookOptions{AllowPrivate: true}),
		Email: notify.NewMail(notify.MailOptions{Addr: mail.Addr, From: "gatekeeper@example.com",
			TLS: &tls.Config{RootCAs: mail.Roots, ServerName: "127.0.0.1"}}),
	}))
	waitFor(t, "the webhook and the email", func() bool { return len(rec.got()) == 1 && len(mail.Messages()) == 1 })
	if rec.got()[0].Type != policy.EventFirewallModeChanged {
		t.Errorf("webhook %+v", rec.got()[0])
	}
	if strings.Contains(mail.Messages()[0].Data, secret) {
		t.Error("the email holds the webhook secret")
	}
}

// TestEmailLinksToThePage: each event's email links to the page where a
// master acts on it; an access request to the inbox.
func TestEmailLinksToThePage(t *testing.T) {
	m := notify.NewMail(notify.MailOptions{From: "gatekeeper@example.com", PageURL: "https://gate.example.com"})
	for event, path := range map[string]string{
		policy.EventAccessRequestCreated: "/accounts/10042/access-requests",
		policy.EventUserOffboarded:       "/accounts/10042/users",
		policy.EventDeviceEnrolled:       "/accounts/10042/devices",
		policy.EventNotificationsChanged: "/accounts/10042/notifications",
		policy.EventLoginLockedOut:       "/accounts/10042/audit",
		policy.EventAccessReviewOverdue:  "/accounts/10042/review",
	} {
		msg := string(m.Message("owner@example.com", policy.OutboxEntry{ID: "1", Account: "10042", Event: event}))
		if !strings.Contains(msg, "See https://gate.example.com"+path+"\r\n") {
			t.Errorf("%s: no link to %s:\n%s", event, path, msg)
		}
	}
}
