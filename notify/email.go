package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/smtp"
	"strings"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// MailOptions configure Mail.
type MailOptions struct {
	// Addr is the SMTP server, host:port.
	Addr string
	// From is the sender address.
	From string
	// Username and Password authenticate with PLAIN; empty: no
	// authentication. Password is never part of a message or status.
	Username, Password string
	// Insecure sends without STARTTLS. Default false: a server that does
	// not offer STARTTLS is not sent to.
	Insecure bool
	// TLS is the STARTTLS configuration; if nil, the system's roots and
	// the server's host name.
	TLS *tls.Config
	// PageURL is the admin pages' base URL for links; if empty, links are
	// paths.
	PageURL string
	// Timeout bounds one delivery. If zero, 30s.
	Timeout time.Duration
}

// Mail sends notifications as plain-text email.
type Mail struct{ o MailOptions }

// NewMail returns an email sender.
func NewMail(o MailOptions) *Mail {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	return &Mail{o: o}
}

// PagePath is the admin page an event concerns.
func PagePath(event, account string) string {
	base := "/accounts/" + account
	switch strings.SplitN(event, ".", 2)[0] {
	case "firewall", "rule", "grant":
		return base + "/firewall"
	case "device":
		return base + "/devices"
	case "user":
		return base + "/users"
	case "access_request":
		return base + "/access-requests"
	case "notifications":
		return base + "/notifications"
	case "access_review":
		return base + "/review"
	}
	return base + "/audit"
}

// Message returns the text of the email of o: what happened, who did it,
// and a link. An audit entry holds no secret, so neither does this.
func (m *Mail) Message(to string, o policy.OutboxEntry) []byte {
	e := o.Entry
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\n", m.o.From, to)
	fmt.Fprintf(&b, "Subject: gatekeeper: %s on account %s\r\n", o.Event, o.Account)
	fmt.Fprintf(&b, "Date: %s\r\n", e.Time.UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s.%s@gatekeeper>\r\n", o.ID, o.Account)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-8s %s\r\n", k+":", oneLine(v))
		}
	}
	fmt.Fprintf(&b, "%s on account %s.\r\n\r\n", o.Event, o.Account)
	line("What", e.Action)
	line("Target", e.Target)
	line("Who", e.Actor+" ("+e.Role+")")
	line("From", e.ClientIP)
	line("When", e.Time.UTC().Format(time.RFC3339))
	line("Before", string(e.Before))
	line("After", string(e.After))
	fmt.Fprintf(&b, "\r\nSee %s%s\r\n\r\nEvent id %s\r\n", m.o.PageURL, PagePath(o.Event, o.Account), o.ID)
	return b.Bytes()
}

// oneLine keeps a value from starting a new line of the message.
func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

// Send mails o to d.Address and returns the server's final reply code.
func (m *Mail) Send(ctx context.Context, d policy.Destination, o policy.OutboxEntry) (string, error) {
	if err := m.deliver(ctx, d.Address, func(to string) []byte { return m.Message(to, o) }); err != nil {
		return "", err
	}
	return "250", nil
}

// SendText mails a plain-text message of the admin service's own (an
// address confirmation, a password reset link) to one person. The body
// may hold a secret link: it goes to the SMTP server and nowhere else.
func (m *Mail) SendText(ctx context.Context, to, subject, body string) error {
	return m.deliver(ctx, to, func(to string) []byte {
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\n", m.o.From, to, oneLine(subject))
		fmt.Fprintf(&b, "Date: %s\r\n", time.Now().UTC().Format(time.RFC1123Z))
		b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n"))
		return b.Bytes()
	})
}

// PageURL is the admin pages' base URL links in mail start with; empty
// when links are paths.
func (m *Mail) PageURL() string { return m.o.PageURL }

// deliver sends the message msg builds to one recipient.
func (m *Mail) deliver(ctx context.Context, rcpt string, msg func(to string) []byte) error {
	to, err := mail.ParseAddress(rcpt)
	if err != nil {
		return fmt.Errorf("recipient: %w", err)
	}
	host, _, err := net.SplitHostPort(m.o.Addr)
	if err != nil {
		return fmt.Errorf("smtp address: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, m.o.Timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", m.o.Addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("smtp greeting: %w", err)
	}
	defer c.Close()
	if err := c.Hello("gatekeeper"); err != nil {
		return fmt.Errorf("smtp hello: %w", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		tc := m.o.TLS
		if tc == nil {
			tc = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		if err := c.StartTLS(tc); err != nil {
			return fmt.Errorf("smtp starttls: %w", err)
		}
	} else if !m.o.Insecure {
		return errors.New("the SMTP server does not offer STARTTLS, which notify.smtp requires (starttls: false to send in the clear)")
	}
	if m.o.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", m.o.Username, m.o.Password, host)); err != nil {
			return errors.New("smtp authentication refused") // the reply may echo what was sent
		}
	}
	if err := c.Mail(m.o.From); err != nil {
		return fmt.Errorf("smtp MAIL FROM: %w", err)
	}
	if err := c.Rcpt(to.Address); err != nil {
		return fmt.Errorf("smtp RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if _, err := w.Write(msg(to.Address)); err != nil {
		return fmt.Errorf("smtp message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp message: %w", err)
	}
	c.Quit()
	return nil
}
