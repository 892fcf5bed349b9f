package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"time"
)

// Errors a store returns; callers test them with errors.Is.
var (
	ErrNotFound    = errors.New("not found")
	ErrExists      = errors.New("already exists")
	ErrConflict    = errors.New("concurrent update, try again")
	ErrUnavailable = errors.New("store unavailable")
	// ErrFeedGap means the change feed no longer holds every change after
	// the cursor: the follower must reload in full.
	ErrFeedGap = errors.New("change feed has a gap, reload needed")
	// ErrNoData means the store holds no gatekeeper generation: it lost its
	// data (a Redis restarted empty) or was never seeded. A backend returns
	// it wrapped together with ErrUnavailable, so callers that only know
	// outages still answer 503 and change nothing.
	ErrNoData = errors.New("the store holds no gatekeeper data (restarted empty or flushed?): writes are refused until it is re-seeded (gatekeeper store reseed)")
	// ErrGenerationMismatch means a store holds other data than expected:
	// not the store a snapshot or an enforced policy came from.
	ErrGenerationMismatch = errors.New("store generation mismatch")
	// ErrUnconfirmed means a write's outcome is unknown: it was sent, but
	// the store did not confirm it in time, or it reached the primary but
	// not the replicas it had to reach. It may have applied, or not, or be
	// lost in a failover. A backend returns it wrapped together with
	// ErrUnavailable.
	ErrUnconfirmed = errors.New("sent, but not confirmed")
	// ErrReadOnly is what a write through the Tx of Store.View returns.
	ErrReadOnly = errors.New("write in a read-only view")
)

// Mode is an account's firewall mode.
type Mode string

const (
	// ModeOn lets through only allowed addresses. The default.
	ModeOn Mode = "on"
	// ModeMonitor lets everyone through but counts what ModeOn would deny.
	ModeMonitor Mode = "monitor"
	// ModeOff lets everyone through.
	ModeOff Mode = "off"
)

// ParseMode parses "on", "monitor" or "off".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeOn, ModeMonitor, ModeOff:
		return m, nil
	}
	return "", fmt.Errorf("unknown firewall mode %q (want on, monitor or off)", s)
}

var accountIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)

// ValidAccountID reports whether id is a well-formed account number.
func ValidAccountID(id string) bool { return accountIDPattern.MatchString(id) }

// Settings are an account's per-account settings (SettingTable describes
// each). A zero field means the documented default.
type Settings struct {
	// GrantTTLDefault is the lifetime of an unblock that names none. Default 12h.
	GrantTTLDefault Duration `json:"grant_ttl_default,omitempty"`
	// GrantTTLMax bounds the lifetime a user may ask for. Default 7 days.
	GrantTTLMax Duration `json:"grant_ttl_max,omitempty"`
	// MaxGrants bounds each user's live grants; the oldest goes when a new
	// one would exceed it. Default 3.
	MaxGrants int `json:"max_grants,omitempty"`
	// DeviceApproval makes a newly enrolled device wait, pending, for a
	// master's approval. Default off.
	DeviceApproval bool `json:"device_approval,omitempty"`
	// LeaseTTL is how long a device's lease lasts unless renewed. Default 1h.
	LeaseTTL Duration `json:"lease_ttl,omitempty"`
	// IPv6GrantPrefix is the length of the IPv6 network an unblock or a
	// lease covers: 64 (the default: privacy addresses rotate within it)
	// or 128.
	IPv6GrantPrefix int `json:"ipv6_grant_prefix,omitempty"`
	// RequireDevice makes a tls listener admit, after the address check,
	// only a client presenting the certificate of a known device (an
	// active device of a user who may connect). Default off.
	RequireDevice bool `json:"require_device,omitempty"`
	// Unblock is how a user's unblock goes: "" or UnblockSelf at once,
	// UnblockApproval as an access request a master decides.
	Unblock string `json:"unblock,omitempty"`
	// RequireMFA is who must have a second factor: "" or MFANone (the
	// default), MFAMasters or MFAEveryone.
	RequireMFA string `json:"require_mfa,omitempty"`
	// PasswordMaxAge, when set, asks for a new password at the next login
	// once the password is older. Zero (the default) never does.
	PasswordMaxAge Duration `json:"password_max_age,omitempty"`
	// ReviewEvery is how often an access review opens. Default 90 days.
	ReviewEvery Duration `json:"review_every,omitempty"`
	// StaleAfter is how long unused makes a user, device or rule marked
	// for removal in a review. Default 60 days.
	StaleAfter Duration `json:"stale_after,omitempty"`
	// TimeZone is the IANA name of the zone the pages show times in.
	// "" means DefaultTimeZone, UTC.
	TimeZone string `json:"time_zone,omitempty"`
}

