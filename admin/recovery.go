package admin

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TemporaryPassword is the outcome of SetTemporaryPassword.
type TemporaryPassword struct {
	Username string `json:"username"`
	// Password is the generated password, shown this once; empty when the
	// master chose one.
	Password      string `json:"password,omitempty"`
	SessionsEnded int    `json:"sessions_ended"`
}

// SetTemporaryPassword gives an employee who forgot their password a new
// one from their master: pw, or a generated one returned this once. The
// user must choose their own at the next login, and every session they
// have ends, so whoever held one (perhaps the reason for the reset) is
// out. It is audited without the password. A deactivated user keeps
// their state: a temporary password lets nobody in who may not log in.
//
// A manager (manage_staff) may do it for users who hold no permission; so
// a manager can never take over another manager's login.
func (s *Service) SetTemporaryPassword(ctx context.Context, a Actor, account, username, pw string) (TemporaryPassword, error) {
	_, manager, err := s.asStaffManager(ctx, a, account)
	if err != nil {
		return TemporaryPassword{}, err
	}
	username = normalizeUsername(username)
	res := TemporaryPassword{Username: username}
	if pw == "" {
		pw = password.Generate()
		res.Password = pw
	}
	if err := vetPassword(pw, username, account); err != nil {
		return TemporaryPassword{}, err
	}
	hash, err := s.hash(ctx, pw)
	if err != nil {
		return TemporaryPassword{}, err
	}
	err = s.store.Update(ctx, account, func(tx policy.Tx) error {
		u, err := staffTarget(tx, a, manager, username)
		if err != nil {
			return err
		}
		u.PasswordHash, u.MustResetPassword = hash, true
		if err := tx.PutUser(u); err != nil {
			return err
		}
		if res.SessionsEnded, err = tx.DeleteSessions(u.Username); err != nil {
			return err
		}
		return tx.Audit(s.audit(a, account, "user.temporary_password", "user/"+u.Username, nil,
			map[string]any{"generated": res.Password != "", "sessions_ended": res.SessionsEnded}))
	})
	if err != nil {
		return TemporaryPassword{}, fmt.Errorf("set a temporary password for %s: %w", username, err)
	}
	s.log.Info("temporary password set", zap.String("account", account), zap.String("username", username),
		zap.String("actor", a.name(account)), zap.Int("sessions_ended", res.SessionsEnded))
	return res, nil
}
