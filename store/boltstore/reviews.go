package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// bReviews is the root bucket indexing the access reviews
// (policy.ReviewsDue): key = dueKey(ReviewDue, account), value "n" when
// the review is noted (policy.Account.ReviewNoted), else empty. Every
// account is in it once; the transactions that write an account keep it.
// As with the last days, a file or a backup from before it has no such
// bucket, and Open or Restore builds it, in the transaction that creates
// it.
var bReviews = []byte("reviews")

var noted = []byte("n")

// indexAccount moves a's entry in the index from old's (nil: none).
func indexAccount(tx *bbolt.Tx, old *policy.Account, a policy.Account) error {
	b := tx.Bucket(bReviews)
	if old != nil {
		if err := b.Delete(dueKey(old.ReviewDue(), old.ID)); err != nil {
			return err
		}
	}
	var v []byte
	if a.ReviewNoted() {
		v = noted
	}
	return b.Put(dueKey(a.ReviewDue(), a.ID), v)
}

// buildReviews makes the index from every account when the file has none.
func buildReviews(tx *bbolt.Tx) error {
	if tx.Bucket(bReviews) != nil {
		return nil
	}
	if _, err := tx.CreateBucket(bReviews); err != nil {
		return err
	}
	return tx.Bucket(bAccounts).ForEach(func(id, v []byte) error {
		var a policy.Account
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("index reviews: decode account %s: %w", id, err)
		}
		return indexAccount(tx, nil, a)
	})
}

// ReviewsDue implements policy.ReviewsDue.
func (s *Store) ReviewsDue(ctx context.Context, until time.Time) ([]policy.ReviewDue, error) {
	var out []policy.ReviewDue
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bReviews)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			due, account, err := splitDueKey(k)
			if err != nil {
				return fmt.Errorf("read reviews: %w", err)
			}
			if !until.IsZero() && due.After(until) {
				break
			}
			out = append(out, policy.ReviewDue{Account: string(account), Due: due, Noted: len(v) > 0})
		}
		return nil
	})
	return out, unavailable("read reviews", err)
}
