package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Kinds of what an access review lists.
const (
	ReviewUser   = "user"
	ReviewDevice = "device"
	ReviewRule   = "rule"
)

// ReviewItem is one thing an access review asks about: an active user, a
// device that is not inactive, or a rule added by hand.
type ReviewItem struct {
	Kind string `json:"kind"`
	// ID is the username, the device ID, or the rule ID.
	ID   string `json:"id"`
	Name string `json:"name"`
	// LastUsed is the last login, the device's last lease, or the rule's
	// last match; zero if never.
	LastUsed time.Time `json:"last_used,omitzero"`
	// Since is when it was created: what "unused" counts from when it was
	// never used.
	Since time.Time `json:"since"`
	// Stale marks it for removal: unused for stale_after.
	Stale bool `json:"stale"`
}

// AccessReview is an account's access review as the master sees it.
type AccessReview struct {
	Account string `json:"account"`
	// DueAt is when it opened (or opens); Overdue once that has passed and
	// it is not finished.
	DueAt      time.Time `json:"due_at"`
	Overdue    bool      `json:"overdue"`
	ReviewedAt time.Time `json:"reviewed_at,omitzero"`
	StaleAfter string    `json:"stale_after"`
	// StaleDays is StaleAfter in whole days, for the page.
	StaleDays int          `json:"-"`
	Items     []ReviewItem `json:"items"`
}

// ReviewRef names one item of a review.
type ReviewRef struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// ReviewResult is what finishing a review did.
type ReviewResult struct {
	Kept       []ReviewRef `json:"kept"`
	Removed    []ReviewRef `json:"removed"`
	ReviewedAt time.Time   `json:"reviewed_at"`
	NextDueAt  time.Time   `json:"next_due_at"`
}

// reviewItems lists what a review of tx's account asks about at now.
func reviewItems(tx policy.Tx, now time.Time, stale time.Duration) ([]ReviewItem, error) {
	items := []ReviewItem{}
	add := func(it ReviewItem) {
		last := it.LastUsed
		if last.IsZero() {
			last = it.Since
		}
		it.Stale = now.Sub(last) >= stale
		items = append(items, it)
	}
	users, err := tx.Users()
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		if u.Active {
			add(ReviewItem{Kind: ReviewUser, ID: u.Username, Name: u.DisplayName, LastUsed: u.LastLoginAt, Since: u.CreatedAt})
		}
	}
	ds, err := tx.Devices()
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		if d.Status != policy.DeviceInactive {
			add(ReviewItem{Kind: ReviewDevice, ID: d.ID, Name: d.Name + " (" + d.Owner + ")", LastUsed: d.LastSeenAt, Since: d.EnrolledAt})
		}
	}
	rules, err := tx.Rules()
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		if r.Source == policy.SourceManual && live(r, now) {
			name := r.Prefix.String()
			if r.Note != "" {
				name += " (" + r.Note + ")"
			}
			add(ReviewItem{Kind: ReviewRule, ID: strconv.FormatUint(uint64(r.ID), 10), Name: name, LastUsed: r.LastUsed, Since: r.CreatedAt})
		}
	}
	return items, nil
}

// Review returns account's access review: what it lists now, and when it
// is due. Master only.
func (s *Service) Review(ctx context.Context, a Actor, account string) (AccessReview, error) {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return AccessReview{}, err
	}
	var rv AccessReview
	err := s.view(ctx, account, func(tx policy.Tx) error {
		acct, err := tx.Account()
		if err != nil {
			return err
		}
		now := s.now()
		stale := time.Duration(acct.Settings.WithDefaults().StaleAfter)
		rv = AccessReview{Account: account, DueAt: acct.ReviewDue(), Overdue: !now.Before(acct.ReviewDue()),
			ReviewedAt: acct.ReviewedAt, StaleAfter: stale.String(), StaleDays: int(stale / (24 * time.Hour))}
		rv.Items, err = reviewItems(tx, now, stale)
		return err
	})
	return rv, err
}

// maxReviewRefs bounds a review's decisions.
const maxReviewRefs = 10000

func vetReviewRefs(refs []ReviewRef) error {
	if len(refs) > maxReviewRefs {
		return badRequest(CodeInvalidRequest, "at most %d items to remove", maxReviewRefs)
	}
	for _, r := range refs {
		switch r.Kind {
		case ReviewUser, ReviewDevice, ReviewRule:
		default:
			return badRequest(CodeInvalidRequest, "kind must be user, device or rule, not %q", trimName(r.Kind))
		}
		if r.ID == "" || len(r.ID) > 64 {
			return badRequest(CodeInvalidRequest, "an item to remove needs its id")
		}
	}
	return nil
}

