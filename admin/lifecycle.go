package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// offboardRecord is the audit entry's after of an offboarding: the counts
// the API answers, and the receipt.
type offboardRecord struct {
	UserChange
	Receipt policy.OffboardReceipt `json:"receipt"`
}

// offboardIn offboards u inside a write transaction at now, by a: inactive,
// no desktop access, sessions ended, grants and leases revoked, devices
// inactive; the receipt is kept on the user's record and in the one audit
// entry. due is the access_until a scheduled run is for (zero by hand).
func (s *Service) offboardIn(tx policy.Tx, a Actor, account string, u policy.User, now, due time.Time) (UserChange, error) {
	var res UserChange
	rec := policy.OffboardReceipt{Account: account, Username: u.Username, DisplayName: u.DisplayName,
		At: now, By: a.name(account), Role: a.Role, DueAt: due,
		Grants: []policy.ReceiptRule{}, Leases: []policy.ReceiptRule{}, Devices: []policy.ReceiptThing{}}
	if !due.IsZero() && now.After(due) {
		rec.LateSeconds = now.Sub(due).Seconds()
	}
	before := userView(u)
	u.Active, u.DesktopAccess, u.WebAccess = false, false, false
	var err error
	if res.SessionsEnded, err = tx.DeleteSessions(u.Username); err != nil {
		return res, err
	}
	if err := s.cutOff(tx, account, u.Username, now, &res, &rec); err != nil {
		return res, err
	}
	rec.SessionsEnded, rec.ConnectionsClosed = res.SessionsEnded, res.ConnectionsClosed
	u.Offboarding = &rec
	if err := tx.PutUser(u); err != nil {
		return res, err
	}
	res.User = userView(u)
	return res, tx.Audit(s.audit(a, account, "user.offboard", "user/"+u.Username, before, offboardRecord{res, rec}))
}

// errNoReceipt answers for a user never offboarded.
var errNoReceipt = &Error{Status: http.StatusNotFound, Code: CodeNotFound, Msg: "this user has not been offboarded"}

// OffboardingReceipt returns the receipt of username's last offboarding:
// to the master and to a manager.
func (s *Service) OffboardingReceipt(ctx context.Context, a Actor, account, username string) (policy.OffboardReceipt, error) {
	if _, _, err := s.asStaffManager(ctx, a, account); err != nil {
		return policy.OffboardReceipt{}, err
	}
	username = normalizeUsername(username)
	var rec *policy.OffboardReceipt
	err := s.view(ctx, account, func(tx policy.Tx) error {
		u, err := tx.User(username)
		if errors.Is(err, policy.ErrNotFound) {
			return notFound("user", err)
		}
		rec = u.Offboarding
		return err
	})
	if err != nil {
		return policy.OffboardReceipt{}, err
	}
	if rec == nil {
		return policy.OffboardReceipt{}, errNoReceipt
	}
	return *rec, nil
}

func (s *Server) offboardingReceipt(w http.ResponseWriter, r *http.Request, c *call) error {
	rec, err := s.svc.OffboardingReceipt(r.Context(), c.actor, r.PathValue("acct"), r.PathValue("username"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rec)
	return nil
}

// CodeInvalidAccessUntil answers a last day that is not an RFC 3339 time
// with its zone, or is in the past.
const CodeInvalidAccessUntil = "invalid_access_until"

// parseAccessUntil reads a last day sent to the API: RFC 3339 with its
// zone ("2027-03-31T18:00:00+02:00"); "" is none.
func parseAccessUntil(v string) (time.Time, error) { return ParseAccessUntil(v, nil) }

// ParseAccessUntil reads a last day: RFC 3339 with its zone
// ("2027-03-31T18:00:00+02:00"), or, when loc is not nil, a date and time
// without one as a form's datetime-local field writes it
// ("2027-03-31T18:00", seconds optional), read in loc (the account's
// time_zone). "" is none. A local time that a clock change skips is
// moved forward by the gap, one it repeats is its first occurrence (as
// time.Date does).
func ParseAccessUntil(v string, loc *time.Location) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if len(v) > 64 {
		return time.Time{}, badRequest(CodeInvalidAccessUntil, "access_until is not a time")
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil && loc != nil {
		for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05"} {
			if t, err = time.ParseInLocation(layout, v, loc); err == nil {
				break
			}
		}
		if err != nil {
			return time.Time{}, badRequest(CodeInvalidAccessUntil,
				"access_until must be a date and time like 2027-03-31T18:00 (in %s), or one with its zone", loc)
		}
	}
	if err != nil {
		return time.Time{}, badRequest(CodeInvalidAccessUntil,
			"access_until must be a time with its zone, like 2027-03-31T18:00:00+02:00")
	}
	if t.Year() < 2000 || t.Year() > 9999 {
		return time.Time{}, badRequest(CodeInvalidAccessUntil, "access_until is out of range")
	}
	return t, nil
}

// lastDayGrace is how far in the past a new last day may be: a clock a
// little behind is not a mistake, yesterday is.
const lastDayGrace = time.Minute

