package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"image/png"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TOTP parameters (RFC 6238): what every authenticator app does by default.
const (
	totpPeriod = 30 // seconds a code lasts
	totpSkew   = 1  // steps accepted either side of now, for clocks that drift
	totpIssuer = "gatekeeper"
	// recoveryCodes is how many single-use recovery codes an enrolment gives.
	recoveryCodes = 10
)

// otpRequired answers a right password of someone with a second factor,
// naming the factors they have. The password was right, so saying which
// factors exist tells a guesser nothing.
func otpRequired(f policy.SecondFactor) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeOTPRequired, Factors: f.Kinds(),
		Msg: "this login needs a second factor: send the code from your authenticator app as \"otp\" (or a recovery code), or log in with a passkey"}
}

var (
	errBadOTP = &Error{Status: http.StatusUnauthorized, Code: CodeInvalidOTP,
		Msg: "the code is wrong or was already used; wait for the next one"}
	errNoSecretsKey = &Error{Status: http.StatusServiceUnavailable, Code: CodeMFAUnavailable,
		Msg: "second factors are not available: the server has no secrets key (admin.secrets_key_file)"}
)

// TOTPEnrolment is a TOTP enrolment begun: the secret, and the otpauth URI
// an authenticator app reads from the QR code. The secret is shown to its
// owner here only; it is stored sealed.
type TOTPEnrolment struct {
	Secret string `json:"secret"`
	URI    string `json:"uri"`
}

// RecoveryCodes are the single-use codes of a confirmed enrolment, shown
// once; only their hashes are kept.
type RecoveryCodes struct {
	Codes []string `json:"recovery_codes"`
	// SessionsEnded counts the person's other sessions, which a new factor
	// ends.
	SessionsEnded int `json:"sessions_ended"`
}

// FactorStatus is what a person sees of their own second factor.
type FactorStatus struct {
	TOTP              bool      `json:"totp"`
	EnrolledAt        time.Time `json:"enrolled_at,omitzero"`
	RecoveryCodesLeft int       `json:"recovery_codes_left"`
	Passkeys          int       `json:"passkeys"`
}

func factorStatus(f policy.SecondFactor) FactorStatus {
	return FactorStatus{TOTP: f.TOTPSecret != "", EnrolledAt: f.EnrolledAt, RecoveryCodesLeft: len(f.RecoveryHashes),
		Passkeys: len(f.Passkeys)}
}

// selfService checks that a may manage their own second factor: anyone
// logged in, once any required password reset is done.
func selfService(a Actor) error {
	switch {
	case !a.hasSession():
		return errForbidden
	case a.MustResetPassword:
		return errResetRequired
	}
	return nil
}

// factorOwner names whose factor a sealed secret is: the additional data
// that binds it to its person.
func factorOwner(account, username string) string { return account + "/" + username }

// factorOf reads the factor of the master (username "") or a user in tx.
func factorOf(tx policy.Tx, username string) (policy.SecondFactor, error) {
	if username == "" {
		acct, err := tx.Account()
		return acct.MasterMFA, err
	}
	u, err := tx.User(username)
	return u.MFA, err
}

// ownFactor reads the actor's own second factor, read-only.
func (s *Service) ownFactor(ctx context.Context, a Actor) (policy.SecondFactor, error) {
	var f policy.SecondFactor
	err := s.view(ctx, a.Account, func(tx policy.Tx) error {
		var err error
		f, err = factorOf(tx, a.Username)
		return err
	})
	return f, err
}

// putFactor stores the factor of the master (username "") or a user in tx.
func putFactor(tx policy.Tx, username string, f policy.SecondFactor) error {
	if username == "" {
		acct, err := tx.Account()
		if err != nil {
			return err
		}
		acct.MasterMFA = f
		return tx.PutAccount(acct)
	}
	u, err := tx.User(username)
	if err != nil {
		return err
	}
	u.MFA = f
	return tx.PutUser(u)
}

// totpURI is the otpauth URI of a secret (the Key URI Format of Google
// Authenticator, which every app reads).
func totpURI(secret, account, username string) string {
	who := username
	if who == "" {
		who = "master"
	}
	label := totpIssuer + ":" + who + "@" + account
	q := url.Values{"secret": {secret}, "issuer": {totpIssuer}, "algorithm": {"SHA1"}, "digits": {"6"},
		"period": {fmt.Sprint(totpPeriod)}}
	return "otpauth://totp/" + url.PathEscape(label) + "?" + q.Encode()
}

