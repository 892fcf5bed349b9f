package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// LoginRequest is what a login names. An empty Username is the master.
type LoginRequest struct {
	Account  string `json:"account"`
	Username string `json:"username,omitempty"`
	Password string `json:"password"`
	// OTP is the second factor, when the person has one: a code from the
	// authenticator app or one of the recovery codes.
	OTP string `json:"otp,omitempty"`
	// UserAgent is the client's User-Agent header, which the session
	// keeps (trimmed) to show the person where they are logged in.
	UserAgent string `json:"-"`
}

// LoginResult is a new session. Token is secret: it is shown to the client
// once and stored only as its SHA-256.
type LoginResult struct {
	Token             string `json:"token"`
	Role              string `json:"role"`
	MustResetPassword bool   `json:"must_reset_password"`
	// MustEnrollMFA says that the account requires a second factor of
	// this person, who has none: until one is enrolled, only the calls
	// that enrol it (and me, password, logout) are allowed.
	MustEnrollMFA bool      `json:"must_enroll_mfa"`
	ExpiresAt     time.Time `json:"expires_at"`
}

// maxLoginField bounds the account and username a login may name; longer
// ones cannot exist and are not worth a limiter key of their own.
const maxLoginField = 64

// Login checks a master's or user's password and opens a session.
//
// A failure answers the same (401 invalid_credentials) whatever was wrong,
// and costs the same: a password is always verified, against a dummy hash
// when there is no account or user. Failures are limited per client address
// and per login (LoginLimits); once a limit is hit, attempts are refused
// with 429 and Retry-After before any password is checked. Every attempt
// that is checked goes to the account's audit trail, failed or not; an
// attempt refused by the limiter is only counted and logged, so that a
// flood cannot fill the audit trail.
func (s *Service) Login(ctx context.Context, req LoginRequest, ip netip.Addr) (LoginResult, error) {
	account := strings.TrimSpace(req.Account)
	username := normalizeUsername(req.Username)
	role := policy.RoleMaster
	if username != "" {
		role = policy.RoleUser
	}
	ipKey := limitKey(ip)
	loginKey := clip(account, maxLoginField) + "/" + clip(username, maxLoginField)
	done, err := s.beginAttempt(ctx, ipKey, loginKey)
	if err != nil {
		s.log.Debug("login refused by the rate limit", zap.String("account", clip(account, maxLoginField)),
			zap.String("client_ip", ip.String()))
		return LoginResult{}, err
	}
	defer done()

	// Find the hash to check; "" when there is none (verify uses the dummy).
	var hash, why string
	var acctExists bool
	var user policy.User
	var factor policy.SecondFactor
	switch acct, err := s.account(ctx, account); {
	case errors.Is(err, policy.ErrNotFound):
		why = "no such account"
	case err != nil:
		return LoginResult{}, err
	default:
		acctExists = true
		if role == policy.RoleMaster {
			hash, factor = acct.MasterHash, acct.MasterMFA
			break
		}
		err := s.view(ctx, account, func(tx policy.Tx) error {
			u, err := tx.User(username)
			user = u
			return err
		})
		switch {
		case errors.Is(err, policy.ErrNotFound):
			why = "no such user"
		case err != nil:
			return LoginResult{}, err
		case !user.Active:
			why = "user deactivated"
			hash = user.PasswordHash // verify anyway: the same cost as any user
		default:
			hash, factor = user.PasswordHash, user.MFA
		}
	}
	ok, err := s.verify(ctx, hash, req.Password)
	if err != nil {
		return LoginResult{}, err
	}
	if ok && why == "" {
		if factor.Enrolled() && strings.TrimSpace(req.OTP) == "" {
			// The password was right: not a failure, but no session yet.
			return LoginResult{}, otpRequired(factor)
		}
		res, err := s.openSession(ctx, account, role, user, hash, req.Password, req.OTP, req.UserAgent, ip, loginKey)
		if !errors.Is(err, errBadOTP) {
			return res, err
		}
		why = "wrong second factor"
	}
	if why == "" {
		why = "wrong password"
	}
	err = s.loginFailed(ctx, account, role, username, why, acctExists, ip, ipKey, loginKey)
	if why == "wrong second factor" && errors.Is(err, errBadLogin) {
		// The password was right, so saying what was wrong tells nothing
		// more than otp_required did.
		return LoginResult{}, errBadOTP
	}
	return LoginResult{}, err
}

