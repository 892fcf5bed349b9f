package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// testLastDays checks the index of last days: kept by PutUser, in the
// user's transaction, for the users with a last day still to run.
func testLastDays(t *testing.T, s policy.Store) {
	mustCreate(t, s, "l1", "l2")
	ctx := t.Context()
	user := func(name string, until time.Time) policy.User {
		return policy.User{Username: name, Active: true, DesktopAccess: true, CreatedAt: t0, AccessUntil: until}
	}
	put := func(acct string, us ...policy.User) {
		t.Helper()
		mustUpdate(t, s, acct, func(tx policy.Tx) error {
			for _, u := range us {
				if err := tx.PutUser(u); err != nil {
					return err
				}
			}
			return nil
		})
	}
	check := func(what string, until time.Time, want ...policy.LastDay) {
		t.Helper()
		got, err := s.LastDays(ctx, until)
		if err != nil {
			t.Fatalf("%s: LastDays: %v", what, err)
		}
		if len(want) == 0 {
			want = nil
		}
		if len(got) == 0 {
			got = nil
		}
		equal(t, what, got, want)
	}
	day := func(acct, name string, due time.Time) policy.LastDay {
		return policy.LastDay{Account: acct, Username: name, Due: due}
	}
	check("a new store", time.Time{})

	done := user("fay", t0.Add(time.Hour))
	done.Offboarding = &policy.OffboardReceipt{DueAt: done.AccessUntil}
	gone := user("eve", t0.Add(time.Hour))
	gone.Active = false
	// A zone is kept on the user; the index answers in UTC.
	put("l1", user("ann", t0.Add(3*time.Hour).In(time.FixedZone("CEST", 2*3600))), user("bob", t0.Add(time.Hour)),
		gone, user("zed", t0.Add(4*time.Hour)))
	put("l2", user("cat", t0.Add(2*time.Hour)), user("dan", time.Time{}), done, user("zed", t0.Add(4*time.Hour)))
	check("added: due order, then account, then username", time.Time{},
		day("l1", "bob", t0.Add(time.Hour)), day("l2", "cat", t0.Add(2*time.Hour)),
		day("l1", "ann", t0.Add(3*time.Hour)), day("l1", "zed", t0.Add(4*time.Hour)), day("l2", "zed", t0.Add(4*time.Hour)))
	check("up to until, inclusive", t0.Add(2*time.Hour),
		day("l1", "bob", t0.Add(time.Hour)), day("l2", "cat", t0.Add(2*time.Hour)))

	put("l1", user("ann", t0.Add(30*time.Minute)))
	check("moved", t0.Add(2*time.Hour), day("l1", "ann", t0.Add(30*time.Minute)),
		day("l1", "bob", t0.Add(time.Hour)), day("l2", "cat", t0.Add(2*time.Hour)))

	put("l1", user("bob", time.Time{}))
	deactivated := user("cat", t0.Add(2*time.Hour))
	deactivated.Active = false
	put("l2", deactivated)
	check("cleared and deactivated", t0.Add(2*time.Hour), day("l1", "ann", t0.Add(30*time.Minute)))

	ran := user("ann", t0.Add(30*time.Minute))
	ran.Offboarding = &policy.OffboardReceipt{DueAt: ran.AccessUntil}
	put("l1", ran)
	check("run (offboarded while active again)", t0.Add(2*time.Hour))

	errBoom := errors.New("boom")
	err := s.Update(ctx, "l2", func(tx policy.Tx) error {
		if err := tx.PutUser(user("cat", t0.Add(time.Minute))); err != nil {
			return err
		}
		return errBoom
	})
	wantErr(t, "a failed Update", err, errBoom)
	check("a failed Update indexes nothing", t0.Add(2*time.Hour))

	// A last day between two milliseconds is rounded up: never early.
	put("l2", user("cat", t0.Add(time.Hour+500*time.Microsecond)))
	check("rounded up to the millisecond", t0.Add(2*time.Hour), day("l2", "cat", t0.Add(time.Hour+time.Millisecond)))
	check("all", time.Time{}, day("l2", "cat", t0.Add(time.Hour+time.Millisecond)),
		day("l1", "zed", t0.Add(4*time.Hour)), day("l2", "zed", t0.Add(4*time.Hour)))
}