// BeginTOTP starts (or restarts) the actor's TOTP enrolment with a new
// secret. The factor in force, if any, stays until the new one is
// confirmed.
func (s *Service) BeginTOTP(ctx context.Context, a Actor) (TOTPEnrolment, error) {
	if err := selfService(a); err != nil {
		return TOTPEnrolment{}, err
	}
	if s.sealer == nil {
		return TOTPEnrolment{}, errNoSecretsKey
	}
	var raw [20]byte // 160 bits, RFC 4226's recommendation for SHA-1
	rand.Read(raw[:])
	secret := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw[:])
	sealed := s.sealer.seal(secret, factorOwner(a.Account, a.Username))
	err := s.store.Update(ctx, a.Account, func(tx policy.Tx) error {
		f, err := factorOf(tx, a.Username)
		if err != nil {
			return err
		}
		f.TOTPPending = sealed
		return putFactor(tx, a.Username, f)
	})
	if err != nil {
		return TOTPEnrolment{}, fmt.Errorf("begin TOTP enrolment: %w", err)
	}
	return TOTPEnrolment{Secret: secret, URI: totpURI(secret, a.Account, a.Username)}, nil
}

// TOTPQRCode returns the PNG QR code of the actor's pending enrolment,
// size pixels square; 404 when none is pending.
func (s *Service) TOTPQRCode(ctx context.Context, a Actor, size int) ([]byte, error) {
	if err := selfService(a); err != nil {
		return nil, err
	}
	if s.sealer == nil {
		return nil, errNoSecretsKey
	}
	f, err := s.ownFactor(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("read pending enrolment: %w", err)
	}
	if f.TOTPPending == "" {
		return nil, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Msg: "no TOTP enrolment is pending; begin one first"}
	}
	secret, err := s.sealer.open(f.TOTPPending, factorOwner(a.Account, a.Username))
	if err != nil {
		return nil, err
	}
	key, err := otp.NewKeyFromURL(totpURI(secret, a.Account, a.Username))
	if err != nil {
		return nil, fmt.Errorf("QR code: %w", err)
	}
	img, err := key.Image(size, size)
	if err != nil {
		return nil, fmt.Errorf("QR code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("QR code: %w", err)
	}
	return buf.Bytes(), nil
}

// ConfirmTOTP completes the actor's pending enrolment with a code from the
// app, which shows that the app holds the secret. It returns ten new
// recovery codes, replacing any earlier ones, and ends the actor's other
// sessions.
func (s *Service) ConfirmTOTP(ctx context.Context, a Actor, code string) (RecoveryCodes, error) {
	if err := selfService(a); err != nil {
		return RecoveryCodes{}, err
	}
	if s.sealer == nil {
		return RecoveryCodes{}, errNoSecretsKey
	}
	codes, hashes := newRecoveryCodes()
	now := s.now().UTC()
	var res RecoveryCodes
	err := s.store.Update(ctx, a.Account, func(tx policy.Tx) error {
		f, err := factorOf(tx, a.Username)
		if err != nil {
			return err
		}
		if f.TOTPPending == "" {
			return badRequest(CodeInvalidRequest, "no TOTP enrolment is pending; begin one first")
		}
		secret, err := s.sealer.open(f.TOTPPending, factorOwner(a.Account, a.Username))
		if err != nil {
			return err
		}
		step, ok := matchTOTP(secret, code, now, 0)
		if !ok {
			return badRequest(CodeInvalidOTP, "the code does not match; check the app's clock and try the next code")
		}
		f.TOTPSecret, f.TOTPPending, f.TOTPLastStep, f.RecoveryHashes, f.EnrolledAt = f.TOTPPending, "", step, hashes, now
		if err := putFactor(tx, a.Username, f); err != nil {
			return err
		}
		if res.SessionsEnded, err = endOtherSessions(tx, a); err != nil {
			return err
		}
		return tx.Audit(s.audit(a, a.Account, "mfa.totp_enrol", a.name(a.Account), nil,
			map[string]any{"recovery_codes": len(hashes), "sessions_ended": res.SessionsEnded}))
	})
	if err != nil {
		return RecoveryCodes{}, fmt.Errorf("confirm TOTP enrolment: %w", err)
	}
	res.Codes = codes
	return res, nil
}

