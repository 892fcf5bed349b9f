package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// ceremonyTTL is how long a passkey ceremony may take, from begin to
// finish: long enough to find the security key, short enough that a
// challenge is not worth stealing.
const ceremonyTTL = 5 * time.Minute

// maxPasskeys bounds a person's passkeys, and so the size of their record.
const maxPasskeys = 20

// maxPasskeyName bounds a passkey's name in bytes.
const maxPasskeyName = 64

var (
	errNoPasskeys = &Error{Status: http.StatusServiceUnavailable, Code: CodeMFAUnavailable,
		Msg: "passkeys are not available: the server has no secrets key or no admin.public_url"}
	errCeremony = &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest,
		Msg: "this passkey request expired, was already used or is not this session's; start again"}
	errBadPasskey = &Error{Status: http.StatusUnauthorized, Code: CodeInvalidCredentials,
		Msg: "the passkey was not accepted; try again or log in with your password"}
)

// NewRelyingParty returns the WebAuthn relying party of the admin pages
// reached at publicURL ("https://gate.example.com:8443"): the host name is
// the relying party ID, the URL's origin the only origin accepted.
func NewRelyingParty(publicURL string) (*webauthn.WebAuthn, error) {
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" {
		return nil, fmt.Errorf("passkeys: %q is not an http(s) URL like https://gate.example.com:8443", publicURL)
	}
	rp, err := webauthn.New(&webauthn.Config{
		RPID:          u.Hostname(),
		RPDisplayName: "gatekeeper",
		RPOrigins:     []string{u.Scheme + "://" + u.Host},
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementRequired,
			UserVerification: protocol.VerificationRequired,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("passkeys: %w", err)
	}
	return rp, nil
}

// PasskeyInfo is what a person sees of one of their passkeys.
type PasskeyInfo struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

func passkeyInfos(f policy.SecondFactor) []PasskeyInfo {
	out := make([]PasskeyInfo, 0, len(f.Passkeys))
	for _, p := range f.Passkeys {
		out = append(out, PasskeyInfo{ID: p.ID, Name: p.Name, CreatedAt: p.CreatedAt, LastUsedAt: p.LastUsedAt})
	}
	return out
}

// PasskeyCeremony is a ceremony begun: the options for the browser's
// navigator.credentials call, and the token the finish must bring back,
// which holds the challenge sealed and bound to who asked.
type PasskeyCeremony struct {
	Token   string `json:"token"`
	Options any    `json:"options"`
}

// PasskeyRegistration is the body of the registration's finish.
type PasskeyRegistration struct {
	Token      string          `json:"token"`
	Name       string          `json:"name"`
	Credential json.RawMessage `json:"credential"`
}

// PasskeyLoginBegin is the body of the login's begin: with a ticket (the
// pages' second step), only that person's passkeys are asked for.
type PasskeyLoginBegin struct {
	Ticket string `json:"ticket,omitempty"`
}

// PasskeyLogin is the body of the login's finish.
type PasskeyLogin struct {
	Token string `json:"token"`
	// Ticket is the pages' second step's, when the login began with one.
	Ticket     string          `json:"ticket,omitempty"`
	Credential json.RawMessage `json:"credential"`
	UserAgent  string          `json:"-"`
}

// passkeyPerson is a person as the WebAuthn library sees them.
type passkeyPerson struct {
	handle, name string
	creds        []webauthn.Credential
}

func (p passkeyPerson) WebAuthnID() []byte                         { return []byte(p.handle) }
func (p passkeyPerson) WebAuthnName() string                       { return p.name }
func (p passkeyPerson) WebAuthnDisplayName() string                { return p.name }
func (p passkeyPerson) WebAuthnCredentials() []webauthn.Credential { return p.creds }

func newPasskeyPerson(account, username string, f policy.SecondFactor) (passkeyPerson, error) {
	name := "master@" + account
	if username != "" {
		name = username + "@" + account
	}
	p := passkeyPerson{handle: f.PasskeyHandle, name: name}
	for _, k := range f.Passkeys {
		var c webauthn.Credential
		if err := json.Unmarshal(k.Credential, &c); err != nil {
			return p, fmt.Errorf("read passkey %s: %w", k.ID, err)
		}
		p.creds = append(p.creds, c)
	}
	return p, nil
}

// ceremony is what a ceremony token seals.
type ceremony struct {
	Expires int64                `json:"exp"`
	Session webauthn.SessionData `json:"session"`
	// Account and Username bind a second-step login to its ticket's person.
	Account  string `json:"account,omitempty"`
	Username string `json:"username,omitempty"`
}

