package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"go.etcd.io/bbolt"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Outbox layout: each account's bucket holds, made on first use, an outbox
// bucket (audit sequence -> outbox entry JSON, so key order is commit
// order) and a notify-status bucket (destination key -> last attempt
// JSON); the root leases bucket maps a lease name to its holder and end.
var (
	bOutbox       = []byte("outbox")
	bNotifyStatus = []byte("notify-status")
	bLeases       = []byte("leases")
)

// outbox writes the outbox entry of audit entry e, if it is notified.
func (t *txn) outbox(e policy.AuditEntry) error {
	now, err := t.Account()
	if err != nil {
		return err
	}
	before := now.Notifications
	if t.notifyBefore != nil {
		before = *t.notifyBefore
	}
	o, ok := policy.NewOutboxEntry(e, before, now.Notifications)
	if !ok {
		return nil
	}
	n, err := strconv.ParseUint(e.ID, 10, 64)
	if err != nil {
		return fmt.Errorf("outbox entry of audit entry %q: %w", e.ID, err)
	}
	ob, err := t.b.CreateBucketIfNotExists(bOutbox)
	if err != nil {
		return err
	}
	return putJSON(ob, u64(n), o)
}

// OutboxAccounts implements policy.Outbox.
func (s *Store) OutboxAccounts(ctx context.Context) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bAcct).ForEachBucket(func(k []byte) error {
			if ob := tx.Bucket(bAcct).Bucket(k).Bucket(bOutbox); ob != nil {
				if k2, _ := ob.Cursor().First(); k2 != nil {
					out = append(out, string(k))
				}
			}
			return nil
		})
	})
	return out, unavailable("list outboxes", err)
}

// OutboxEntries implements policy.Outbox.
func (s *Store) OutboxEntries(ctx context.Context, account string) ([]policy.OutboxEntry, error) {
	var out []policy.OutboxEntry
	err := s.db.View(func(tx *bbolt.Tx) error {
		ab := tx.Bucket(bAcct).Bucket([]byte(account))
		if ab == nil {
			return fmt.Errorf("account %s: %w", account, policy.ErrNotFound)
		}
		var err error
		out, err = listJSON[policy.OutboxEntry](ab.Bucket(bOutbox), "outbox entry")
		return err
	})
	if err != nil {
		return nil, unavailable("read outbox of "+account, err)
	}
	return out, nil
}

// SaveOutbox implements policy.Outbox.
func (s *Store) SaveOutbox(ctx context.Context, e policy.OutboxEntry) error {
	n, err := strconv.ParseUint(e.ID, 10, 64)
	if err != nil {
		return fmt.Errorf("save outbox entry %q: not an ID of this store", e.ID)
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.unlock()
	err = s.db.Update(func(tx *bbolt.Tx) error {
		ab := tx.Bucket(bAcct).Bucket([]byte(e.Account))
		if ab == nil {
			return nil // the account went away meanwhile
		}
		ob := ab.Bucket(bOutbox)
		if ob == nil || ob.Get(u64(n)) == nil {
			return nil
		}
		if e.Done() {
			if err := ob.Delete(u64(n)); err != nil {
				return err
			}
		} else if err := putJSON(ob, u64(n), e); err != nil {
			return err
		}
		sb, err := ab.CreateBucketIfNotExists(bNotifyStatus)
		if err != nil {
			return err
		}
		for _, d := range e.Deliveries {
			if a, ok := lastAttempt(e, d); ok {
				if err := putJSON(sb, []byte(d.Destination.Key()), a); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return unavailable("save outbox entry of "+e.Account, err)
}

// lastAttempt is d's last attempt, naming the entry, if it made one.
func lastAttempt(e policy.OutboxEntry, d policy.Delivery) (policy.Attempt, bool) {
	if len(d.Attempts) == 0 {
		return policy.Attempt{}, false
	}
	a := d.Attempts[len(d.Attempts)-1]
	a.Entry, a.Event = e.ID, e.Event
	return a, true
}

// DeliveryStatus implements policy.Outbox.
func (s *Store) DeliveryStatus(ctx context.Context, account string) (map[string]policy.Attempt, error) {
	out := map[string]policy.Attempt{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		ab := tx.Bucket(bAcct).Bucket([]byte(account))
		if ab == nil {
			return fmt.Errorf("account %s: %w", account, policy.ErrNotFound)
		}
		sb := ab.Bucket(bNotifyStatus)
		if sb == nil {
			return nil
		}
		return sb.ForEach(func(k, v []byte) error {
			var a policy.Attempt
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decode delivery status: %w", err)
			}
			out[string(k)] = a
			return nil
		})
	})
	if err != nil {
		return nil, unavailable("read delivery status of "+account, err)
	}
	return out, nil
}

type leaseRecord struct {
	Holder string    `json:"holder"`
	Until  time.Time `json:"until"`
}

// ClaimLease implements policy.Outbox. One process has the file open, so
// the lease matters only across restarts; it is kept alike all the same.
func (s *Store) ClaimLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := s.lock(ctx); err != nil {
		return false, err
	}
	defer s.unlock()
	var ok bool
	err := s.db.Update(func(tx *bbolt.Tx) error {
		lb, err := tx.CreateBucketIfNotExists(bLeases)
		if err != nil {
			return err
		}
		now := s.opts.Now()
		var rec leaseRecord
		if v := lb.Get([]byte(name)); v != nil {
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode lease %s: %w", name, err)
			}
		}
		if rec.Holder != holder && now.Before(rec.Until) {
			return nil
		}
		ok = true
		return putJSON(lb, []byte(name), leaseRecord{Holder: holder, Until: now.Add(ttl)})
	})
	return ok, unavailable("claim lease "+name, err)
}
