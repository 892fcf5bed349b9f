package policy

import (
	"context"
	"time"
)

// ReviewNoted reports whether the overdue review of a's current due date
// was noted already (ReviewOverdueFor): the review check has nothing to
// write for it. A store keeps it in its index of reviews (ReviewsDue), so
// that the check reads no account it has nothing to write to.
func (a Account) ReviewNoted() bool { return a.ReviewOverdueFor.Equal(a.ReviewDue()) }

// ReviewDue is one entry of a store's index of access reviews.
type ReviewDue struct {
	Account string
	// Due is the account's ReviewDue, in UTC, rounded up to the
	// millisecond as LastDayDue does: never before the instant itself.
	Due time.Time
	// Noted is the account's ReviewNoted.
	Noted bool
}

// ReviewsDue is the part of a store that indexes access reviews. The
// store keeps the index itself, in the transaction that writes the
// account: every account is in it once, at its ReviewDue.
type ReviewsDue interface {
	// ReviewsDue returns the accounts whose review is due up to until
	// (all of them when until is zero), earliest first, then by
	// account.
	ReviewsDue(ctx context.Context, until time.Time) ([]ReviewDue, error)
}