// account reads one account; an invalid account number is simply not found.
func (s *Service) account(ctx context.Context, id string) (policy.Account, error) {
	if !policy.ValidAccountID(id) {
		return policy.Account{}, fmt.Errorf("account %q: %w", clip(id, maxLoginField), policy.ErrNotFound)
	}
	return s.store.Account(ctx, id)
}

// beginAttempt admits a password attempt under both limits, or answers
// 429 when either key is locked out. done must be called once the attempt's
// failure is counted or its success has cleared the login. Attempts in
// flight count against the limits (see limiter.begin), so that concurrent
// guesses cannot slip past them.
func (s *Service) beginAttempt(ctx context.Context, ipKey, loginKey string) (done func(), err error) {
	endIP, wait, err := s.ipLimit.begin(ctx, ipKey, s.now)
	if err != nil {
		return nil, fmt.Errorf("wait for the login limits: %w", err)
	}
	if wait <= 0 {
		var endLogin func()
		endLogin, wait, err = s.loginLimit.begin(ctx, loginKey, s.now)
		if err != nil {
			endIP()
			return nil, fmt.Errorf("wait for the login limits: %w", err)
		}
		if wait <= 0 {
			return func() { endLogin(); endIP() }, nil
		}
		endIP()
	}
	s.loginFailures.WithLabelValues("rate_limited").Inc()
	return nil, rateLimited(wait)
}

// rateLimited is the answer to an attempt refused by a limiter.
func rateLimited(wait time.Duration) error {
	secs := int(math.Ceil(wait.Seconds()))
	return &Error{Status: http.StatusTooManyRequests, Code: CodeRateLimited, RetryAfter: secs,
		Msg: fmt.Sprintf("too many failed attempts; try again in %d seconds", secs)}
}

// loginFailed counts and audits a failed login and returns the one answer.
func (s *Service) loginFailed(ctx context.Context, account, role, username, why string, acctExists bool,
	ip netip.Addr, ipKey, loginKey string) error {
	now := s.now()
	s.loginFailures.WithLabelValues("invalid_credentials").Inc()
	lockIP := s.ipLimit.fail(ipKey, now)
	lockLogin := s.loginLimit.fail(loginKey, now)
	fields := []zap.Field{zap.String("account", clip(account, maxLoginField)), zap.String("role", role),
		zap.String("username", auditName(username)), zap.String("client_ip", ip.String()), zap.String("reason", why)}
	s.log.Info("login failed", fields...)
	if lockIP > 0 || lockLogin > 0 {
		s.log.Warn("login locked out after repeated failures",
			append(fields, zap.Duration("ip_lockout", lockIP), zap.Duration("login_lockout", lockLogin))...)
	}
	if !acctExists {
		return errBadLogin
	}
	actor := Actor{Role: role, Account: account, Username: auditName(username), ClientIP: ip}
	after := map[string]any{"result": "failure", "reason": why}
	if lockLogin > 0 {
		after["locked_for"] = lockLogin.String()
	}
	err := s.store.Update(ctx, account, func(tx policy.Tx) error {
		return tx.Audit(s.audit(actor, account, "login.failure", actor.name(account), nil, after))
	})
	if err != nil {
		return fmt.Errorf("audit failed login to %s: %w", account, err)
	}
	return errBadLogin
}