// Defaults for Settings.
const (
	DefaultGrantTTL    = 12 * time.Hour
	DefaultGrantTTLMax = 7 * 24 * time.Hour
	DefaultMaxGrants   = 3
	DefaultLeaseTTL    = time.Hour
	DefaultIPv6Grant   = 64
	DefaultReviewEvery = 90 * 24 * time.Hour
	DefaultStaleAfter  = 60 * 24 * time.Hour
)

// WithDefaults returns s with zero fields set to their defaults.
func (s Settings) WithDefaults() Settings {
	if s.GrantTTLDefault <= 0 {
		s.GrantTTLDefault = Duration(DefaultGrantTTL)
	}
	if s.GrantTTLMax <= 0 {
		s.GrantTTLMax = Duration(DefaultGrantTTLMax)
	}
	if s.GrantTTLDefault > s.GrantTTLMax {
		s.GrantTTLDefault = s.GrantTTLMax
	}
	if s.MaxGrants <= 0 {
		s.MaxGrants = DefaultMaxGrants
	}
	if s.LeaseTTL <= 0 {
		s.LeaseTTL = Duration(DefaultLeaseTTL)
	}
	if s.IPv6GrantPrefix != 128 {
		s.IPv6GrantPrefix = DefaultIPv6Grant
	}
	if s.ReviewEvery <= 0 {
		s.ReviewEvery = Duration(DefaultReviewEvery)
	}
	if s.StaleAfter <= 0 {
		s.StaleAfter = Duration(DefaultStaleAfter)
	}
	return s
}

// Account is a customer account.
type Account struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Parent string `json:"parent,omitempty"`
	Mode   Mode   `json:"mode"`
	// MasterHash is the encoded slow hash of the master password.
	MasterHash string `json:"master_hash,omitempty"`
	// MasterPasswordAt is when the master password was last set; zero
	// means at CreatedAt.
	MasterPasswordAt time.Time `json:"master_password_at,omitzero"`
	// MasterMustReset asks the master for a new password before anything
	// else, as User.MustResetPassword does (password_max_age).
	MasterMustReset bool `json:"master_must_reset,omitempty"`
	// MasterMFA is the master's second factor.
	MasterMFA SecondFactor `json:"master_mfa,omitzero"`
	// MasterEmail is the master's own address, for a forgotten master
	// password; beside MasterHash because it belongs to the master's
	// login, not to the policy the settings hold.
	MasterEmail MailAddress `json:"master_email,omitzero"`
	// MasterWeb is the master's web sign-in state (masters always have
	// web access).
	MasterWeb WebState `json:"master_web,omitzero"`
	Settings  Settings `json:"settings"`
	// Notifications are where the account's notifications go; webhook
	// secrets included, so an Account is never shown as it is.
	Notifications Notifications `json:"notifications,omitzero"`
	CreatedAt     time.Time     `json:"created_at"`
	// ReviewedAt is when the account's last access review was finished;
	// the next one opens ReviewEvery after it (after CreatedAt before the
	// first).
	ReviewedAt time.Time `json:"reviewed_at,omitzero"`
	// ReviewOverdueFor is the due date whose overdue review was last
	// notified: once per review, whichever instance sees it first.
	ReviewOverdueFor time.Time `json:"review_overdue_for,omitzero"`
}

// ReviewDue is when account's next access review opens.
func (a Account) ReviewDue() time.Time {
	from := a.ReviewedAt
	if from.IsZero() {
		from = a.CreatedAt
	}
	return from.Add(time.Duration(a.Settings.WithDefaults().ReviewEvery))
}