// sealCeremony seals a ceremony to bind, which names its kind and the
// session (or ticket person) it belongs to: a token copied to another
// session does not open.
func (s *Service) sealCeremony(c ceremony, bind string) string {
	c.Expires = s.now().Add(ceremonyTTL).Unix()
	b, _ := json.Marshal(c)
	return s.sealer.seal(string(b), "passkey/"+bind)
}

func (s *Service) openCeremony(token, bind string) (ceremony, error) {
	var c ceremony
	if len(token) > 8192 {
		return c, errCeremony
	}
	plain, err := s.sealer.open(token, "passkey/"+bind)
	if err != nil || json.Unmarshal([]byte(plain), &c) != nil || s.now().Unix() > c.Expires {
		return c, errCeremony
	}
	return c, nil
}

// useChallenge records challenge as answered in f, refusing one answered
// before, and forgets those expired.
func useChallenge(f *policy.SecondFactor, challenge string, now time.Time) error {
	sum := sha256.Sum256([]byte(challenge))
	h := hex.EncodeToString(sum[:])
	f.UsedChallenges = slices.DeleteFunc(f.UsedChallenges, func(u policy.UsedChallenge) bool { return now.After(u.Expires) })
	for _, u := range f.UsedChallenges {
		if u.Hash == h {
			return errCeremony
		}
	}
	f.UsedChallenges = append(f.UsedChallenges, policy.UsedChallenge{Hash: h, Expires: now.Add(ceremonyTTL)})
	return nil
}

// PasskeysAvailable says whether passkeys can be used here: a secrets key
// and admin.public_url are configured.
func (s *Service) PasskeysAvailable() bool { return s.passkeysReady() == nil }

func (s *Service) passkeysReady() error {
	if s.sealer == nil || s.rp == nil {
		return errNoPasskeys
	}
	return nil
}

// registerBind binds a registration to the calling session.
func registerBind(a Actor) string { return "register/" + a.session.TokenHash }

// BeginPasskeyRegistration starts registering a passkey for the actor: a
// discoverable credential, verified by the authenticator, excluding the
// ones they have.
func (s *Service) BeginPasskeyRegistration(ctx context.Context, a Actor) (PasskeyCeremony, error) {
	if err := selfService(a); err != nil {
		return PasskeyCeremony{}, err
	}
	if err := s.passkeysReady(); err != nil {
		return PasskeyCeremony{}, err
	}
	f, err := s.ownFactor(ctx, a)
	if err != nil {
		return PasskeyCeremony{}, fmt.Errorf("begin passkey registration: %w", err)
	}
	if len(f.Passkeys) >= maxPasskeys {
		return PasskeyCeremony{}, badRequest(CodeInvalidRequest, "at most %d passkeys; remove one first", maxPasskeys)
	}
	if f.PasskeyHandle == "" {
		// The handle is fixed at finish; until then a new one is proposed.
		var b [24]byte
		rand.Read(b[:])
		f.PasskeyHandle = a.Account + "." + base64.RawURLEncoding.EncodeToString(b[:])
	}
	p, err := newPasskeyPerson(a.Account, a.Username, f)
	if err != nil {
		return PasskeyCeremony{}, err
	}
	var exclude []protocol.CredentialDescriptor
	for _, c := range p.creds {
		exclude = append(exclude, c.Descriptor())
	}
	opts, sd, err := s.rp.BeginRegistration(p, webauthn.WithExclusions(exclude))
	if err != nil {
		return PasskeyCeremony{}, fmt.Errorf("begin passkey registration: %w", err)
	}
	return PasskeyCeremony{Token: s.sealCeremony(ceremony{Session: *sd}, registerBind(a)), Options: opts}, nil
}

