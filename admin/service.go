package admin

import (
	"github.com/go-webauthn/webauthn/webauthn"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Store is what the admin package needs of a policy store; every
// policy.Store has it.
type Store interface {
	CreateAccount(ctx context.Context, a policy.Account, audit policy.AuditEntry) error
	Account(ctx context.Context, id string) (policy.Account, error)
	Accounts(ctx context.Context) ([]policy.Account, error)
	Update(ctx context.Context, account string, fn func(tx policy.Tx) error) error
	View(ctx context.Context, account string, fn func(tx policy.Tx) error) error
	Session(ctx context.Context, account, tokenHash string) (policy.Session, error)
	Audit(ctx context.Context, account string, q policy.AuditQuery) ([]policy.AuditEntry, error)
	LastDays(ctx context.Context, until time.Time) ([]policy.LastDay, error)
	ReviewsDue(ctx context.Context, until time.Time) ([]policy.ReviewDue, error)
}

var _ Store = policy.Store(nil)

// Options configure a Service. Only Store is required.
type Options struct {
	// Store holds accounts, users, sessions and the audit trail.
	Store Store
	// StoreTimeout bounds each store call: a store that does not answer
	// within it fails the call with policy.ErrUnavailable (503
	// store_unavailable), having changed nothing, or, for a write already
	// sent, policy.ErrUnconfirmed (503 store_unconfirmed). If zero, 2s
	// (config's store.timeout).
	StoreTimeout time.Duration
	// Logger; if nil, nothing is logged. Nothing secret is ever logged:
	// no password, token or hash.
	Logger *zap.Logger
	// Registerer receives gatekeeper_login_failures_total,
	// gatekeeper_device_lease_requests_total, gatekeeper_devices and
	// gatekeeper_device_leases_active. If nil, the counters are kept but
	// not exported.
	Registerer prometheus.Registerer
	// PasswordParams are the argon2id costs of new hashes. If zero,
	// password.Default. Tests use cheap ones.
	PasswordParams password.Params
	// SessionTTL is how long a login lasts. If zero, 12h.
	SessionTTL time.Duration
	// LoginLimits limit failed logins; the zero value takes the defaults
	// documented on LoginLimits.
	LoginLimits LoginLimits
	// MaxConcurrentHashes bounds password hashes computed at once, each
	// costing PasswordParams.Memory, so that a login storm cannot take the
	// proxy's CPU or memory. If zero, half of GOMAXPROCS (at least one):
	// the gate comes first, so a storm of logins always leaves it a core.
	MaxConcurrentHashes int
	// LiveConnections, if set, reports how many live desktop connections of
	// account come from an address closes reports. It is called inside the
	// transaction that revokes grants (offboarding, deactivation, desktop
	// access off), just before the revocation commits; closes reports the
	// addresses a revoked rule's network holds and no remaining rule
	// allows, and the proxies then close exactly those connections when
	// the change reaches them. It must be quick and must not call the
	// Service. If nil, the number of connections closed is unknown and
	// left out of the reports.
	LiveConnections func(account string, closes func(netip.Addr) bool) int
	// DeviceStatsEvery is how old the counts of gatekeeper_devices and
	// gatekeeper_device_leases_active may get before a scrape reads them
	// again from the store, which means reading every account. If zero,
	// one minute.
	DeviceStatsEvery time.Duration
	// SecretsKey (32 bytes, see SecretsKey) seals second-factor secrets
	// at rest. If nil, second factors cannot be enrolled (503
	// mfa_unavailable), and a person who has one cannot log in.
	SecretsKey []byte
	// Mailer sends the address confirmations and password reset links
	// (notify.Mail, the operator's notify.smtp). If nil, addresses are
	// kept unconfirmed and no password is reset by email.
	Mailer Mailer
	// PublicURL is the admin pages' address as people reach it
	// ("https://gate.example.com:8443"): its host name is the passkeys'
	// relying party ID, its origin the only one a passkey answer may come
	// from. If empty, passkeys are not available (503 mfa_unavailable).
	PublicURL string
	// WebApps says which account's login route serves an application
	// host; if nil, no hand-off to an application is issued.
	WebApps WebApps
	// LastDayScan is how often RunLastDays reads the store's index of last
	// days (policy.LastDays) for last days set by another instance. If
	// zero, 10s.
	LastDayScan time.Duration
	// ReviewScan is how often RunLastDays reads the store's index of
	// access reviews (policy.ReviewsDue) to see whose review is overdue:
	// reviews are due by the day, so less often than the last days. If
	// zero, 1m.
	ReviewScan time.Duration
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
}

// Service is what the admin API and web pages do, independent of HTTP:
// every method takes the acting identity, checks that it may act, and
// makes its change in one store transaction with one audit entry.
type Service struct {
	store  Store
	log    *zap.Logger
	params password.Params
	ttl    time.Duration
	now    func() time.Time
	live   func(string, func(netip.Addr) bool) int
	dummy  string // a hash to verify against when there is none
	// checkHash is password.Verify; a test wraps it to see that every
	// failed login does the same work, which wall-clock timing on a
	// shared machine cannot show reliably.
	checkHash func(hash, pw string) bool
	hashSlots chan struct{}      // a token per concurrent hash
	sealer    *sealer            // nil without a secrets key
	rp        *webauthn.WebAuthn // nil without a public URL
	mailer    Mailer
	// mintSecret makes the secret of an emailed link; a test wraps it to
	// count the work of a forgotten-password request.
	mintSecret func() string
	mailWG     sync.WaitGroup // mail sent after answering

	ipLimit    *limiter
	loginLimit *limiter

	loginFailures *prometheus.CounterVec
	leaseRequests *prometheus.CounterVec
	deviceStats   *deviceCollector

	childrenMu sync.Mutex
	children   *childIndex // nil until first asked for

	// lastDayPoke wakes RunLastDays when a last day is set here, so that
	// one a few seconds ahead is not left to the next scan.
	lastDayPoke   chan struct{}
	reviewOverdue *prometheus.GaugeVec
	// overdueSeen holds the accounts that have a reviewOverdue series
	// here: a series is made when a review is first overdue, so that a
	// fleet of 100,000 accounts does not export one per account.
	overdueSeen sync.Map
	lastDayScan time.Duration
	reviewScan  time.Duration
	webApps     WebApps
}

// New returns a Service.
func New(opts Options) (*Service, error) {
	if opts.Store == nil {
		return nil, errors.New("admin: no store")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.PasswordParams == (password.Params{}) {
		opts.PasswordParams = password.Default
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = 2 * time.Second
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 12 * time.Hour
	}
	if opts.MaxConcurrentHashes <= 0 {
		opts.MaxConcurrentHashes = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DeviceStatsEvery <= 0 {
		opts.DeviceStatsEvery = time.Minute
	}
	if opts.LastDayScan <= 0 {
		opts.LastDayScan = 10 * time.Second
	}
	if opts.ReviewScan <= 0 {
		opts.ReviewScan = time.Minute
	}
	lim := opts.LoginLimits.withDefaults()
	s := &Service{
		store:         bounded{st: opts.Store, d: opts.StoreTimeout},
		log:           opts.Logger,
		params:        opts.PasswordParams,
		ttl:           opts.SessionTTL,
		now:           opts.Now,
		live:          opts.LiveConnections,
		webApps:       opts.WebApps,
		dummy:         password.Dummy(opts.PasswordParams),
		checkHash:     password.Verify,
		mailer:        opts.Mailer,
		mintSecret:    newSecret,
		hashSlots:     make(chan struct{}, opts.MaxConcurrentHashes),
		lastDayPoke:   make(chan struct{}, 1),
		lastDayScan:   opts.LastDayScan,
		reviewScan:    opts.ReviewScan,
		reviewOverdue: newReviewOverdue(),
		ipLimit:       newLimiter(lim.PerIP, lim.MaxKeys),
		loginLimit:    newLimiter(lim.PerLogin, lim.MaxKeys),
		loginFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_login_failures_total",
			Help: "Failed admin logins, by reason: invalid_credentials (any part wrong) or rate_limited (refused before checking).",
		}, []string{"reason"}),
		leaseRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_device_lease_requests_total",
			Help: "Device lease requests, by outcome: created, renewed, refused (an inactive or pending device, or an owner who may not connect), bad_signature, stale_signature, error.",
		}, []string{"outcome"}),
	}
	if opts.SecretsKey != nil {
		sl, err := newSealer(opts.SecretsKey)
		if err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
		s.sealer = sl
	}
	if opts.PublicURL != "" {
		rp, err := NewRelyingParty(opts.PublicURL)
		if err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
		s.rp = rp
	}
	for _, r := range []string{"invalid_credentials", "rate_limited"} {
		s.loginFailures.WithLabelValues(r)
	}
	for _, o := range leaseOutcomes {
		s.leaseRequests.WithLabelValues(o)
	}
	s.deviceStats = newDeviceCollector(s, opts.DeviceStatsEvery)
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.reviewOverdue, s.loginFailures, s.leaseRequests, s.deviceStats} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("admin: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Actor is who makes a call, as authenticated: a master or user by their
// session, or the operator by the operator token.
type Actor struct {
	// Role is policy.RoleMaster, policy.RoleUser or policy.RoleOperator.
	Role string
	// Account is the account the session belongs to; empty for the operator.
	Account string
	// Username is the user's name; empty for a master and the operator.
	Username string
	// ClientIP is the caller's address as the admin listener sees it.
	ClientIP netip.Addr
	// MustResetPassword (a user's, or a master's whose password expired)
	// and DesktopAccess are a user's flags as they were
	// when the call was authenticated; calls that depend on them check again
	// inside their transaction.
	MustResetPassword bool
	DesktopAccess     bool
	// MustEnrollMFA says that the account requires a second factor of
	// the actor, who has none; the API and the pages then allow only
	// enrolment (see LoginResult.MustEnrollMFA).
	MustEnrollMFA bool
	// Permissions are a user's permissions as they were when the call was
	// authenticated; writes that depend on them check again inside their
	// transaction.
	Permissions []string
	// TimeZone is the IANA name of the account's time_zone setting, which
	// the pages show times in.
	TimeZone string

	session policy.Session // zero for the operator
}

// Operator returns the operator's actor, calling from ip.
func Operator(ip netip.Addr) Actor { return Actor{Role: policy.RoleOperator, ClientIP: ip} }

// SessionExpiresAt is when the actor's session ends; zero for the operator.
func (a Actor) SessionExpiresAt() time.Time { return a.session.ExpiresAt }

// name is how the audit trail and rule records name the actor when it acts
// on account: "master" for the account's own master, "master@10000" for a
// parent's, the username for a user, "operator".
func (a Actor) name(account string) string {
	switch a.Role {
	case policy.RoleMaster:
		if account != a.Account {
			return "master@" + a.Account
		}
		return "master"
	case policy.RoleUser:
		return a.Username
	}
	return a.Role
}

// hasSession reports whether the actor logged in (master or user).
func (a Actor) hasSession() bool { return a.session.TokenHash != "" }

// asMaster checks that a may use the master calls of account id and returns
// the account. Masters may act on their own account and on its children;
// anything about another account is "not found", whoever asks.
func (s *Service) asMaster(ctx context.Context, a Actor, id string) (policy.Account, error) {
	switch a.Role {
	case policy.RoleMaster:
		if a.MustResetPassword {
			return policy.Account{}, errResetRequired
		}
	case policy.RoleUser:
		if a.MustResetPassword {
			return policy.Account{}, errResetRequired
		}
		if a.Account != id {
			return policy.Account{}, errNotFound
		}
		return policy.Account{}, errForbidden
	default:
		return policy.Account{}, errForbidden
	}
	if !policy.ValidAccountID(id) {
		return policy.Account{}, errNotFound
	}
	acct, err := s.store.Account(ctx, id)
	if errors.Is(err, policy.ErrNotFound) {
		return policy.Account{}, errNotFound
	}
	if err != nil {
		return policy.Account{}, fmt.Errorf("read account %s: %w", id, err)
	}
	if acct.ID != a.Account && (acct.Parent == "" || acct.Parent != a.Account) {
		return policy.Account{}, errNotFound
	}
	return acct, nil
}

// errNoChange ends a write transaction that finds nothing to change:
// Update writes nothing when fn fails, and the caller answers success.
var errNoChange = errors.New("nothing to change")

// view runs fn on a read-only view of one account: page loads and other
// reads do not queue behind writes.
func (s *Service) view(ctx context.Context, account string, fn func(tx policy.Tx) error) error {
	return s.store.View(ctx, account, fn)
}

// audit builds an audit entry for a's action on account.
func (s *Service) audit(a Actor, account, action, target string, before, after any) policy.AuditEntry {
	e := policy.AuditEntry{Time: s.now().UTC(), Account: account, Actor: a.name(account), Role: a.Role,
		Action: action, Target: target, Before: rawJSON(before), After: rawJSON(after)}
	if a.ClientIP.IsValid() {
		e.ClientIP = a.ClientIP.String()
	}
	return e
}

// rawJSON marshals v for an audit entry; nil stays empty. The values are
// this package's own views, which always marshal.
func rawJSON(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(`"unencodable"`)
	}
	return b
}