func (s *Service) vetAccessUntil(t time.Time) error {
	if !t.IsZero() && t.Before(s.now().Add(-lastDayGrace)) {
		return badRequest(CodeInvalidAccessUntil, "access_until is in the past; to take someone out now, offboard them")
	}
	return nil
}

// scheduleActor is who runs a last day.
var scheduleActor = Actor{Role: policy.RoleSchedule}

// lastDayDue reports whether u's last day must run at now: set, reached,
// the user still active, and not run for this last day already
// (policy.User.LastDayPending). That is checked again inside the
// transaction that runs it, so that of the instances that reach it at
// once, one offboards and the others find nothing to do: once in a fleet,
// by the store's transactions.
func lastDayDue(u policy.User, now time.Time) bool {
	return u.LastDayPending() && !now.Before(u.AccessUntil)
}

func (s *Service) pokeLastDays() {
	select {
	case s.lastDayPoke <- struct{}{}:
	default:
	}
}

// RunLastDays offboards every user whose last day has come, at that
// instant, until ctx ends. It reads the store's index of last days
// (policy.LastDays) at start, every LastDayScan, and when a last day is set
// through this Service, and sleeps until the next last day it knows. A
// store that fails delays a last day to the next try, never skips it; the
// receipt says how late it ran. At start and every ReviewScan it also
// notes the accounts whose access review is overdue (reviewPass).
func (s *Service) RunLastDays(ctx context.Context) error {
	var reviewed time.Time // the monotonic clock: s.now may be a test's
	for {
		if reviewed.IsZero() || time.Since(reviewed) >= s.reviewScan {
			if err := s.reviewPass(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("access reviews: scan failed; trying again", zap.Error(err))
			}
			reviewed = time.Now()
		}
		next, err := s.lastDayPass(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("last days: scan failed; trying again", zap.Error(err))
		}
		wait := s.lastDayScan
		if err != nil {
			wait = min(wait, time.Second)
		}
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(s.now()), 0))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.lastDayPoke:
			t.Stop()
		case <-t.C:
		}
	}
}

// reviewPass notes the accounts whose access review is overdue
// (noteReview). It reads the store's index of reviews up to now, so a
// pass costs in proportion to the reviews due, not to the accounts; it
// reads an account only when its overdue review is not noted yet (the
// index says so), to write that once. The accounts this instance saw
// overdue that the index no longer has due (reviewed since, here or on
// another instance) read 0 again.
func (s *Service) reviewPass(ctx context.Context) error {
	now := s.now()
	due, err := s.store.ReviewsDue(ctx, now)
	if err != nil {
		return fmt.Errorf("list reviews due: %w", err)
	}
	overdue := make(map[string]bool, len(due))
	var errs []error
	for _, d := range due {
		overdue[d.Account] = true
		if d.Noted {
			s.markOverdue(d.Account)
			continue
		}
		acct, err := s.store.Account(ctx, d.Account)
		if err == nil {
			err = s.noteReview(ctx, acct, now)
		}
		if err != nil && !errors.Is(err, policy.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	s.overdueSeen.Range(func(id, _ any) bool {
		if !overdue[id.(string)] {
			s.reviewOverdue.WithLabelValues(id.(string)).Set(0)
		}
		return true
	})
	return errors.Join(errs...)
}

// lastDayPass runs the last days that are due and returns the earliest
// one still to come (zero if none). The last days come from the store's
// index, so a pass costs in proportion to them, not to the accounts.
func (s *Service) lastDayPass(ctx context.Context) (time.Time, error) {
	var errs []error
	days, err := s.store.LastDays(ctx, time.Time{})
	if err != nil {
		return time.Time{}, errors.Join(append(errs, fmt.Errorf("list last days: %w", err))...)
	}
	now := s.now()
	var next time.Time
	for _, d := range days {
		if d.Due.After(now) {
			next = d.Due // the earliest to come: days are in due order
			break
		}
		if err := s.runLastDay(ctx, d.Account, d.Username); err != nil {
			errs = append(errs, err)
		}
	}
	return next, errors.Join(errs...)
}

// runLastDay offboards username of account if their last day is due.
// Another instance running the same last day at once is a conflict the
// store retries (redisstore's watchBroken); the retry finds the work done.
func (s *Service) runLastDay(ctx context.Context, account, username string) error {
	var res UserChange
	var due time.Time
	ran := false
	err := s.store.Update(ctx, account, func(tx policy.Tx) error {
		ran = false
		u, err := tx.User(username)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		if !lastDayDue(u, now) {
			return errNoChange
		}
		due = u.AccessUntil
		res, err = s.offboardIn(tx, scheduleActor, account, u, now, due)
		ran = err == nil
		return err
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("last day of %s in %s: %w", username, account, err)
	}
	if ran {
		s.log.Info("last day: user offboarded", zap.String("account", account), zap.String("username", username),
			zap.Time("access_until", due), zap.Int("sessions_ended", res.SessionsEnded),
			zap.Int("grants_revoked", res.GrantsRevoked), zap.Int("leases_revoked", res.LeasesRevoked))
	}
	return nil
}

// RunLastDays runs the Service's last days (see Service.RunLastDays).
func (s *Server) RunLastDays(ctx context.Context) error { return s.svc.RunLastDays(ctx) }