// RemoveTOTP removes the actor's own TOTP factor and recovery codes, and
// ends their other sessions.
func (s *Service) RemoveTOTP(ctx context.Context, a Actor) (SessionsEnded, error) {
	if err := selfService(a); err != nil {
		return SessionsEnded{}, err
	}
	var res SessionsEnded
	err := s.store.Update(ctx, a.Account, func(tx policy.Tx) error {
		f, err := factorOf(tx, a.Username)
		if err != nil {
			return err
		}
		if f.TOTPSecret == "" && f.TOTPPending == "" && len(f.RecoveryHashes) == 0 {
			return errNoChange
		}
		// Passkeys are a factor of their own and stay.
		f.TOTPSecret, f.TOTPPending, f.TOTPLastStep, f.RecoveryHashes, f.EnrolledAt = "", "", 0, nil, time.Time{}
		if err := putFactor(tx, a.Username, f); err != nil {
			return err
		}
		if res.SessionsEnded, err = endOtherSessions(tx, a); err != nil {
			return err
		}
		return tx.Audit(s.audit(a, a.Account, "mfa.totp_remove", a.name(a.Account), nil, res))
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return SessionsEnded{}, fmt.Errorf("remove TOTP: %w", err)
	}
	return res, nil
}

// SessionsEnded says how many sessions a change ended.
type SessionsEnded struct {
	SessionsEnded int `json:"sessions_ended"`
}

// endOtherSessions ends the actor's sessions but the calling one, in tx.
func endOtherSessions(tx policy.Tx, a Actor) (int, error) {
	n, err := tx.DeleteSessions(a.Username)
	if err != nil {
		return 0, err
	}
	if err := tx.PutSession(a.session); err != nil {
		return 0, err
	}
	return max(n-1, 0), nil
}

// matchTOTP finds the step within totpSkew of now whose code is code and
// which is later than last, the step of the last code accepted. Every
// candidate is compared in constant time.
func matchTOTP(secret, code string, now time.Time, last int64) (step int64, ok bool) {
	code = strings.TrimSpace(code)
	if len(code) != 6 {
		return 0, false
	}
	cur := now.Unix() / totpPeriod
	for st := cur - totpSkew; st <= cur+totpSkew; st++ {
		want, err := hotp.GenerateCodeCustom(secret, uint64(st), hotp.ValidateOpts{Digits: otp.DigitsSix,
			Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && st > last && !ok {
			step, ok = st, true
		}
	}
	return step, ok
}

// recoveryAlphabet has no letters that read alike (0/o, 1/l/i).
const recoveryAlphabet = "abcdefghjkmnpqrstuvwxyz23456789"

// newRecoveryCodes returns recoveryCodes codes like "k3m9p-x7q2r" (about
// 50 bits each, so a plain SHA-256 is safe to store) and their hashes.
func newRecoveryCodes() (codes, hashes []string) {
	for range recoveryCodes {
		var b [10]byte
		rand.Read(b[:])
		var sb strings.Builder
		for i, c := range b {
			if i == 5 {
				sb.WriteByte('-')
			}
			sb.WriteByte(recoveryAlphabet[int(c)%len(recoveryAlphabet)])
		}
		codes = append(codes, sb.String())
		hashes = append(hashes, recoveryHash(sb.String()))
	}
	return codes, hashes
}

// recoveryHash hashes a recovery code as typed: case, spaces and dashes do
// not matter.
func recoveryHash(code string) string {
	norm := strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ':
			return -1
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return r
	}, code)
	sum := sha256.Sum256([]byte(norm))
	return hex.EncodeToString(sum[:])
}

// useRecoveryCode removes code from f's recovery codes; false if it is not
// one of them. Every hash is compared in constant time.
func useRecoveryCode(f *policy.SecondFactor, code string) bool {
	h := recoveryHash(code)
	at := -1
	for i, x := range f.RecoveryHashes {
		if subtle.ConstantTimeCompare([]byte(x), []byte(h)) == 1 {
			at = i
		}
	}
	if at < 0 {
		return false
	}
	f.RecoveryHashes = append(f.RecoveryHashes[:at:at], f.RecoveryHashes[at+1:]...)
	return true
}

// checkSecondFactor checks otp against f (a TOTP code, or a recovery code)
// and records its use in f. It says which kind was used.
func (s *Service) checkSecondFactor(f *policy.SecondFactor, owner, code string, now time.Time) (kind string, err error) {
	if s.sealer == nil {
		return "", errNoSecretsKey
	}
	// A person with passkeys only has no code to give: their second step
	// is the passkey ceremony.
	if f.TOTPSecret != "" {
		secret, err := s.sealer.open(f.TOTPSecret, owner)
		if err != nil {
			return "", err
		}
		if step, ok := matchTOTP(secret, code, now, f.TOTPLastStep); ok {
			f.TOTPLastStep = step
			return "totp", nil
		}
	}
	if useRecoveryCode(f, code) {
		return "recovery_code", nil
	}
	return "", errBadOTP
}

// ClearUserFactor removes a user's second factor and recovery codes, for
// an employee who lost their phone: a master of the account (or its
// parent's) does it, never the user, since a factor is never reset by the
// person who may have lost it to someone else. The user's sessions end;
// if the account requires a factor, the next login is held on enrolment.
func (s *Service) ClearUserFactor(ctx context.Context, a Actor, account, username string) (SessionsEnded, error) {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return SessionsEnded{}, err
	}
	return s.clearFactor(ctx, a, account, normalizeUsername(username), "user/"+normalizeUsername(username))
}