// acquireHash waits for a hashing slot; release by reading from hashSlots.
func (s *Service) acquireHash(ctx context.Context) error {
	select {
	case s.hashSlots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait to hash a password: %w", ctx.Err())
	}
}

func (s *Service) releaseHash() { <-s.hashSlots }

// hash hashes pw within the concurrency bound.
func (s *Service) hash(ctx context.Context, pw string) (string, error) {
	if err := s.acquireHash(ctx); err != nil {
		return "", err
	}
	defer s.releaseHash()
	h, err := password.Hash(pw, s.params)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return h, nil
}

// verify checks pw against hash within the concurrency bound; an empty
// hash is checked against the dummy so that it costs the same.
func (s *Service) verify(ctx context.Context, hash, pw string) (bool, error) {
	if err := s.acquireHash(ctx); err != nil {
		return false, err
	}
	defer s.releaseHash()
	if hash == "" {
		s.checkHash(s.dummy, pw)
		return false, nil
	}
	return s.checkHash(hash, pw), nil
}

// vetPassword checks a new password and answers weak_password.
func vetPassword(pw, username, account string, known ...string) error {
	if err := password.Vet(pw, username, account, known...); err != nil {
		return badRequest(CodeWeakPassword, "%s", err.Error())
	}
	return nil
}