// SecondFactor is one person's second factor: a TOTP secret and its
// recovery codes. The secrets are sealed by the admin service with the
// operator's secrets key before they reach a store, so that a store dump
// or a backup does not hold them in the clear.
type SecondFactor struct {
	// TOTPSecret is the sealed secret of a confirmed TOTP enrolment; empty
	// when there is none.
	TOTPSecret string `json:"totp_secret,omitempty"`
	// TOTPPending is the sealed secret of an enrolment begun but not yet
	// confirmed with a code; it does not count as a factor.
	TOTPPending string `json:"totp_pending,omitempty"`
	// TOTPLastStep is the 30-second step of the last code accepted: a code
	// of that step or an earlier one is refused, so that each code is used
	// once (RFC 6238 section 5.2). It is written in the transaction that
	// opens the session, so a fleet refuses a replay too.
	TOTPLastStep int64 `json:"totp_last_step,omitempty"`
	// RecoveryHashes are the SHA-256 hashes of the unused recovery codes;
	// a code is removed when it is used.
	RecoveryHashes []string `json:"recovery_hashes,omitempty"`
	// EnrolledAt is when the TOTP enrolment was confirmed.
	EnrolledAt time.Time `json:"enrolled_at,omitzero"`
	// PasskeyHandle is the WebAuthn user handle of the person's passkeys:
	// the account number, a dot and random bits, so that a usernameless
	// login finds the account from the handle alone. Empty until the first
	// passkey is registered.
	PasskeyHandle string `json:"passkey_handle,omitempty"`
	// Passkeys are the person's registered WebAuthn credentials.
	Passkeys []Passkey `json:"passkeys,omitempty"`
	// UsedChallenges are the hashes of the WebAuthn challenges answered
	// lately, kept until they expire, so that each challenge is used once
	// even across a fleet.
	UsedChallenges []UsedChallenge `json:"used_challenges,omitempty"`
}

// Passkey is one registered WebAuthn credential.
type Passkey struct {
	// ID is the credential ID, base64url.
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// LastUsedAt is the last login with it.
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	// Credential is the WebAuthn library's record of it (public key, sign
	// count, flags), kept as it serialises it: nothing here is secret.
	Credential []byte `json:"credential"`
}

// UsedChallenge is a WebAuthn challenge answered, until it expires.
type UsedChallenge struct {
	Hash    string    `json:"hash"`
	Expires time.Time `json:"expires"`
}

// Enrolled reports whether f holds a confirmed factor: a TOTP enrolment
// or at least one passkey.
func (f SecondFactor) Enrolled() bool { return f.TOTPSecret != "" || len(f.Passkeys) > 0 }

// Kinds names the confirmed factors f holds, "totp" and "passkey", in
// that order: what a login's second step may be completed with.
func (f SecondFactor) Kinds() []string {
	var k []string
	if f.TOTPSecret != "" {
		k = append(k, "totp")
	}
	if len(f.Passkeys) > 0 {
		k = append(k, "passkey")
	}
	return k
}

// IsZero reports whether f holds nothing, for omitzero.
func (f SecondFactor) IsZero() bool {
	return f.TOTPSecret == "" && f.TOTPPending == "" && f.TOTPLastStep == 0 && len(f.RecoveryHashes) == 0 &&
		f.EnrolledAt.IsZero() && f.PasskeyHandle == "" && len(f.Passkeys) == 0 && len(f.UsedChallenges) == 0
}

// RuleID identifies a rule within its account.
type RuleID uint32

// Rule sources.
const (
	SourceManual  = "manual"  // added by a master
	SourceUnblock = "unblock" // a user's grant for their own address
)

// Rule is one allowed network of an account. A rule with Source
// SourceUnblock is a grant owned by Owner.
type Rule struct {
	ID        RuleID       `json:"id"`
	Account   string       `json:"account"`
	Prefix    netip.Prefix `json:"cidr"`
	Note      string       `json:"note,omitempty"`
	Source    string       `json:"source"`
	Owner     string       `json:"owner,omitempty"`
	CreatedBy string       `json:"created_by"`
	CreatedAt time.Time    `json:"created_at"`
	// ExpiresAt is zero for a rule that never expires.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// LastUsed and Hits come from the usage the proxies flush periodically.
	LastUsed time.Time `json:"last_used,omitzero"`
	Hits     uint64    `json:"hits,omitempty"`
}

// Expired reports whether r has expired at now.
func (r Rule) Expired(now time.Time) bool {
	return !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt)
}