// FinishReview ends account's access review: each item in remove is taken
// away (a user offboarded, a device made inactive with its leases revoked,
// a rule deleted), everything else listed is kept, and the next review is
// due review_every from now. One transaction and one audit entry, with
// the decisions. An item to remove that the review does not list (gone
// meanwhile, or never there) fails the call, changing nothing.
func (s *Service) FinishReview(ctx context.Context, a Actor, account string, remove []ReviewRef) (ReviewResult, error) {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return ReviewResult{}, err
	}
	if err := vetReviewRefs(remove); err != nil {
		return ReviewResult{}, err
	}
	var res ReviewResult
	err := s.store.Update(ctx, account, func(tx policy.Tx) error {
		res = ReviewResult{Kept: []ReviewRef{}, Removed: []ReviewRef{}}
		now := s.now().UTC()
		acct, err := tx.Account()
		if err != nil {
			return err
		}
		items, err := reviewItems(tx, now, time.Duration(acct.Settings.WithDefaults().StaleAfter))
		if err != nil {
			return err
		}
		for _, r := range remove {
			if !slices.ContainsFunc(items, func(it ReviewItem) bool { return it.Kind == r.Kind && it.ID == r.ID }) {
				return errorf(http.StatusConflict, CodeConflict, "the review does not list %s %s (any more); reload it", r.Kind, trimName(r.ID))
			}
		}
		for _, it := range items {
			ref := ReviewRef{Kind: it.Kind, ID: it.ID}
			if !slices.Contains(remove, ref) {
				res.Kept = append(res.Kept, ref)
				continue
			}
			if err := s.removeReviewed(tx, a, account, ref, now); err != nil {
				return err
			}
			res.Removed = append(res.Removed, ref)
		}
		acct.ReviewedAt = now
		if err := tx.PutAccount(acct); err != nil {
			return err
		}
		res.ReviewedAt, res.NextDueAt = now, acct.ReviewDue()
		return tx.Audit(s.audit(a, account, "review.finish", "account/"+account, nil, res))
	})
	if err != nil {
		return ReviewResult{}, err
	}
	if _, seen := s.overdueSeen.Load(account); seen {
		s.reviewOverdue.WithLabelValues(account).Set(0)
	}
	return res, nil
}

// removeReviewed takes one reviewed item away inside the transaction.
func (s *Service) removeReviewed(tx policy.Tx, a Actor, account string, ref ReviewRef, now time.Time) error {
	switch ref.Kind {
	case ReviewUser:
		u, err := tx.User(ref.ID)
		if err != nil {
			return err
		}
		_, err = s.offboardIn(tx, a, account, u, now, time.Time{})
		return err
	case ReviewDevice:
		d, err := tx.Device(ref.ID)
		if err != nil {
			return err
		}
		creator := "device/" + d.ID
		if _, _, err := s.revokeRules(tx, account, now, func(r policy.Rule) bool {
			return r.Source == policy.SourceDevice && r.CreatedBy == creator
		}); err != nil {
			return err
		}
		d.Status = policy.DeviceInactive
		return tx.PutDevice(d)
	case ReviewRule:
		id, err := strconv.ParseUint(ref.ID, 10, 32)
		if err != nil {
			return badRequest(CodeInvalidRequest, "a rule id is a number")
		}
		if err := tx.DeleteRule(policy.RuleID(id)); err != nil {
			return fmt.Errorf("delete rule %d: %w", id, err)
		}
		return nil
	}
	return errors.New("unknown review kind " + ref.Kind)
}

// newReviewOverdue is gatekeeper_access_review_overdue{account}.
func newReviewOverdue() *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gatekeeper_access_review_overdue",
		Help: "1 while an account's access review is due and not finished, else 0; updated at each review scan and when a review is finished.",
	}, []string{"account"})
}

// noteReview sets the overdue gauge of acct at now and, the first time a
// review is overdue, writes the review.overdue audit entry that notifies
// the masters (once in a fleet: the transaction checks it was not yet).
func (s *Service) noteReview(ctx context.Context, acct policy.Account, now time.Time) error {
	due := acct.ReviewDue()
	if now.Before(due) {
		if _, seen := s.overdueSeen.Load(acct.ID); seen {
			s.reviewOverdue.WithLabelValues(acct.ID).Set(0)
		}
		return nil
	}
	s.markOverdue(acct.ID)
	if acct.ReviewNoted() {
		return nil
	}
	err := s.store.Update(ctx, acct.ID, func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		due := a.ReviewDue()
		if now.Before(due) || a.ReviewNoted() {
			return errNoChange
		}
		a.ReviewOverdueFor = due
		if err := tx.PutAccount(a); err != nil {
			return err
		}
		return tx.Audit(s.audit(scheduleActor, acct.ID, policy.AuditReviewOverdue, "account/"+acct.ID, nil,
			map[string]time.Time{"due_at": due}))
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return fmt.Errorf("note the overdue review of %s: %w", acct.ID, err)
	}
	return nil
}

// markOverdue sets the overdue gauge of account to 1, making its series.
func (s *Service) markOverdue(account string) {
	s.overdueSeen.Store(account, struct{}{})
	s.reviewOverdue.WithLabelValues(account).Set(1)
}

type reviewBody struct {
	Remove []ReviewRef `json:"remove"`
}

func (s *Server) review(w http.ResponseWriter, r *http.Request, c *call) error {
	rv, err := s.svc.Review(r.Context(), c.actor, r.PathValue("acct"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rv)
	return nil
}

func (s *Server) finishReview(w http.ResponseWriter, r *http.Request, c *call) error {
	var b reviewBody
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	res, err := s.svc.FinishReview(r.Context(), c.actor, r.PathValue("acct"), b.Remove)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