// live reports whether r is in force at now.
func live(r policy.Rule, now time.Time) bool { return !r.Expired(now) }

// grantsOf returns owner's grants among rules that are live at now.
func grantsOf(rules []policy.Rule, owner string, now time.Time) []policy.Rule {
	out := []policy.Rule{}
	for _, r := range rules {
		if r.Source == policy.SourceUnblock && r.Owner == owner && live(r, now) {
			out = append(out, r)
		}
	}
	return out
}

// revokeGrants deletes every grant and device lease of owner, expired
// ones too, and returns the live ones it removed and, if the
// LiveConnections hook is set, the number of live connections that lose
// their permission. Called inside a write transaction.
func (s *Service) revokeGrants(tx policy.Tx, account, owner string, now time.Time) (revoked []policy.Rule, closed *int, err error) {
	return s.revokeRules(tx, account, now, func(r policy.Rule) bool {
		return (r.Source == policy.SourceUnblock || r.Source == policy.SourceDevice) && r.Owner == owner
	})
}

// revokeRules deletes every rule match selects, as revokeGrants does.
func (s *Service) revokeRules(tx policy.Tx, account string, now time.Time, match func(policy.Rule) bool) (revoked []policy.Rule, closed *int, err error) {
	acct, err := tx.Account()
	if err != nil {
		return nil, nil, err
	}
	rules, err := tx.Rules()
	if err != nil {
		return nil, nil, err
	}
	var remaining []policy.Rule
	for _, r := range rules {
		if !match(r) {
			if live(r, now) {
				remaining = append(remaining, r)
			}
			continue
		}
		if err := tx.DeleteRule(r.ID); err != nil {
			return nil, nil, fmt.Errorf("delete %s rule %d: %w", r.Source, r.ID, err)
		}
		if live(r, now) {
			revoked = append(revoked, r)
		}
	}
	if s.live != nil {
		n := 0
		if acct.Mode == policy.ModeOn && len(revoked) > 0 {
			n = s.live(account, func(a netip.Addr) bool {
				return allowedBy(revoked, a) && !allowedBy(remaining, a)
			})
		}
		closed = &n
	}
	return revoked, closed, nil
}

func allowedBy(rules []policy.Rule, a netip.Addr) bool {
	for _, r := range rules {
		if r.Prefix.Contains(a) {
			return true
		}
	}
	return false
}