// User is an authorized user of one account.
type User struct {
	Account       string `json:"account"`
	Username      string `json:"username"`
	DisplayName   string `json:"display_name,omitempty"`
	Active        bool   `json:"active"`
	DesktopAccess bool   `json:"desktop_access"`
	// WebAccess lets the user sign in to the web applications behind
	// login routes (MayUseWeb).
	WebAccess         bool      `json:"web_access"`
	MustResetPassword bool      `json:"must_reset_password"`
	PasswordHash      string    `json:"password_hash,omitempty"`
	CreatedAt         time.Time `json:"created_at"`
	LastLoginAt       time.Time `json:"last_login_at,omitzero"`
	LastLoginIP       string    `json:"last_login_ip,omitempty"`
	// PasswordAt is when the password was last set; zero means at
	// CreatedAt.
	PasswordAt time.Time `json:"password_at,omitzero"`
	// MFA is the user's second factor.
	MFA SecondFactor `json:"mfa,omitzero"`
	// Email is the user's own address, for a forgotten password.
	Email MailAddress `json:"email,omitzero"`
	// Permissions are what the user may do beyond reaching the desktops:
	// PermManageStaff, PermViewAudit. Only a master grants them.
	Permissions []string `json:"permissions,omitempty"`
	// AccessUntil, if set, is the user's last day: at that instant they
	// are offboarded by themselves, once (see OffboardReceipt.DueAt). It
	// keeps the zone it was given in.
	AccessUntil time.Time `json:"access_until,omitzero"`
	// Offboarding is the receipt of the user's last offboarding.
	Offboarding *OffboardReceipt `json:"offboarding,omitempty"`
	// Web is the user's web sign-in state.
	Web WebState `json:"web,omitzero"`
}

// The permissions a master may give a user (least privilege: a user has
// none unless given).
const (
	// PermManageStaff: the staff list, create, deactivate, offboard and
	// require password resets of users who hold no permission.
	PermManageStaff = "manage_staff"
	// PermViewAudit: read the account's audit trail.
	PermViewAudit = "view_audit"
)

// Permissions lists every permission, in the order they are shown.
var Permissions = []string{PermManageStaff, PermViewAudit}

// Has reports whether u holds permission p.
func (u User) Has(p string) bool { return slices.Contains(u.Permissions, p) }

// Roles of a session or an audit actor.
const (
	RoleMaster   = "master"
	RoleUser     = "user"
	RoleOperator = "operator"
	// RoleSchedule is the audit actor of what runs by itself at its time
	// (a user's last day).
	RoleSchedule = "schedule"
)

// Session is a logged-in session. Only the hash of its token is stored.
type Session struct {
	TokenHash string `json:"token_hash"`
	Account   string `json:"account"`
	Username  string `json:"username,omitempty"` // empty for a master
	Role      string `json:"role"`
	ClientIP  string `json:"client_ip,omitempty"`
	// UserAgent is the browser or client that logged in, trimmed.
	UserAgent string    `json:"user_agent,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// LastUsedAt is when the session last made a call, to the minute.
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// AuditEntry is one line of an account's audit trail.
type AuditEntry struct {
	// ID is assigned by the store; entries sort newest first by it.
	ID       string          `json:"id"`
	Time     time.Time       `json:"time"`
	Account  string          `json:"account"`
	Actor    string          `json:"actor"`
	Role     string          `json:"role"`
	ClientIP string          `json:"client_ip,omitempty"`
	Action   string          `json:"action"`
	Target   string          `json:"target,omitempty"`
	Before   json.RawMessage `json:"before,omitempty"`
	After    json.RawMessage `json:"after,omitempty"`
}

// AuditQuery pages through an audit trail, newest first.
type AuditQuery struct {
	// Before, when set, returns only entries older than this ID.
	Before string
	// Limit caps the number of entries. Zero means 50.
	Limit int
}

// Usage is what proxies observed of one rule since the last flush.
type Usage struct {
	Account  string
	Rule     RuleID
	LastUsed time.Time
	Hits     uint64
}

// Duration is a time.Duration that reads and writes as "90s", "12h".
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// PasswordExpired reports whether a password set at set (zero: at
// created) is older than maxAge at now; a zero maxAge never expires.
func PasswordExpired(set, created time.Time, maxAge Duration, now time.Time) bool {
	if maxAge <= 0 {
		return false
	}
	if set.IsZero() {
		set = created
	}
	return now.Sub(set) > time.Duration(maxAge)
}

// MailAddress is a person's email address, used only once confirmed by
// the single-use link mailed to it (Confirm), and the link that resets
// their password (Reset). Tokens are stored as SHA-256 hashes only.
type MailAddress struct {
	Address   string    `json:"address,omitempty"`
	Confirmed bool      `json:"confirmed,omitempty"`
	Confirm   MailToken `json:"confirm,omitzero"`
	Reset     MailToken `json:"reset,omitzero"`
}

// MailToken is a single-use emailed link's token, stored hashed.
type MailToken struct {
	Hash      string    `json:"hash,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// For binds the token to what it may act on: for Confirm the address
	// it confirms, for Reset a digest of the password hash it replaces,
	// so that any later password change voids it.
	For string `json:"for,omitempty"`
}