// ClearMasterFactor removes a master's second factor: only the operator
// may, a master's own account having no one above it inside gatekeeper.
// The master's sessions end.
func (s *Service) ClearMasterFactor(ctx context.Context, a Actor, account string) (SessionsEnded, error) {
	if a.Role != policy.RoleOperator {
		return SessionsEnded{}, errForbidden
	}
	if !policy.ValidAccountID(account) {
		return SessionsEnded{}, errNotFound
	}
	return s.clearFactor(ctx, a, account, "", "account/"+account)
}

func (s *Service) clearFactor(ctx context.Context, a Actor, account, username, target string) (SessionsEnded, error) {
	var res SessionsEnded
	var to string // the person's confirmed address, for the notice
	err := s.store.Update(ctx, account, func(tx policy.Tx) error {
		to = ""
		if m, err := loadMailAddress(tx, username); err == nil && m.get().Confirmed {
			to = m.get().Address
		}
		f, err := factorOf(tx, username)
		if errors.Is(err, policy.ErrNotFound) {
			return notFound(strings.SplitN(target, "/", 2)[0], err)
		}
		if err != nil {
			return err
		}
		if f.IsZero() {
			return errNoChange
		}
		if err := putFactor(tx, username, policy.SecondFactor{}); err != nil {
			return err
		}
		if res.SessionsEnded, err = tx.DeleteSessions(username); err != nil {
			return err
		}
		return tx.Audit(s.audit(a, account, "mfa.clear", target, factorStatus(f), res))
	})
	if errors.Is(err, policy.ErrNotFound) {
		return SessionsEnded{}, notFound("account", err)
	}
	if errors.Is(err, errNoChange) {
		return res, nil
	}
	if err != nil {
		return SessionsEnded{}, fmt.Errorf("clear the second factor of %s in %s: %w", target, account, err)
	}
	// The person hears of it at their confirmed address: a factor cleared
	// by someone who took over the master's or the operator's access must
	// not go unnoticed by its owner.
	if s.mailer != nil && to != "" {
		s.mailLater(account, to, "gatekeeper: your second factor was removed",
			fmt.Sprintf("The second factor of the login %s of gatekeeper account %s was removed by %s, and every session of that login was ended.\n\n"+
				"Set up a new one on the Sign-in and security page the next time you log in: %s/security\n\n"+
				"If you did not ask for this, tell your account holder or the operator at once.\n",
				loginName(username), account, a.name(account), s.mailer.PageURL()))
	}
	return res, nil
}

// loginTicketTTL is how long the pages' second login step may take.
const loginTicketTTL = 5 * time.Minute

// LoginTicket seals a login the pages must finish with a second factor
// (Login answered otp_required), so that the second step's form need not
// ask for the password again nor carry it readable: the ticket is opaque,
// bound to the account and username, and expires after five minutes. The
// second step calls Login again with what OpenLoginTicket returns, so the
// limits and the audit are the same as the API's.
func (s *Service) LoginTicket(req LoginRequest) (string, error) {
	if s.sealer == nil {
		return "", errNoSecretsKey
	}
	exp := s.now().Add(loginTicketTTL).Unix()
	b64 := base64.RawURLEncoding.EncodeToString // has no '.', unlike a username
	head := fmt.Sprintf("%d.%s.%s", exp, b64([]byte(req.Account)), b64([]byte(req.Username)))
	return head + "." + s.sealer.seal(req.Password, "login-ticket/"+head), nil
}

// errTicket answers a second step whose ticket is expired or not one.
var errTicket = &Error{Status: http.StatusUnauthorized, Code: CodeInvalidCredentials,
	Msg: "this login took too long or was changed; please log in again"}

// OpenLoginTicket returns the login a ticket holds, without the code.
func (s *Service) OpenLoginTicket(ticket string) (LoginRequest, error) {
	if s.sealer == nil {
		return LoginRequest{}, errNoSecretsKey
	}
	parts := strings.SplitN(ticket, ".", 4)
	if len(parts) != 4 || len(ticket) > 1024 {
		return LoginRequest{}, errTicket
	}
	var exp int64
	if _, err := fmt.Sscan(parts[0], &exp); err != nil || s.now().Unix() > exp {
		return LoginRequest{}, errTicket
	}
	account, err1 := base64.RawURLEncoding.DecodeString(parts[1])
	username, err2 := base64.RawURLEncoding.DecodeString(parts[2])
	head := strings.Join(parts[:3], ".")
	pw, err := s.sealer.open(parts[3], "login-ticket/"+head)
	if err != nil || err1 != nil || err2 != nil {
		return LoginRequest{}, errTicket
	}
	return LoginRequest{Account: string(account), Username: string(username), Password: pw}, nil
}
