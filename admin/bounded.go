package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// bounded gives each store call its own deadline, so that a store that
// stops answering fails the call within d as unavailable (503
// store_unavailable) instead of holding the request for as long as the
// store's client keeps retrying. The policy engine does not go through
// it: enforcement keeps what it has whatever the store does.
type bounded struct {
	st Store
	d  time.Duration
}

var _ Store = bounded{}

// call runs fn with a deadline d from now, and says that the store did not
// answer when that deadline, not the caller's, ended it.
func (b bounded) call(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, b.d)
	defer cancel()
	err := fn(cctx)
	if err == nil || ctx.Err() != nil || !errors.Is(cctx.Err(), context.DeadlineExceeded) {
		return err
	}
	if errors.Is(err, policy.ErrUnavailable) { // the backend said so already
		return fmt.Errorf("%s: no answer within %v (store.timeout): %w", what, b.d, err)
	}
	return fmt.Errorf("%s: %w: no answer within %v (store.timeout): %w", what, policy.ErrUnavailable, b.d, err)
}

func (b bounded) CreateAccount(ctx context.Context, a policy.Account, audit policy.AuditEntry) error {
	return b.call(ctx, "create account", func(ctx context.Context) error { return b.st.CreateAccount(ctx, a, audit) })
}

func (b bounded) Account(ctx context.Context, id string) (acct policy.Account, err error) {
	err = b.call(ctx, "read account", func(ctx context.Context) error {
		acct, err = b.st.Account(ctx, id)
		return err
	})
	return acct, err
}

func (b bounded) Accounts(ctx context.Context) (accts []policy.Account, err error) {
	err = b.call(ctx, "list accounts", func(ctx context.Context) error {
		accts, err = b.st.Accounts(ctx)
		return err
	})
	return accts, err
}

func (b bounded) Update(ctx context.Context, account string, fn func(tx policy.Tx) error) error {
	return b.call(ctx, "update account", func(ctx context.Context) error { return b.st.Update(ctx, account, fn) })
}

func (b bounded) View(ctx context.Context, account string, fn func(tx policy.Tx) error) error {
	return b.call(ctx, "read account", func(ctx context.Context) error { return b.st.View(ctx, account, fn) })
}

func (b bounded) Session(ctx context.Context, account, tokenHash string) (ses policy.Session, err error) {
	err = b.call(ctx, "read session", func(ctx context.Context) error {
		ses, err = b.st.Session(ctx, account, tokenHash)
		return err
	})
	return ses, err
}

func (b bounded) Audit(ctx context.Context, account string, q policy.AuditQuery) (es []policy.AuditEntry, err error) {
	err = b.call(ctx, "read audit trail", func(ctx context.Context) error {
		es, err = b.st.Audit(ctx, account, q)
		return err
	})
	return es, err
}

// LastDays is not given the deadline d: its first call on a store from
// before the index builds it, from every account's users, which takes
// longer than one call. The store's client still times out each command.
func (b bounded) LastDays(ctx context.Context, until time.Time) ([]policy.LastDay, error) {
	return b.st.LastDays(ctx, until)
}

// ReviewsDue is not given the deadline d either: like LastDays, its first
// call on a store from before the index builds it.
func (b bounded) ReviewsDue(ctx context.Context, until time.Time) ([]policy.ReviewDue, error) {
	return b.st.ReviewsDue(ctx, until)
}
