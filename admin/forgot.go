package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// resetTTL is how long a password reset link works.
const resetTTL = 30 * time.Minute

// ForgotRequest is the body of POST /api/v1/password/forgot: the account
// number, and the username for an employee ("" for the master).
type ForgotRequest struct {
	Account  string `json:"account"`
	Username string `json:"username,omitempty"`
}

// ResetRequest is the body of POST /api/v1/password/reset.
type ResetRequest struct {
	Token string `json:"token"`
	New   string `json:"new"`
}

// ForgotAnswer is the one answer to every forgotten-password request.
type ForgotAnswer struct {
	Message string `json:"message"`
}

var forgotAnswer = ForgotAnswer{Message: "If this login has a confirmed email address, a link to set a new password is on its way; it works once, for 30 minutes. Otherwise ask your account holder (employees) or the operator (masters)."}

// ForgotPassword mails a single-use link that sets a new password to the
// login's confirmed address. It answers the same and does the same work
// (one lookup, one secret minted, one mail job started) whether or not
// the account, the user or a confirmed address exists, so that it tells
// nobody which logins exist; the token is stored and the mail sent after
// answering. Requests are limited per client address and per login like
// logins, which bounds the mail anyone can cause.
func (s *Service) ForgotPassword(ctx context.Context, req ForgotRequest, ip netip.Addr) (ForgotAnswer, error) {
	account := clip(strings.TrimSpace(req.Account), maxLoginField)
	username := clip(normalizeUsername(req.Username), maxLoginField)
	ipKey := "forgot " + limitKey(ip)
	loginKey := "forgot " + account + "/" + username
	done, err := s.beginAttempt(ctx, ipKey, loginKey)
	if err != nil {
		return ForgotAnswer{}, err
	}
	defer func() {
		// Every request counts, found or not: the limit is on mail.
		now := s.now()
		s.ipLimit.fail(ipKey, now)
		s.loginLimit.fail(loginKey, now)
		done()
	}()
	token := linkToken(account, username, s.mintSecret())
	var to, pwHash string
	err = s.view(ctx, account, func(tx policy.Tx) error {
		m, err := loadMailAddress(tx, username)
		if err != nil {
			return err
		}
		a := m.get()
		if a.Confirmed && a.Address != "" && (username == "" || m.user.Active) {
			to, pwHash = a.Address, m.passwordHash()
		}
		return nil
	})
	if err != nil && !errors.Is(err, policy.ErrNotFound) {
		return ForgotAnswer{}, fmt.Errorf("forgotten password of %s: %w", account, err)
	}
	if s.mailer == nil || !policy.ValidAccountID(account) || (username != "" && !usernamePattern.MatchString(username)) {
		to = ""
	}
	s.resetLater(account, username, token, to, passwordDigest(pwHash))
	return forgotAnswer, nil
}

// resetLater stores the reset token and mails the link, after the call
// has answered; with no recipient it does nothing.
func (s *Service) resetLater(account, username, token, to, binding string) {
	s.mailWG.Add(1)
	go func() {
		defer s.mailWG.Done()
		if to == "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := s.store.Update(ctx, account, func(tx policy.Tx) error {
			m, err := loadMailAddress(tx, username)
			if err != nil {
				return err
			}
			cur := m.get()
			if !cur.Confirmed || cur.Address != to || passwordDigest(m.passwordHash()) != binding {
				return errNoChange // changed since the request was answered
			}
			// Only the newest link works: it replaces any earlier one.
			cur.Reset = policy.MailToken{Hash: hashToken(token), ExpiresAt: s.now().Add(resetTTL), For: binding}
			return m.put(cur)
		})
		if err != nil {
			if !errors.Is(err, errNoChange) {
				s.log.Warn("password reset link not stored", zap.String("account", account),
					zap.String("username", username), zap.Error(err))
			}
			return
		}
		err = s.mailer.SendText(ctx, to, "gatekeeper: set a new password",
			fmt.Sprintf("Someone asked to set a new password for the login %s of gatekeeper account %s.\n\n"+
				"To set one, open this link within %s; it works once:\n\n%s/password/reset?token=%s\n\n"+
				"Setting a new password ends every session of this login. If you did not ask, ignore this message: your password stays as it is.\n",
				loginName(username), account, resetTTL, s.mailer.PageURL(), token))
		if err != nil {
			s.log.Warn("password reset mail not sent", zap.String("account", account),
				zap.String("username", username), zap.Error(err))
			return
		}
		s.log.Info("password reset link mailed", zap.String("account", account), zap.String("username", username))
	}()
}

