package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// NewAccount is what it takes to create an account.
type NewAccount struct {
	ID       string
	Name     string
	Parent   string
	Password string
	// Actor and Role name who creates it, for the audit trail.
	Actor    string
	Role     string
	ClientIP string
}

// ErrInvalid wraps input that breaks a rule; its message is for the user.
var ErrInvalid = errors.New("invalid input")

// CreateAccount validates, hashes the master password and stores a new
// account in mode on. It is shared by the operator API, the CLI and the
// bootstrap on first start.
func CreateAccount(ctx context.Context, st Store, n NewAccount, hp password.Params, now time.Time) (policy.Account, error) {
	if !policy.ValidAccountID(n.ID) {
		return policy.Account{}, fmt.Errorf("%w: account number %q: letters, digits and -, up to 64, not starting with -", ErrInvalid, n.ID)
	}
	if n.Name == "" {
		n.Name = n.ID
	}
	if len(n.Name) > 200 {
		return policy.Account{}, fmt.Errorf("%w: name longer than 200 bytes", ErrInvalid)
	}
	if n.Parent != "" {
		if n.Parent == n.ID {
			return policy.Account{}, fmt.Errorf("%w: an account cannot be its own parent", ErrInvalid)
		}
		if _, err := st.Account(ctx, n.Parent); err != nil {
			return policy.Account{}, fmt.Errorf("parent account %s: %w", n.Parent, err)
		}
	}
	if err := password.Vet(n.Password, "", n.ID, n.Name); err != nil {
		return policy.Account{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	hash, err := password.Hash(n.Password, hp)
	if err != nil {
		return policy.Account{}, fmt.Errorf("hash master password: %w", err)
	}
	a := policy.Account{ID: n.ID, Name: n.Name, Parent: n.Parent, Mode: policy.ModeOn, MasterHash: hash, CreatedAt: now.UTC()}
	after, _ := json.Marshal(publicAccount(a))
	audit := policy.AuditEntry{Time: now.UTC(), Actor: n.Actor, Role: n.Role, ClientIP: n.ClientIP,
		Action: "account.create", Target: "account/" + a.ID, After: after}
	if err := st.CreateAccount(ctx, a, audit); err != nil {
		return policy.Account{}, fmt.Errorf("create account %s: %w", n.ID, err)
	}
	return a, nil
}

// AccountView is an account as the API shows it: never the password hash.
type AccountView struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Parent    string          `json:"parent,omitempty"`
	Mode      policy.Mode     `json:"mode"`
	Settings  policy.Settings `json:"settings"`
	CreatedAt time.Time       `json:"created_at"`
	// ReviewDueAt is when the next access review opens; ReviewOverdue once
	// it has and is not finished (set by Account, for the banner).
	ReviewDueAt   time.Time `json:"review_due_at,omitzero"`
	ReviewOverdue bool      `json:"review_overdue,omitempty"`
}

func publicAccount(a policy.Account) AccountView {
	return AccountView{ID: a.ID, Name: a.Name, Parent: a.Parent, Mode: a.Mode, Settings: a.Settings.WithDefaults(), CreatedAt: a.CreatedAt}
}

// CreatedAccount is the outcome of Service.CreateAccount.
type CreatedAccount struct {
	Account AccountView `json:"account"`
	// Password is the generated master password, shown this once; empty
	// when the caller chose one.
	Password string `json:"password,omitempty"`
}

// CreateAccount is CreateAccount for the operator: when n.Password is
// empty it generates one and returns it once.
func (s *Service) CreateAccount(ctx context.Context, a Actor, n NewAccount) (CreatedAccount, error) {
	if a.Role != policy.RoleOperator {
		return CreatedAccount{}, errForbidden
	}
	var res CreatedAccount
	if n.Password == "" {
		n.Password = password.Generate()
		res.Password = n.Password
	}
	n.Actor, n.Role = a.name(n.ID), a.Role
	if a.ClientIP.IsValid() {
		n.ClientIP = a.ClientIP.String()
	}
	if err := s.acquireHash(ctx); err != nil {
		return CreatedAccount{}, err
	}
	acct, err := CreateAccount(ctx, s.store, n, s.params, s.now())
	s.releaseHash()
	switch {
	case errors.Is(err, password.ErrTooShort), errors.Is(err, password.ErrTooLong), errors.Is(err, password.ErrGuessable):
		return CreatedAccount{}, badRequest(CodeWeakPassword, "%s", strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
	case errors.Is(err, ErrInvalid):
		return CreatedAccount{}, badRequest(CodeInvalidRequest, "%s", strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
	case errors.Is(err, policy.ErrExists):
		return CreatedAccount{}, errorf(http.StatusConflict, CodeExists, "account %s already exists", n.ID)
	case errors.Is(err, policy.ErrNotFound):
		return CreatedAccount{}, badRequest(CodeInvalidRequest, "parent account %s does not exist", n.Parent)
	case err != nil:
		return CreatedAccount{}, err
	}
	res.Account = publicAccount(acct)
	s.log.Info("account created", zap.String("account", acct.ID), zap.String("parent", acct.Parent),
		zap.String("client_ip", n.ClientIP))
	return res, nil
}

// Accounts lists every account, for the operator.
func (s *Service) Accounts(ctx context.Context, a Actor) ([]AccountView, error) {
	if a.Role != policy.RoleOperator {
		return nil, errForbidden
	}
	accts, err := s.store.Accounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	out := make([]AccountView, 0, len(accts))
	for _, acct := range accts {
		out = append(out, publicAccount(acct))
	}
	return out, nil
}

// Account returns one account a master may manage: their own or one of its
// children. Anything else answers 404, as everywhere.
func (s *Service) Account(ctx context.Context, a Actor, id string) (AccountView, error) {
	acct, err := s.asMaster(ctx, a, id)
	if err != nil {
		return AccountView{}, err
	}
	v := publicAccount(acct)
	v.ReviewDueAt = acct.ReviewDue()
	v.ReviewOverdue = !s.now().Before(v.ReviewDueAt)
	return v, nil
}

// childrenTTL is how long the index of child accounts is reused. Listing
// every account is a full scan of the store, too costly for each page a
// master opens; a child account created meanwhile shows up within it.
const childrenTTL = time.Minute

// childIndex is every parent's children, as of at.
type childIndex struct {
	at       time.Time
	children map[string][]AccountView
}

// ManagedAccounts lists the accounts a master manages: their own first,
// then its child accounts sorted by ID. The list of children may be up to
// a minute old; the actor's own account is read afresh.
func (s *Service) ManagedAccounts(ctx context.Context, a Actor) ([]AccountView, error) {
	if a.Role != policy.RoleMaster {
		return nil, errForbidden
	}
	own, err := s.Account(ctx, a, a.Account)
	if err != nil {
		return nil, err
	}
	idx, err := s.childIndex(ctx)
	if err != nil {
		return nil, err
	}
	return append([]AccountView{own}, idx.children[a.Account]...), nil
}

// childIndex returns the index of child accounts, rebuilding it from a
// full listing when it is older than childrenTTL.
func (s *Service) childIndex(ctx context.Context) (*childIndex, error) {
	s.childrenMu.Lock()
	defer s.childrenMu.Unlock()
	now := s.now()
	if c := s.children; c != nil && now.Sub(c.at) < childrenTTL && !now.Before(c.at) {
		return c, nil
	}
	accts, err := s.store.Accounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	c := &childIndex{at: now, children: map[string][]AccountView{}}
	for _, acct := range accts { // sorted by ID
		if acct.Parent != "" {
			c.children[acct.Parent] = append(c.children[acct.Parent], publicAccount(acct))
		}
	}
	s.children = c
	return c, nil
}

// MasterPasswordReset is the outcome of ResetMasterPassword.
type MasterPasswordReset struct {
	Account string `json:"account"`
	// Password is the generated password, shown this once; empty when the
	// caller chose one.
	Password      string `json:"password,omitempty"`
	SessionsEnded int    `json:"sessions_ended"`
}

// ResetMasterPassword gives an account's master a new password, for the
// operator: a forgotten master password, or an account restored by a
// reseed (a snapshot holds no passwords). Every master session ends. When
// pw is empty one is generated and returned once.
func (s *Service) ResetMasterPassword(ctx context.Context, a Actor, account, pw string) (MasterPasswordReset, error) {
	if a.Role != policy.RoleOperator {
		return MasterPasswordReset{}, errForbidden
	}
	if !policy.ValidAccountID(account) {
		return MasterPasswordReset{}, errNotFound
	}
	res := MasterPasswordReset{Account: account}
	if pw == "" {
		pw = password.Generate()
		res.Password = pw
	}
	if err := vetPassword(pw, "", account); err != nil {
		return MasterPasswordReset{}, err
	}
	hash, err := s.hash(ctx, pw)
	if err != nil {
		return MasterPasswordReset{}, err
	}
	err = s.store.Update(ctx, account, func(tx policy.Tx) error {
		acct, err := tx.Account()
		if err != nil {
			return err
		}
		acct.MasterHash, acct.MasterPasswordAt = hash, s.now().UTC()
		if err := tx.PutAccount(acct); err != nil {
			return err
		}
		if res.SessionsEnded, err = tx.DeleteSessions(""); err != nil {
			return err
		}
		return tx.Audit(s.audit(a, account, "account.master_password_reset", "account/"+account, nil,
			map[string]int{"sessions_ended": res.SessionsEnded}))
	})
	if errors.Is(err, policy.ErrNotFound) {
		return MasterPasswordReset{}, notFound("account", err)
	}
	if err != nil {
		return MasterPasswordReset{}, fmt.Errorf("reset master password of %s: %w", account, err)
	}
	s.log.Info("master password reset by the operator", zap.String("account", account),
		zap.Int("sessions_ended", res.SessionsEnded))
	return res, nil
}
