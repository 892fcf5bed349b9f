package policy

import (
	"context"
	"time"
)

// Store is the contract every backend (embedded file, Redis) implements and
// the conformance suite in store/storetest checks. All writes go through
// Update so that a change, its audit entry and its change-feed entry land
// together or not at all.
type Store interface {
	Source

	// CreateAccount stores a new account. ErrExists if the ID is taken.
	// The audit entry is written with it. On a store with no generation
	// it mints one first only when the store's Lineage knows of none (a
	// first start); otherwise the store lost its data and it answers
	// ErrNoData (with ErrUnavailable). Minting there, Reseed, and
	// restoring a backup are the only ways a store gets a generation.
	CreateAccount(ctx context.Context, a Account, audit AuditEntry) error
	// Account returns one account, ErrNotFound if there is none.
	Account(ctx context.Context, id string) (Account, error)
	// Accounts lists every account, sorted by ID.
	Accounts(ctx context.Context) ([]Account, error)

	// Update runs fn as one transaction on one account's data. Reads in fn
	// see the committed state plus fn's own writes; writes apply only if fn
	// returns nil, all at once, with a change-feed entry when the policy
	// (mode or rules) changed. If fn fails, Update returns fn's error
	// unchanged and writes nothing (callers use this for read-only
	// transactions). Update retries fn when a concurrent writer got there
	// first, so fn must have no side effects outside tx. ErrNotFound if the
	// account does not exist; ErrNoData (with ErrUnavailable) if the store
	// lost its data.
	Update(ctx context.Context, account string, fn func(tx Tx) error) error
	// View runs fn on a read-only view of one account's data, for callers
	// that only read: it takes no write lock and commits nothing, so it
	// does not queue behind writers. Writes through tx fail with
	// ErrReadOnly. It returns fn's error unchanged; ErrNotFound if the
	// account does not exist.
	View(ctx context.Context, account string, fn func(tx Tx) error) error

	// Session returns a live session by token hash. ErrNotFound when it
	// does not exist or has expired.
	Session(ctx context.Context, account, tokenHash string) (Session, error)

	// Audit returns an account's audit entries, newest first.
	Audit(ctx context.Context, account string, q AuditQuery) ([]AuditEntry, error)

	// Reseed restores a policy, read from a snapshot file, into a store
	// that lost its data: every account of d the store does not hold is
	// created with its mode and rules (IDs kept), each with the audit entry,
	// and the store takes d's generation, so that instances still enforcing
	// that generation accept it again. Accounts the store holds are left as
	// they are. A store holding another generation is refused with
	// ErrGenerationMismatch. A snapshot has no passwords, users, sessions or
	// audit trail: restored accounts need a new master password.
	Reseed(ctx context.Context, d *Data, audit AuditEntry) (ReseedResult, error)

	// RecordUsage adds hits and advances last-use times. It does not touch
	// the change feed: usage is informational.
	RecordUsage(ctx context.Context, u []Usage) error

	Outbox
	SigningKeys
	LastDays
	ReviewsDue

	// Close releases the store.
	Close() error
}

// Outbox is the part of a store that holds notifications until they are
// delivered. Tx.Audit writes an outbox entry (NewOutboxEntry) with every
// audit entry whose action is notified, in the same transaction.
type Outbox interface {
	// OutboxAccounts lists the accounts with notifications waiting,
	// sorted.
	OutboxAccounts(ctx context.Context) ([]string, error)
	// OutboxEntries returns an account's waiting notifications, oldest
	// first (OutboxOrder).
	OutboxEntries(ctx context.Context, account string) ([]OutboxEntry, error)
	// SaveOutbox stores e's delivery state: the last attempt of each
	// delivery becomes its destination's status, and an entry that is
	// Done leaves the outbox. An entry that already left is not brought
	// back.
	SaveOutbox(ctx context.Context, e OutboxEntry) error
	// DeliveryStatus returns the last attempt at each of an account's
	// destinations, by Destination.Key.
	DeliveryStatus(ctx context.Context, account string) (map[string]Attempt, error)
	// ClaimLease takes the fleet-wide lease name for holder, or renews
	// holder's, for ttl. It answers false while another holder's lease
	// is live: one instance of a fleet at a time does the leased work,
	// and another takes over when the holder stops renewing.
	ClaimLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
}

// ReseedResult says what Reseed did.
type ReseedResult struct {
	Restored int // accounts created
	Rules    int // rules in them
	Skipped  int // accounts the store already held
}