// ResetPassword sets a new password with a reset link's token: once,
// within 30 minutes, and only while the password is the one the link was
// made for (any change since voids it). Every session of the login ends.
// The reset is audited as password.reset, which the account's
// notification destinations (the master) are sent.
func (s *Service) ResetPassword(ctx context.Context, req ResetRequest, ip netip.Addr) (PasswordChange, error) {
	account, username, ok := parseLinkToken(req.Token)
	if !ok {
		return PasswordChange{}, errBadToken
	}
	acct, err := s.account(ctx, account)
	if errors.Is(err, policy.ErrNotFound) {
		return PasswordChange{}, errBadToken
	}
	if err != nil {
		return PasswordChange{}, err
	}
	if err := vetPassword(req.New, username, account, acct.Name); err != nil {
		return PasswordChange{}, err
	}
	hash, err := s.hash(ctx, req.New)
	if err != nil {
		return PasswordChange{}, err
	}
	var ended int
	err = s.store.Update(ctx, account, func(tx policy.Tx) error {
		m, err := loadMailAddress(tx, username)
		if err != nil {
			return errBadToken
		}
		cur := m.get()
		if !tokenMatches(cur.Reset, req.Token, s.now()) || cur.Reset.For != passwordDigest(m.passwordHash()) ||
			!cur.Confirmed || (username != "" && !m.user.Active) {
			return errBadToken
		}
		cur.Reset = policy.MailToken{}
		now := s.now().UTC()
		if username == "" {
			m.acct.MasterHash, m.acct.MasterMustReset, m.acct.MasterPasswordAt = hash, false, now
		} else {
			m.user.PasswordHash, m.user.MustResetPassword, m.user.PasswordAt = hash, false, now
		}
		if err := m.put(cur); err != nil {
			return err
		}
		if ended, err = tx.DeleteSessions(username); err != nil {
			return err
		}
		actor := Actor{Role: policy.RoleUser, Account: account, Username: username, ClientIP: ip}
		if username == "" {
			actor.Role = policy.RoleMaster
		}
		return tx.Audit(s.audit(actor, account, "password.reset", m.target(account), nil,
			map[string]any{"by": "email", "sessions_ended": ended}))
	})
	if errors.Is(err, policy.ErrNotFound) {
		return PasswordChange{}, errBadToken
	}
	if err != nil {
		return PasswordChange{}, fmt.Errorf("reset a password of %s: %w", account, err)
	}
	s.log.Info("password reset by email", zap.String("account", account), zap.String("username", username),
		zap.String("client_ip", ip.String()), zap.Int("sessions_ended", ended))
	return PasswordChange{SessionsEnded: ended}, nil
}

// CanMail says whether links can be mailed at all (notify.smtp is set).
func (s *Service) CanMail() bool { return s.mailer != nil }

func (s *Server) forgotPassword(w http.ResponseWriter, r *http.Request, c *call) error {
	var b ForgotRequest
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	res, err := s.svc.ForgotPassword(r.Context(), b, c.ip)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, res)
	return nil
}

func (s *Server) resetPassword(w http.ResponseWriter, r *http.Request, c *call) error {
	var b ResetRequest
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	res, err := s.svc.ResetPassword(r.Context(), b, c.ip)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
