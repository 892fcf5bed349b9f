package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Mailer sends one plain-text email to one person; notify.Mail has it.
type Mailer interface {
	SendText(ctx context.Context, to, subject, body string) error
	// PageURL is the base of the links in the mail (notify.page_url).
	PageURL() string
}

// confirmTTL is how long an address confirmation link works.
const confirmTTL = 24 * time.Hour

// maxEmail is the longest address accepted (RFC 5321's path limit).
const maxEmail = 254

// AddressView is an address and whether its owner confirmed it.
type AddressView struct {
	Address   string `json:"address"`
	Confirmed bool   `json:"confirmed"`
	// ConfirmationSent says a confirmation link was mailed; false when no
	// mail server is configured.
	ConfirmationSent bool `json:"confirmation_sent,omitempty"`
}

func addressView(m policy.MailAddress) *AddressView {
	if m.Address == "" {
		return nil
	}
	return &AddressView{Address: m.Address, Confirmed: m.Confirmed}
}

// MyEmail returns the actor's own address; nil when there is none.
func (s *Service) MyEmail(ctx context.Context, a Actor) (*AddressView, error) {
	if !a.hasSession() {
		return nil, errForbidden
	}
	var v *AddressView
	err := s.view(ctx, a.Account, func(tx policy.Tx) error {
		m, err := loadMailAddress(tx, a.Username)
		if err != nil {
			return err
		}
		v = addressView(m.get())
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the email of %s: %w", a.name(a.Account), err)
	}
	return v, nil
}

func (s *Server) myEmail(w http.ResponseWriter, r *http.Request, c *call) error {
	v, err := s.svc.MyEmail(r.Context(), c.actor)
	if err != nil {
		return err
	}
	if v == nil {
		v = &AddressView{}
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// EmailRequest is the body of PUT …/email: an address, or "" to remove it.
type EmailRequest struct {
	Email string `json:"email"`
}

var errBadToken = badRequest(CodeInvalidToken, "this link is not valid: it was used already, has expired or was replaced")

// checkEmail accepts a bare address (no display name) or "".
func checkEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || len(s) > maxEmail || !strings.Contains(s, "@") {
		return "", badRequest(CodeInvalidEmail, "email must be a plain address such as name@example.com")
	}
	return s, nil
}

// newSecret is 256 random bits, base64url (no dots).
func newSecret() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// linkToken is the token of an emailed link: "ACCOUNT.SECRET" for the
// master, "ACCOUNT.SECRET.USERNAME" for a user, so that it can be looked
// up without an index across accounts (as session tokens are).
func linkToken(account, username, secret string) string {
	t := account + "." + secret
	if username != "" {
		t += "." + username
	}
	return t
}

// parseLinkToken splits a link token; ok is false for anything malformed.
func parseLinkToken(t string) (account, username string, ok bool) {
	parts := strings.SplitN(t, ".", 3)
	if len(parts) < 2 || !policy.ValidAccountID(parts[0]) || len(parts[1]) != 43 {
		return "", "", false
	}
	if len(parts) == 3 {
		if !usernamePattern.MatchString(parts[2]) {
			return "", "", false
		}
		username = parts[2]
	}
	return parts[0], username, true
}

// tokenMatches compares a presented token with a stored one in constant
// time, and checks that it has not expired.
func tokenMatches(st policy.MailToken, token string, now time.Time) bool {
	if st.Hash == "" {
		return false
	}
	h := hashToken(token)
	return subtle.ConstantTimeCompare([]byte(h), []byte(st.Hash)) == 1 && now.Before(st.ExpiresAt)
}

// passwordDigest binds a reset token to the password hash it replaces.
func passwordDigest(hash string) string {
	sum := sha256.Sum256([]byte("reset:" + hash))
	return hex.EncodeToString(sum[:])
}

// mailAddress reads and writes the address of the master (username "")
// or of one user inside a transaction.
type mailAddress struct {
	tx       policy.Tx
	username string
	acct     policy.Account
	user     policy.User
}

func loadMailAddress(tx policy.Tx, username string) (*mailAddress, error) {
	m := &mailAddress{tx: tx, username: username}
	var err error
	if username == "" {
		m.acct, err = tx.Account()
	} else {
		m.user, err = tx.User(username)
	}
	return m, err
}

func (m *mailAddress) get() policy.MailAddress {
	if m.username == "" {
		return m.acct.MasterEmail
	}
	return m.user.Email
}

func (m *mailAddress) passwordHash() string {
	if m.username == "" {
		return m.acct.MasterHash
	}
	return m.user.PasswordHash
}

func (m *mailAddress) put(a policy.MailAddress) error {
	if m.username == "" {
		m.acct.MasterEmail = a
		return m.tx.PutAccount(m.acct)
	}
	m.user.Email = a
	return m.tx.PutUser(m.user)
}

// target names the address's owner in the audit trail.
func (m *mailAddress) target(account string) string {
	if m.username == "" {
		return "account/" + account + "/master"
	}
	return "user/" + m.username
}

// SetEmail sets the address of the master (username "") or of a user, or
// removes it (addr ""). A master (or a user with manage_staff, by
// asMaster) sets any user's; every master and user sets their own. The
// address is used for nothing until confirmed by the link mailed to it;
// the old confirmed address is told of the change, so that a hijacker
// who changes it does not go unnoticed. Audited without the token.
func (s *Service) SetEmail(ctx context.Context, a Actor, account, username, addr string) (AddressView, error) {
	username = normalizeUsername(username)
	self := a.Account == account && ((a.Role == policy.RoleMaster && username == "") ||
		(a.Role == policy.RoleUser && a.Username == username))
	if !self {
		if username == "" {
			return AddressView{}, errForbidden // a master's address is theirs to set
		}
		if _, err := s.asMaster(ctx, a, account); err != nil {
			return AddressView{}, err
		}
	}
	addr, err := checkEmail(addr)
	if err != nil {
		return AddressView{}, err
	}
	secret := s.mintSecret()
	token := linkToken(account, username, secret)
	var old policy.MailAddress
	var target string
	err = s.store.Update(ctx, account, func(tx policy.Tx) error {
		m, err := loadMailAddress(tx, username)
		if errors.Is(err, policy.ErrNotFound) {
			return notFound("user", err)
		}
		if err != nil {
			return err
		}
		old, target = m.get(), m.target(account)
		if old.Address == addr {
			return errNoChange
		}
		next := policy.MailAddress{Address: addr}
		if addr != "" {
			next.Confirm = policy.MailToken{Hash: hashToken(token), ExpiresAt: s.now().Add(confirmTTL), For: addr}
		}
		if err := m.put(next); err != nil {
			return err
		}
		return tx.Audit(s.audit(a, account, "email.set", target,
			map[string]any{"email": old.Address, "confirmed": old.Confirmed},
			map[string]any{"email": addr, "confirmed": false}))
	})
	if errors.Is(err, errNoChange) {
		return AddressView{Address: addr, Confirmed: old.Confirmed}, nil
	}
	if err != nil {
		return AddressView{}, fmt.Errorf("set the email of %s: %w", target, err)
	}
	s.log.Info("email address set", zap.String("account", account), zap.String("username", username),
		zap.String("actor", a.name(account)))
	v := AddressView{Address: addr}
	if s.mailer == nil {
		return v, nil
	}
	if addr != "" {
		v.ConfirmationSent = true
		s.mailLater(account, addr, "gatekeeper: confirm your email address",
			fmt.Sprintf("Someone (%s) set this address for the login %s of gatekeeper account %s.\n\n"+
				"To confirm it, open this link within %s:\n\n%s/email/confirm?token=%s\n\n"+
				"If this was not you or your account holder, ignore this message.\n",
				a.name(account), loginName(username), account, confirmTTL, s.mailer.PageURL(), token))
	}
	if old.Confirmed && old.Address != "" {
		s.mailLater(account, old.Address, "gatekeeper: your email address was changed",
			fmt.Sprintf("The email address of the login %s of gatekeeper account %s was changed by %s from this address to %q.\n\n"+
				"If you did not expect this, tell your account holder or the operator.\n",
				loginName(username), account, a.name(account), addr))
	}
	return v, nil
}

func loginName(username string) string {
	if username == "" {
		return "master"
	}
	return username
}

// ConfirmEmail confirms the address a link was mailed to. The link works
// once, before it expires, and only for the address it was sent to.
func (s *Service) ConfirmEmail(ctx context.Context, token string, ip netip.Addr) error {
	account, username, ok := parseLinkToken(token)
	if !ok {
		return errBadToken
	}
	err := s.store.Update(ctx, account, func(tx policy.Tx) error {
		m, err := loadMailAddress(tx, username)
		if err != nil {
			return errBadToken
		}
		cur := m.get()
		if !tokenMatches(cur.Confirm, token, s.now()) || cur.Confirm.For != cur.Address {
			return errBadToken
		}
		cur.Confirmed, cur.Confirm = true, policy.MailToken{}
		if err := m.put(cur); err != nil {
			return err
		}
		actor := Actor{Role: policy.RoleUser, Account: account, Username: username, ClientIP: ip}
		if username == "" {
			actor.Role = policy.RoleMaster
		}
		return tx.Audit(s.audit(actor, account, "email.confirm", m.target(account), nil,
			map[string]any{"email": cur.Address}))
	})
	if errors.Is(err, policy.ErrNotFound) {
		return errBadToken
	}
	return err
}

// mailLater sends a message after the call has answered, so that a slow
// or absent mail server neither delays nor shows in the answer. Failures
// are logged without the message, which may hold a link.
func (s *Service) mailLater(account, to, subject, body string) {
	s.mailWG.Add(1)
	go func() {
		defer s.mailWG.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.mailer.SendText(ctx, to, subject, body); err != nil {
			s.log.Warn("mail not sent", zap.String("account", account), zap.String("subject", subject),
				zap.Error(err))
		}
	}()
}

// mailDecision tells the requester of an access request its outcome, at
// their confirmed address (to; "" for none). Like the other mail of the
// service it is sent once, after the decision committed: the decision is
// on the requester's own page either way.
func (s *Service) mailDecision(account, to string, r policy.AccessRequest, until time.Time) {
	if s.mailer == nil || to == "" {
		return
	}
	var body string
	if r.Status == policy.RequestApproved {
		body = fmt.Sprintf("Your request to reach gatekeeper account %s from %s was approved by %s.\n\n"+
			"The address is allowed until %s.\n", account, r.IP, r.DecidedBy, until.UTC().Format(time.RFC1123))
	} else {
		body = fmt.Sprintf("Your request to reach gatekeeper account %s from %s was denied by %s.\n", account, r.IP, r.DecidedBy)
		if r.DenyReason != "" {
			body += fmt.Sprintf("\nReason: %s\n", r.DenyReason)
		}
	}
	body += fmt.Sprintf("\nSee %s/me/access\n", s.mailer.PageURL())
	s.mailLater(account, to, "gatekeeper: your access request was "+r.Status, body)
}

// WaitMail waits until the mail being sent after answering is sent or
// given up, for a clean shutdown and for tests.
func (s *Service) WaitMail() { s.mailWG.Wait() }

func (s *Server) setMyEmail(w http.ResponseWriter, r *http.Request, c *call) error {
	var b EmailRequest
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	if c.actor.Role == policy.RoleOperator {
		return errForbidden
	}
	v, err := s.svc.SetEmail(r.Context(), c.actor, c.actor.Account, c.actor.Username, b.Email)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) setUserEmail(w http.ResponseWriter, r *http.Request, c *call) error {
	var b EmailRequest
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	v, err := s.svc.SetEmail(r.Context(), c.actor, r.PathValue("acct"), r.PathValue("username"), b.Email)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// TokenRequest is the body of POST /api/v1/email/confirm.
type TokenRequest struct {
	Token string `json:"token"`
}

func (s *Server) confirmEmail(w http.ResponseWriter, r *http.Request, c *call) error {
	var b TokenRequest
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	if err := s.svc.ConfirmEmail(r.Context(), b.Token, c.ip); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