// Tx is one account's data inside Store.Update or Store.View.
type Tx interface {
	Account() (Account, error)
	// PutAccount replaces the account; its ID cannot change.
	PutAccount(a Account) error

	// Rules returns the account's rules, expired ones included, sorted by ID,
	// with their usage.
	Rules() ([]Rule, error)
	// PutRule stores r. A zero ID is replaced by a new one, returned.
	PutRule(r Rule) (Rule, error)
	// DeleteRule removes a rule; ErrNotFound if there is none.
	DeleteRule(id RuleID) error

	// Users returns every user of the account, sorted by username.
	Users() ([]User, error)
	// User returns one user; ErrNotFound if there is none.
	User(username string) (User, error)
	// PutUser creates or replaces a user.
	PutUser(u User) error

	// PutSession stores a session of this account. ExpiresAt is required.
	PutSession(s Session) error
	// DeleteSession ends one session; no error if it was already gone.
	DeleteSession(tokenHash string) error
	// DeleteSessions ends every session of a user ("" for the master)
	// and says how many there were.
	DeleteSessions(username string) (int, error)
	// Sessions returns the live sessions of a user ("" for the master),
	// this transaction's puts and deletions included, sorted by token
	// hash. In Update, a session ended concurrently makes the transaction
	// retry, so that a session read here and put back is not revived.
	Sessions(username string) ([]Session, error)

	// Devices returns the account's devices, sorted by ID.
	Devices() ([]Device, error)
	// Device returns one device; ErrNotFound if there is none.
	Device(id string) (Device, error)
	// PutDevice creates or replaces a device.
	PutDevice(d Device) error

	// Enrollments returns the account's enrolment codes, expired ones
	// included, sorted by code hash.
	Enrollments() ([]Enrollment, error)
	// PutEnrollment stores an enrolment code.
	PutEnrollment(e Enrollment) error
	// DeleteEnrollment removes one; no error if it was already gone.
	DeleteEnrollment(codeHash string) error

	// AccessRequests returns the account's access requests, sorted by ID.
	AccessRequests() ([]AccessRequest, error)
	// AccessRequest returns one; ErrNotFound if there is none.
	AccessRequest(id string) (AccessRequest, error)
	// PutAccessRequest creates or replaces an access request.
	PutAccessRequest(r AccessRequest) error
	// DeleteAccessRequest removes one; no error if it was already gone.
	DeleteAccessRequest(id string) error

	// Audit appends an entry to the account's audit trail. Its ID and,
	// when zero, its Time are set by the store.
	Audit(e AuditEntry) error
}

// Source is what the Engine needs from a store: the whole policy, one
// account's policy, and the change feed.
type Source interface {
	// LoadPolicy returns every account's policy and the feed cursor it
	// reflects: following from that cursor misses nothing. Rule usage
	// (Hits, LastUsed) is left at zero.
	LoadPolicy(ctx context.Context) (*Data, error)
	// LoadAccountPolicy returns one account's policy; ErrNotFound if the
	// account is gone.
	LoadAccountPolicy(ctx context.Context, account string) (AccountPolicy, error)
	// Follow calls fn with the changes after cursor as they are committed,
	// until ctx ends (returning ctx.Err()) or the feed fails. One account's
	// changes arrive in commit order; across accounts the order is
	// unspecified (a sharded feed has no total order). It returns
	// ErrFeedGap when changes after cursor are no longer held or the cursor
	// is empty or foreign, and an error wrapping ErrUnavailable when the
	// store cannot be reached.
	Follow(ctx context.Context, cursor string, fn func([]Change)) error
}

// Data is the whole policy at one point of the change feed.
type Data struct {
	Accounts []AccountPolicy
	// Cursor is the feed position this data reflects; opaque.
	Cursor string
	// Generation identifies the store's contents: a store that lost its data
	// and was set up again has a new one. Empty when the store holds no
	// gatekeeper data at all.
	Generation string
}

// AccountPolicy is what the matcher needs of one account.
type AccountPolicy struct {
	Account Account
	Rules   []Rule
	// Devices are the account's device keys with their standing (see
	// DeviceKeys), sorted by key; the gate needs them only when the
	// account requires a known device.
	Devices []DeviceKey
	// Web are the users who may sign in to web applications (WebUsers),
	// and WebKnown says that the store said so: a policy without it (a
	// snapshot) lets nobody sign in.
	Web      []WebUser
	WebKnown bool
}

// Change says that one account's policy changed.
type Change struct {
	Account string
	// Cursor is the feed position just after this change.
	Cursor string
	// Time is when the change was committed, for measuring sync lag.
	Time time.Time
	// Loaded says that the source read the account's policy together with
	// the change, at the change or later, so the engine need not load
	// it: Policy, or nil if the account is gone. Unless every change of a
	// batch has it, the engine loads them all.
	Loaded bool
	Policy *AccountPolicy
}
