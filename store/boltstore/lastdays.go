package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// bLastDays is the root bucket indexing the pending last days
// (policy.LastDays): key = due (unix ms, 8 bytes big-endian) + account +
// "\x00" + username, value empty, so that a cursor reads them in due
// order. PutUser keeps it in the transaction that writes the user.
//
// A file written before the index existed has no such bucket: Open builds
// it then, once, from every account's users, in the transaction that
// creates it (and so does Restore for a backup taken before it); its
// existence is the marker that it is complete.
var bLastDays = []byte("last-days")

func lastDayKey(account, username string, due time.Time) []byte {
	return dueKey(due, account, "\x00", username)
}

// dueKey is a key of an index in due order (the last days, the reviews):
// due rounded up to the millisecond (policy.LastDayDue) as 8 bytes of
// unix ms, big-endian, then the parts of a name.
func dueKey(due time.Time, name ...string) []byte {
	n := 8
	for _, p := range name {
		n += len(p)
	}
	k := binary.BigEndian.AppendUint64(make([]byte, 0, n), uint64(max(policy.LastDayDue(due).UnixMilli(), 0)))
	for _, p := range name {
		k = append(k, p...)
	}
	return k
}

// splitDueKey reads a dueKey: the due time and the name.
func splitDueKey(k []byte) (time.Time, []byte, error) {
	if len(k) < 9 {
		return time.Time{}, nil, fmt.Errorf("a malformed key %q", k)
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(k))).UTC(), k[8:], nil
}

// indexUser moves u's entry in the index from old's (nil: none).
func indexUser(tx *bbolt.Tx, account string, old *policy.User, u policy.User) error {
	b := tx.Bucket(bLastDays)
	if old != nil && old.LastDayPending() {
		if err := b.Delete(lastDayKey(account, old.Username, old.AccessUntil)); err != nil {
			return err
		}
	}
	if u.LastDayPending() {
		return b.Put(lastDayKey(account, u.Username, u.AccessUntil), nil)
	}
	return nil
}

// buildLastDays makes the index from every account's users when the file
// has none.
func buildLastDays(tx *bbolt.Tx) error {
	if tx.Bucket(bLastDays) != nil {
		return nil
	}
	if _, err := tx.CreateBucket(bLastDays); err != nil {
		return err
	}
	return tx.Bucket(bAcct).ForEachBucket(func(id []byte) error {
		ub := tx.Bucket(bAcct).Bucket(id).Bucket(bUsers)
		if ub == nil {
			return nil
		}
		return ub.ForEach(func(name, v []byte) error {
			var u policy.User
			if err := json.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("index last days: decode user %s of %s: %w", name, id, err)
			}
			return indexUser(tx, string(id), nil, u)
		})
	})
}

// LastDays implements policy.LastDays.
func (s *Store) LastDays(ctx context.Context, until time.Time) ([]policy.LastDay, error) {
	var out []policy.LastDay
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bLastDays)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			due, name, err := splitDueKey(k)
			if err != nil {
				return fmt.Errorf("read last days: %w", err)
			}
			if !until.IsZero() && due.After(until) {
				break
			}
			account, username, ok := bytes.Cut(name, []byte{0})
			if !ok {
				return fmt.Errorf("read last days: a malformed key %q", k)
			}
			out = append(out, policy.LastDay{Account: string(account), Username: string(username), Due: due})
		}
		return nil
	})
	return out, unavailable("read last days", err)
}