// auditName is a username as typed, fit for the log and the audit trail.
func auditName(username string) string {
	if username == "" || usernamePattern.MatchString(username) {
		return username
	}
	return "(invalid username)"
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// openSession stores a new session after a successful check, with the login
// recorded on the user and in the audit trail. A hash made with weaker
// parameters than today's is replaced on the way.
//
// A person with a second factor must give it as code: it is checked, and
// its use recorded (the TOTP step, or the recovery code struck off), in the
// same transaction that opens the session, so that a code is accepted once
// even across a fleet. A wrong code answers errBadOTP and writes nothing.
func (s *Service) openSession(ctx context.Context, account, role string, user policy.User, hash, pw, code, ua string,
	ip netip.Addr, loginKey string) (LoginResult, error) {
	var rehash string
	if password.NeedsRehash(hash, s.params) {
		if h, err := s.hash(ctx, pw); err == nil {
			rehash = h
		}
	}
	token, tokenHash := newToken(account)
	now := s.now().UTC()
	ses := policy.Session{TokenHash: tokenHash, Account: account, Username: user.Username, Role: role,
		ClientIP: ip.String(), UserAgent: trimUserAgent(ua), CreatedAt: now, LastUsedAt: now.Truncate(time.Second),
		ExpiresAt: now.Add(s.ttl)}
	actor := Actor{Role: role, Account: account, Username: user.Username, ClientIP: ip}
	owner := factorOwner(account, user.Username)
	var mustEnroll, mustReset bool
	err := s.store.Update(ctx, account, func(tx policy.Tx) error {
		result := map[string]any{"result": "success"}
		acct, err := tx.Account()
		if err != nil {
			return err
		}
		factor := acct.MasterMFA
		if role == policy.RoleMaster {
			if acct.MasterHash != hash {
				return errBadLogin // the password changed meanwhile
			}
			changed := rehash != ""
			if rehash != "" {
				acct.MasterHash = rehash
			}
			if !acct.MasterMustReset && policy.PasswordExpired(acct.MasterPasswordAt, acct.CreatedAt, acct.Settings.PasswordMaxAge, now) {
				acct.MasterMustReset, changed = true, true
				result["password_expired"] = true
			}
			mustReset = acct.MasterMustReset
			if acct.MasterMFA.Enrolled() {
				kind, err := s.checkSecondFactor(&acct.MasterMFA, owner, code, now)
				if err != nil {
					return err
				}
				result["second_factor"], changed = kind, true
			}
			if changed {
				if err := tx.PutAccount(acct); err != nil {
					return err
				}
			}
		} else {
			u, err := tx.User(user.Username)
			if err != nil {
				return err
			}
			if u.PasswordHash != hash || !u.Active {
				return errBadLogin
			}
			u.LastLoginAt, u.LastLoginIP = now, ip.String()
			if rehash != "" {
				u.PasswordHash = rehash
			}
			if !u.MustResetPassword && policy.PasswordExpired(u.PasswordAt, u.CreatedAt, acct.Settings.PasswordMaxAge, now) {
				u.MustResetPassword = true
				result["password_expired"] = true
			}
			mustReset = u.MustResetPassword
			if u.MFA.Enrolled() {
				kind, err := s.checkSecondFactor(&u.MFA, owner, code, now)
				if err != nil {
					return err
				}
				result["second_factor"] = kind
			}
			factor = u.MFA
			if err := tx.PutUser(u); err != nil {
				return err
			}
			user = u
		}
		if err := tx.PutSession(ses); err != nil {
			return err
		}
		if mustEnroll = acct.Settings.MFARequired(role) && !factor.Enrolled(); mustEnroll {
			result["must_enroll_mfa"] = true
		}
		return tx.Audit(s.audit(actor, account, "login.success", actor.name(account), nil, result))
	})
	if errors.Is(err, errBadOTP) {
		return LoginResult{}, err
	}
	if err != nil {
		return LoginResult{}, fmt.Errorf("open session on %s: %w", account, err)
	}
	s.loginLimit.forget(loginKey)
	s.log.Info("login", zap.String("account", account), zap.String("role", role),
		zap.String("username", user.Username), zap.String("client_ip", ip.String()))
	return LoginResult{Token: token, Role: role, MustResetPassword: mustReset,
		MustEnrollMFA: mustEnroll, ExpiresAt: ses.ExpiresAt}, nil
}

// newToken returns a session token "ACCOUNT.random" and the hash it is
// stored under. The account lets a token be looked up without an index
// across accounts; the 256 random bits make the hash safe to store as a
// plain SHA-256.
func newToken(account string) (token, hash string) {
	var b [32]byte
	rand.Read(b[:])
	token = account + "." + base64.RawURLEncoding.EncodeToString(b[:])
	return token, hashToken(token)
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Authenticate returns the actor a session token stands for, calling from
// ip. A user's flags, the account's require_mfa and the person's factor
// are read afresh, so a deactivation, a required reset or a required
// factor applies to sessions already open.
func (s *Service) Authenticate(ctx context.Context, token string, ip netip.Addr) (Actor, error) {
	account, _, ok := strings.Cut(token, ".")
	if !ok || len(token) > 200 || !policy.ValidAccountID(account) {
		return Actor{}, errUnauthorized
	}
	ses, err := s.store.Session(ctx, account, hashToken(token))
	if errors.Is(err, policy.ErrNotFound) {
		return Actor{}, errUnauthorized
	}
	if err != nil {
		return Actor{}, fmt.Errorf("read session: %w", err)
	}
	a := Actor{Role: ses.Role, Account: ses.Account, Username: ses.Username, ClientIP: ip, session: ses}
	if ses.Role != policy.RoleMaster && ses.Role != policy.RoleUser {
		return Actor{}, errUnauthorized
	}
	var set policy.Settings
	var factor policy.SecondFactor
	err = s.view(ctx, account, func(tx policy.Tx) error {
		acct, err := tx.Account()
		if err != nil {
			return err
		}
		set, factor = acct.Settings, acct.MasterMFA
		if ses.Role == policy.RoleMaster {
			a.MustResetPassword = acct.MasterMustReset
			return nil
		}
		u, err := tx.User(ses.Username)
		if err != nil {
			return err
		}
		if !u.Active {
			return errUnauthorized
		}
		a.MustResetPassword, a.DesktopAccess, factor = u.MustResetPassword, u.DesktopAccess, u.MFA
		a.Permissions = u.Permissions
		return nil
	})
	if errors.Is(err, policy.ErrNotFound) || errors.Is(err, errUnauthorized) {
		return Actor{}, errUnauthorized
	}
	if err != nil {
		return Actor{}, fmt.Errorf("read the person of a session: %w", err)
	}
	a.MustEnrollMFA = set.MFARequired(ses.Role) && !factor.Enrolled()
	a.TimeZone = set.Zone()
	s.touch(ctx, ses)
	return a, nil
}

// Logout ends the actor's session.
func (s *Service) Logout(ctx context.Context, a Actor) error {
	if !a.hasSession() {
		return errForbidden
	}
	err := s.store.Update(ctx, a.Account, func(tx policy.Tx) error {
		if err := tx.DeleteSession(a.session.TokenHash); err != nil {
			return err
		}
		// A logout here ends the person's web sessions too.
		if err := endWebSessions(tx, a.Username); err != nil {
			return err
		}
		return tx.Audit(s.audit(a, a.Account, "logout", a.name(a.Account), nil, nil))
	})
	if err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// PasswordChange is the outcome of ChangePassword.
type PasswordChange struct {
	// SessionsEnded counts the actor's other sessions, which a new
	// password ends; the calling session stays.
	SessionsEnded int `json:"sessions_ended"`
}

// ChangePassword sets the actor's own password after checking the current
// one. It ends the actor's other sessions and clears a required reset.
// Wrong current passwords count against the login limits.
func (s *Service) ChangePassword(ctx context.Context, a Actor, current, next string) (PasswordChange, error) {
	if !a.hasSession() {
		return PasswordChange{}, errForbidden
	}
	ipKey, loginKey := limitKey(a.ClientIP), a.Account+"/"+a.Username
	done, err := s.beginAttempt(ctx, ipKey, loginKey)
	if err != nil {
		return PasswordChange{}, err
	}
	defer done()
	var old, studio string
	err = s.view(ctx, a.Account, func(tx policy.Tx) error {
		acct, err := tx.Account()
		old, studio = acct.MasterHash, acct.Name
		if a.Role == policy.RoleMaster || err != nil {
			return err
		}
		u, err := tx.User(a.Username)
		old = u.PasswordHash
		return err
	})
	if err != nil {
		return PasswordChange{}, fmt.Errorf("read password hash: %w", err)
	}
	if err := vetPassword(next, a.Username, a.Account, studio); err != nil {
		return PasswordChange{}, err
	}
	if next == current {
		return PasswordChange{}, badRequest(CodeWeakPassword, "the new password must differ from the current one")
	}
	ok, err := s.verify(ctx, old, current)
	if err != nil {
		return PasswordChange{}, err
	}
	if !ok {
		now := s.now()
		s.ipLimit.fail(ipKey, now)
		s.loginLimit.fail(loginKey, now)
		err := s.store.Update(ctx, a.Account, func(tx policy.Tx) error {
			return tx.Audit(s.audit(a, a.Account, "password.change_failed", a.name(a.Account), nil,
				map[string]string{"reason": "wrong current password"}))
		})
		if err != nil {
			return PasswordChange{}, fmt.Errorf("audit failed password change: %w", err)
		}
		return PasswordChange{}, &Error{Status: http.StatusForbidden, Code: CodeWrongPassword,
			Msg: "the current password is wrong"}
	}
	newHash, err := s.hash(ctx, next)
	if err != nil {
		return PasswordChange{}, err
	}
	var res PasswordChange
	err = s.store.Update(ctx, a.Account, func(tx policy.Tx) error {
		if a.Role == policy.RoleMaster {
			acct, err := tx.Account()
			if err != nil {
				return err
			}
			if acct.MasterHash != old {
				return policy.ErrConflict
			}
			acct.MasterHash, acct.MasterMustReset, acct.MasterPasswordAt = newHash, false, s.now().UTC()
			if err := tx.PutAccount(acct); err != nil {
				return err
			}
		} else {
			u, err := tx.User(a.Username)
			if err != nil {
				return err
			}
			if u.PasswordHash != old {
				return policy.ErrConflict
			}
			u.PasswordHash, u.MustResetPassword, u.PasswordAt = newHash, false, s.now().UTC()
			if err := tx.PutUser(u); err != nil {
				return err
			}
		}
		n, err := tx.DeleteSessions(a.Username)
		if err != nil {
			return err
		}
		if err := tx.PutSession(a.session); err != nil {
			return err
		}
		res.SessionsEnded = max(n-1, 0)
		return tx.Audit(s.audit(a, a.Account, "password.change", a.name(a.Account), nil, res))
	})
	if err != nil {
		return PasswordChange{}, fmt.Errorf("change password: %w", err)
	}
	s.loginLimit.forget(loginKey)
	return res, nil
}

// Me is what a logged-in person sees of themselves.
type Me struct {
	Account           string        `json:"account"`
	Username          string        `json:"username,omitempty"`
	DisplayName       string        `json:"display_name,omitempty"`
	Role              string        `json:"role"`
	ClientIP          string        `json:"client_ip"`
	MustResetPassword bool          `json:"must_reset_password"`
	MustEnrollMFA     bool          `json:"must_enroll_mfa"`
	DesktopAccess     bool          `json:"desktop_access"`
	Permissions       []string      `json:"permissions,omitempty"`
	SessionExpiresAt  time.Time     `json:"session_expires_at"`
	Grants            []policy.Rule `json:"grants"`
	SecondFactor      FactorStatus  `json:"second_factor"`
}

// Me returns the actor's identity, address and own live grants. It is
// allowed while a password reset is pending.
func (s *Service) Me(ctx context.Context, a Actor) (Me, error) {
	if !a.hasSession() {
		return Me{}, errForbidden
	}
	me := Me{Account: a.Account, Username: a.Username, Role: a.Role, MustResetPassword: a.MustResetPassword,
		MustEnrollMFA: a.MustEnrollMFA, Permissions: a.Permissions,
		DesktopAccess: a.Role == policy.RoleMaster || a.DesktopAccess, SessionExpiresAt: a.session.ExpiresAt}
	if a.ClientIP.IsValid() {
		me.ClientIP = a.ClientIP.String()
	}
	now := s.now()
	err := s.view(ctx, a.Account, func(tx policy.Tx) error {
		if a.Role == policy.RoleUser {
			u, err := tx.User(a.Username)
			if err != nil {
				return err
			}
			me.DisplayName = u.DisplayName
		}
		f, err := factorOf(tx, a.Username)
		if err != nil {
			return err
		}
		me.SecondFactor = factorStatus(f)
		rules, err := tx.Rules()
		me.Grants = grantsOf(rules, a.name(a.Account), now)
		return err
	})
	if err != nil {
		return Me{}, fmt.Errorf("read own grants: %w", err)
	}
	return me, nil
}

// grantTTL bounds a requested lifetime by the account's settings.
func grantTTL(ttl time.Duration, set policy.Settings) (time.Duration, error) {
	set = set.WithDefaults()
	switch {
	case ttl == 0:
		return time.Duration(set.GrantTTLDefault), nil
	case ttl < time.Minute:
		return 0, badRequest(CodeInvalidTTL, "ttl must be at least 1m")
	case ttl > time.Duration(set.GrantTTLMax):
		return 0, badRequest(CodeInvalidTTL, "ttl may be at most %s for this account", time.Duration(set.GrantTTLMax))
	}
	return ttl, nil
}
