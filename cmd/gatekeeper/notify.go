package main

import (
	"fmt"
	"os"
	"strings"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/config"
	"github.com/gatekeeper-dev/gatekeeper/notify"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// newDispatcher builds the notification delivery of c.Notify on st.
func newDispatcher(c *config.Config, st policy.Store, log *zap.Logger) (*notify.Dispatcher, error) {
	o := notify.Options{
		Webhooks: notify.NewWebhooks(notify.WebhookOptions{AllowPrivate: c.Notify.AllowPrivateDestinations}),
		Logger:   log,
	}
	if c.Notify.AllowPrivateDestinations {
		log.Warn("webhooks may reach loopback, private and link-local addresses (notify.allow_private_destinations)")
	}
	m, err := newMail(c)
	if err != nil {
		return nil, err
	}
	if m != nil {
		o.Email = m
	}
	return notify.NewDispatcher(st, o), nil
}

// newMail is the sender of c.Notify.SMTP, nil when none is configured.
// Notifications and the admin service's own mail (address confirmations,
// password reset links) go through it.
func newMail(c *config.Config) (*notify.Mail, error) {
	m := c.Notify.SMTP
	if m == nil {
		return nil, nil
	}
	mo := notify.MailOptions{Addr: m.Addr, From: m.From, Username: m.Username,
		Insecure: m.StartTLS != nil && !*m.StartTLS, PageURL: strings.TrimSuffix(c.Notify.PageURL, "/")}
	if m.PasswordFile != "" {
		b, err := os.ReadFile(m.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("notify.smtp.password_file: %w", err)
		}
		mo.Password = strings.TrimSpace(string(b))
	}
	return notify.NewMail(mo), nil
}
