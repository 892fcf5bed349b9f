package policy

import (
	"context"
	"time"
)

// LastDayPending reports whether u has a last day still to run: set, the
// user active, and not run for this last day already. A store keeps an
// index of the users for whom it holds (LastDays), so that finding the
// last days to run costs in proportion to them, not to the accounts.
func (u User) LastDayPending() bool {
	return !u.AccessUntil.IsZero() && u.Active &&
		(u.Offboarding == nil || !u.Offboarding.DueAt.Equal(u.AccessUntil))
}

// LastDay is one entry of a store's index of last days.
type LastDay struct {
	Account  string
	Username string
	// Due is the user's AccessUntil, in UTC, rounded up to the
	// millisecond: never before the instant itself.
	Due time.Time
}

// LastDays is the part of a store that indexes last days. The store keeps
// the index itself, in the transaction that writes the user: a user put
// with LastDayPending is in it at its AccessUntil, any other user is not.
type LastDays interface {
	// LastDays returns the pending last days due up to until (all of
	// them when until is zero), earliest first, then by account and
	// username.
	LastDays(ctx context.Context, until time.Time) ([]LastDay, error)
}

// LastDayDue rounds a last day up to the millisecond, as the index holds
// it.
func LastDayDue(t time.Time) time.Time {
	d := t.UTC().Truncate(time.Millisecond)
	if d.Before(t) {
		d = d.Add(time.Millisecond)
	}
	return d
}