// FinishPasskeyRegistration checks the browser's answer to a registration
// and stores the passkey under its name. Like a new TOTP enrolment, it
// ends the actor's other sessions.
func (s *Service) FinishPasskeyRegistration(ctx context.Context, a Actor, req PasskeyRegistration) (PasskeyInfo, error) {
	if err := selfService(a); err != nil {
		return PasskeyInfo{}, err
	}
	if err := s.passkeysReady(); err != nil {
		return PasskeyInfo{}, err
	}
	name, err := passkeyName(req.Name)
	if err != nil {
		return PasskeyInfo{}, err
	}
	c, err := s.openCeremony(req.Token, registerBind(a))
	if err != nil {
		return PasskeyInfo{}, err
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(req.Credential)
	if err != nil {
		return PasskeyInfo{}, badRequest(CodeInvalidRequest, "the passkey answer is not a WebAuthn registration")
	}
	now := s.now().UTC()
	var info PasskeyInfo
	var ended int
	err = s.store.Update(ctx, a.Account, func(tx policy.Tx) error {
		f, err := factorOf(tx, a.Username)
		if err != nil {
			return err
		}
		if f.PasskeyHandle == "" {
			f.PasskeyHandle = string(c.Session.UserID)
		}
		if string(c.Session.UserID) != f.PasskeyHandle || len(f.Passkeys) >= maxPasskeys {
			return errCeremony
		}
		if err := useChallenge(&f, c.Session.Challenge, now); err != nil {
			return err
		}
		p, err := newPasskeyPerson(a.Account, a.Username, f)
		if err != nil {
			return err
		}
		cred, err := s.rp.CreateCredential(p, c.Session, parsed)
		if err != nil {
			return badRequest(CodeInvalidRequest, "the passkey was not accepted: %s", protocolReason(err))
		}
		id := base64.RawURLEncoding.EncodeToString(cred.ID)
		for _, k := range f.Passkeys {
			if k.ID == id {
				return &Error{Status: http.StatusConflict, Code: CodeConflict, Msg: "this passkey is registered already"}
			}
		}
		raw, err := json.Marshal(cred)
		if err != nil {
			return fmt.Errorf("store passkey: %w", err)
		}
		k := policy.Passkey{ID: id, Name: name, CreatedAt: now, Credential: raw}
		f.Passkeys = append(f.Passkeys, k)
		if err := putFactor(tx, a.Username, f); err != nil {
			return err
		}
		if ended, err = endOtherSessions(tx, a); err != nil {
			return err
		}
		info = passkeyInfos(policy.SecondFactor{Passkeys: []policy.Passkey{k}})[0]
		return tx.Audit(s.audit(a, a.Account, "mfa.passkey_add", a.name(a.Account), nil,
			map[string]any{"passkey": info, "sessions_ended": ended}))
	})
	if err != nil {
		return PasskeyInfo{}, fmt.Errorf("finish passkey registration: %w", err)
	}
	return info, nil
}

// protocolReason is what the WebAuthn library says went wrong, for the
// person whose browser answered; it holds no challenge.
func protocolReason(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.Details != "" {
		return pe.Details
	}
	return "the answer did not verify"
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// Passkeys lists the actor's passkeys.
func (s *Service) Passkeys(ctx context.Context, a Actor) ([]PasskeyInfo, error) {
	if err := selfService(a); err != nil {
		return nil, err
	}
	f, err := s.ownFactor(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("list passkeys: %w", err)
	}
	return passkeyInfos(f), nil
}

// RemovePasskey removes one of the actor's passkeys and ends their other
// sessions, as any factor change does.
func (s *Service) RemovePasskey(ctx context.Context, a Actor, id string) (SessionsEnded, error) {
	if err := selfService(a); err != nil {
		return SessionsEnded{}, err
	}
	var res SessionsEnded
	err := s.store.Update(ctx, a.Account, func(tx policy.Tx) error {
		f, err := factorOf(tx, a.Username)
		if err != nil {
			return err
		}
		at, err := passkeyAt(f, id)
		if err != nil {
			return err
		}
		gone := passkeyInfos(policy.SecondFactor{Passkeys: f.Passkeys[at : at+1]})[0]
		f.Passkeys = slices.Delete(f.Passkeys, at, at+1)
		if err := putFactor(tx, a.Username, f); err != nil {
			return err
		}
		if res.SessionsEnded, err = endOtherSessions(tx, a); err != nil {
			return err
		}
		return tx.Audit(s.audit(a, a.Account, "mfa.passkey_remove", a.name(a.Account),
			map[string]any{"passkey": gone}, res))
	})
	if err != nil {
		return SessionsEnded{}, fmt.Errorf("remove passkey: %w", err)
	}
	return res, nil
}

// passkeyName is the one rule for a passkey's name, at registration and
// at a rename: trimmed, 1 to maxPasskeyName bytes of UTF-8, no control
// characters.
func passkeyName(s string) (string, error) {
	name := strings.TrimSpace(s)
	if name == "" || len(name) > maxPasskeyName || !utf8.ValidString(name) || strings.ContainsFunc(name, isControl) {
		return "", badRequest(CodeInvalidRequest, "name the passkey (1 to %d characters, no control characters)", maxPasskeyName)
	}
	return name, nil
}

// RenamePasskey gives one of the actor's passkeys a new name, so that
// "iPhone" can become "Anna's old iPhone" before it is removed. Unlike
// adding or removing one, it changes no factor, so sessions stay.
func (s *Service) RenamePasskey(ctx context.Context, a Actor, id, name string) (PasskeyInfo, error) {
	if err := selfService(a); err != nil {
		return PasskeyInfo{}, err
	}
	name, err := passkeyName(name)
	if err != nil {
		return PasskeyInfo{}, err
	}
	var out PasskeyInfo
	err = s.store.Update(ctx, a.Account, func(tx policy.Tx) error {
		f, err := factorOf(tx, a.Username)
		if err != nil {
			return err
		}
		at, err := passkeyAt(f, id)
		if err != nil {
			return err
		}
		old := f.Passkeys[at].Name
		f.Passkeys[at].Name = name
		if err := putFactor(tx, a.Username, f); err != nil {
			return err
		}
		out = passkeyInfos(policy.SecondFactor{Passkeys: f.Passkeys[at : at+1]})[0]
		return tx.Audit(s.audit(a, a.Account, "mfa.passkey_rename", a.name(a.Account),
			map[string]any{"id": id, "name": old}, map[string]any{"id": id, "name": name}))
	})
	if err != nil {
		return PasskeyInfo{}, fmt.Errorf("rename passkey: %w", err)
	}
	return out, nil
}

// passkeyAt is the index of f's passkey id; not found when it has none.
func passkeyAt(f policy.SecondFactor, id string) (int, error) {
	at := slices.IndexFunc(f.Passkeys, func(k policy.Passkey) bool { return k.ID == id })
	if at < 0 {
		return 0, notFound("passkey", policy.ErrNotFound)
	}
	return at, nil
}

// loginBind binds a login ceremony: to its ticket's person on the pages'
// second step, to nothing for a usernameless login.
func loginBind(account, username string) string { return "login/" + account + "/" + username }

// BeginPasskeyLogin starts a passkey login. Without a ticket it asks for
// any discoverable credential of this site; with one (the pages' second
// step after a right password) only for that person's.
func (s *Service) BeginPasskeyLogin(ctx context.Context, req PasskeyLoginBegin) (PasskeyCeremony, error) {
	if err := s.passkeysReady(); err != nil {
		return PasskeyCeremony{}, err
	}
	if req.Ticket == "" {
		opts, sd, err := s.rp.BeginDiscoverableLogin()
		if err != nil {
			return PasskeyCeremony{}, fmt.Errorf("begin passkey login: %w", err)
		}
		return PasskeyCeremony{Token: s.sealCeremony(ceremony{Session: *sd}, loginBind("", "")), Options: opts}, nil
	}
	lr, err := s.OpenLoginTicket(req.Ticket)
	if err != nil {
		return PasskeyCeremony{}, err
	}
	account, username := strings.TrimSpace(lr.Account), normalizeUsername(lr.Username)
	var f policy.SecondFactor
	err = s.view(ctx, account, func(tx policy.Tx) error {
		var err error
		f, err = factorOf(tx, username)
		return err
	})
	if err != nil || len(f.Passkeys) == 0 {
		return PasskeyCeremony{}, errBadPasskey
	}
	p, err := newPasskeyPerson(account, username, f)
	if err != nil {
		return PasskeyCeremony{}, err
	}
	opts, sd, err := s.rp.BeginLogin(p)
	if err != nil {
		return PasskeyCeremony{}, fmt.Errorf("begin passkey login: %w", err)
	}
	c := ceremony{Session: *sd, Account: account, Username: username}
	return PasskeyCeremony{Token: s.sealCeremony(c, loginBind(account, username)), Options: opts}, nil
}

// FinishPasskeyLogin checks the browser's answer to a passkey login and
// opens a session for the person whose passkey it is: the user handle
// names the account, the credential the person. A passkey verified by its
// authenticator is both factors, so no password is asked. The login
// limits apply per address and per account as to a password.
func (s *Service) FinishPasskeyLogin(ctx context.Context, req PasskeyLogin, ip netip.Addr) (LoginResult, error) {
	if err := s.passkeysReady(); err != nil {
		return LoginResult{}, err
	}
	bindAcct, bindUser := "", ""
	if req.Ticket != "" {
		lr, err := s.OpenLoginTicket(req.Ticket)
		if err != nil {
			return LoginResult{}, err
		}
		bindAcct, bindUser = strings.TrimSpace(lr.Account), normalizeUsername(lr.Username)
	}
	c, err := s.openCeremony(req.Token, loginBind(bindAcct, bindUser))
	if err != nil {
		return LoginResult{}, err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(req.Credential)
	if err != nil {
		return LoginResult{}, badRequest(CodeInvalidRequest, "the passkey answer is not a WebAuthn assertion")
	}
	handle := string(parsed.Response.UserHandle)
	account, _, _ := strings.Cut(handle, ".")
	if !policy.ValidAccountID(account) || (bindAcct != "" && account != bindAcct) {
		return LoginResult{}, errBadPasskey
	}
	ipKey := limitKey(ip)
	loginKey := account + "/(passkey)"
	done, err := s.beginAttempt(ctx, ipKey, loginKey)
	if err != nil {
		return LoginResult{}, err
	}
	defer done()

	token, tokenHash := newToken(account)
	now := s.now().UTC()
	var role, username string
	var mustReset bool
	err = s.store.Update(ctx, account, func(tx policy.Tx) error {
		acct, err := tx.Account()
		if err != nil {
			return err
		}
		var u policy.User
		f := acct.MasterMFA
		role = policy.RoleMaster
		if f.PasskeyHandle != handle || handle == "" {
			users, err := tx.Users()
			if err != nil {
				return err
			}
			at := slices.IndexFunc(users, func(u policy.User) bool { return u.MFA.PasskeyHandle == handle })
			if at < 0 || !users[at].Active {
				return errBadPasskey
			}
			u, f, role = users[at], users[at].MFA, policy.RoleUser
		}
		username = u.Username
		if bindAcct != "" && username != bindUser {
			return errBadPasskey
		}
		p, err := newPasskeyPerson(account, username, f)
		if err != nil {
			return err
		}
		var cred *webauthn.Credential
		if len(c.Session.UserID) == 0 { // usernameless: the handle found p
			cred, err = s.rp.ValidateDiscoverableLogin(func(_, _ []byte) (webauthn.User, error) { return p, nil },
				c.Session, parsed)
		} else {
			cred, err = s.rp.ValidateLogin(p, c.Session, parsed)
		}
		if err != nil {
			s.log.Debug("passkey assertion refused", zap.String("account", account), zap.String("reason", protocolReason(err)))
			return errBadPasskey
		}
		if err := useChallenge(&f, c.Session.Challenge, now); err != nil {
			return err
		}
		id := base64.RawURLEncoding.EncodeToString(cred.ID)
		at := slices.IndexFunc(f.Passkeys, func(k policy.Passkey) bool { return k.ID == id })
		if at < 0 {
			return errBadPasskey
		}
		raw, err := json.Marshal(cred) // the sign count moved on
		if err != nil {
			return fmt.Errorf("store passkey: %w", err)
		}
		f.Passkeys[at].Credential, f.Passkeys[at].LastUsedAt = raw, now
		result := map[string]any{"result": "success", "second_factor": "passkey", "passkey": f.Passkeys[at].Name}
		if role == policy.RoleMaster {
			acct.MasterMFA = f
			mustReset = acct.MasterMustReset
			if err := tx.PutAccount(acct); err != nil {
				return err
			}
		} else {
			u.MFA, u.LastLoginAt, u.LastLoginIP = f, now, ip.String()
			mustReset = u.MustResetPassword
			if err := tx.PutUser(u); err != nil {
				return err
			}
		}
		ses := policy.Session{TokenHash: tokenHash, Account: account, Username: username, Role: role,
			ClientIP: ip.String(), UserAgent: trimUserAgent(req.UserAgent), CreatedAt: now,
			LastUsedAt: now.Truncate(time.Second), ExpiresAt: now.Add(s.ttl)}
		if err := tx.PutSession(ses); err != nil {
			return err
		}
		actor := Actor{Role: role, Account: account, Username: username, ClientIP: ip}
		return tx.Audit(s.audit(actor, account, "login.success", actor.name(account), nil, result))
	})
	if errors.Is(err, errBadPasskey) || errors.Is(err, policy.ErrNotFound) {
		s.loginFailed(ctx, account, "", "", "passkey refused", false, ip, ipKey, loginKey)
		return LoginResult{}, errBadPasskey
	}
	if err != nil {
		return LoginResult{}, fmt.Errorf("passkey login to %s: %w", account, err)
	}
	s.loginLimit.forget(loginKey)
	s.log.Info("login", zap.String("account", account), zap.String("role", role),
		zap.String("username", username), zap.String("client_ip", ip.String()), zap.String("second_factor", "passkey"))
	return LoginResult{Token: token, Role: role, MustResetPassword: mustReset, ExpiresAt: now.Add(s.ttl)}, nil
}
