package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// testReviewsDue checks the index of access reviews: every account is in
// it once, at its ReviewDue, noted or not, kept by the writes of the
// account (CreateAccount, PutAccount, Reseed) in their transaction.
func testReviewsDue(t *testing.T, s policy.Store) {
	ctx := t.Context()
	const day = 24 * time.Hour
	check := func(what string, until time.Time, want ...policy.ReviewDue) {
		t.Helper()
		got, err := s.ReviewsDue(ctx, until)
		if err != nil {
			t.Fatalf("%s: ReviewsDue: %v", what, err)
		}
		if len(want) == 0 {
			want = nil
		}
		if len(got) == 0 {
			got = nil
		}
		equal(t, what, got, want)
	}
	due := func(acct string, at time.Time, noted bool) policy.ReviewDue {
		return policy.ReviewDue{Account: acct, Due: at, Noted: noted}
	}
	put := func(acct string, change func(a *policy.Account)) {
		t.Helper()
		mustUpdate(t, s, acct, func(tx policy.Tx) error {
			a, err := tx.Account()
			if err != nil {
				return err
			}
			change(&a)
			return tx.PutAccount(a)
		})
	}
	check("a new store", time.Time{})

	r1, r2, r3 := account("r1"), account("r2"), account("r3")
	r2.CreatedAt = t0.Add(time.Hour)
	r2.Settings.ReviewEvery = policy.Duration(30 * day)
	// A zone is kept on the account; the index answers in UTC.
	r3.CreatedAt = t0.In(time.FixedZone("CEST", 2*3600))
	for _, a := range []policy.Account{r1, r2, r3} {
		if err := s.CreateAccount(ctx, a, createAudit(a.ID)); err != nil {
			t.Fatal(err)
		}
	}
	check("created: due order, then account", time.Time{},
		due("r2", t0.Add(30*day+time.Hour), false), due("r1", t0.Add(90*day), false), due("r3", t0.Add(90*day), false))
	check("up to until, inclusive", t0.Add(30*day+time.Hour), due("r2", t0.Add(30*day+time.Hour), false))
	check("none yet", t0.Add(30*day))

	put("r1", func(a *policy.Account) { a.Settings.ReviewEvery = policy.Duration(10 * day) })
	check("review_every changed", t0.Add(40*day),
		due("r1", t0.Add(10*day), false), due("r2", t0.Add(30*day+time.Hour), false))

	put("r1", func(a *policy.Account) { a.ReviewOverdueFor = a.ReviewDue() })
	check("noted", t0.Add(40*day), due("r1", t0.Add(10*day), true), due("r2", t0.Add(30*day+time.Hour), false))

	put("r1", func(a *policy.Account) { a.ReviewedAt = t0.Add(12 * day) })
	check("reviewed: due again from then, not noted", t0.Add(40*day),
		due("r1", t0.Add(22*day), false), due("r2", t0.Add(30*day+time.Hour), false))

	put("r2", func(a *policy.Account) { a.Mode = policy.ModeMonitor })
	check("another change leaves it", t0.Add(40*day),
		due("r1", t0.Add(22*day), false), due("r2", t0.Add(30*day+time.Hour), false))

	errBoom := errors.New("boom")
	err := s.Update(ctx, "r2", func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.ReviewedAt = t0.Add(20 * day)
		if err := tx.PutAccount(a); err != nil {
			return err
		}
		return errBoom
	})
	wantErr(t, "a failed Update", err, errBoom)
	check("a failed Update indexes nothing", t0.Add(40*day),
		due("r1", t0.Add(22*day), false), due("r2", t0.Add(30*day+time.Hour), false))

	// A due time between two milliseconds is rounded up: never early.
	put("r3", func(a *policy.Account) { a.ReviewedAt = t0.Add(500 * time.Microsecond) })
	check("rounded up to the millisecond", t0.Add(90*day+time.Millisecond),
		due("r1", t0.Add(22*day), false), due("r2", t0.Add(30*day+time.Hour), false), due("r3", t0.Add(90*day+time.Millisecond), false))

	// Reseed creates the accounts a store lost: indexed with them.
	d, err := s.LoadPolicy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r4 := account("r4")
	r4.CreatedAt = t0.Add(-80 * day)
	if _, err := s.Reseed(ctx, &policy.Data{Generation: d.Generation, Accounts: []policy.AccountPolicy{{Account: r4}}}, createAudit("r4")); err != nil {
		t.Fatal(err)
	}
	check("reseeded", t0.Add(22*day), due("r4", t0.Add(10*day), false), due("r1", t0.Add(22*day), false))
}
