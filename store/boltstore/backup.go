package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/backup"
)

// Backup record tags: a bucket (fields: sequence, then its path) and a key
// (fields: key, value, then its bucket's path). Every bucket and key of the
// file is carried, whatever it holds, so that data a later version adds
// is backed up without a change here.
const (
	tagBucket = 'b'
	tagKey    = 'k'
)

var _ backup.Exporter = (*Store)(nil)

// Export implements backup.Exporter: every bucket and key of the file,
// read in one bbolt read transaction, which sees one committed state while
// writers go on. Counts are per bucket name (accounts, rules, users,
// sessions, audit, …).
func (s *Store) Export(ctx context.Context, w backup.RecordWriter) (backup.Manifest, error) {
	m := backup.Manifest{Backend: "bolt", Counts: map[string]int64{}, Created: s.opts.Now().UTC()}
	err := s.db.View(func(tx *bbolt.Tx) error {
		m.Generation = string(tx.Bucket(bMeta).Get(kGen))
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			return exportBucket(ctx, w, m.Counts, [][]byte{name}, b)
		})
	})
	if err != nil {
		return backup.Manifest{}, unavailable("export", err)
	}
	return m, nil
}

func exportBucket(ctx context.Context, w backup.RecordWriter, counts map[string]int64, path [][]byte, b *bbolt.Bucket) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	seq := binary.AppendUvarint(nil, b.Sequence())
	if err := w.Write(backup.Record{Tag: tagBucket, Fields: append([][]byte{seq}, path...)}); err != nil {
		return err
	}
	kind := string(path[len(path)-1])
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			return exportBucket(ctx, w, counts, append(path[:len(path):len(path)], k), b.Bucket(k))
		}
		counts[kind]++
		return w.Write(backup.Record{Tag: tagKey, Fields: append([][]byte{k, v}, path...)})
	})
}

// Restore writes a backup into the file in one transaction. The file must
// hold no account; one holding another generation than the backup is
// refused unless force. Everything the file held before is replaced, but
// for the rules that expired since (dropped says how many); expired
// sessions are skipped on read and purged on write, as ever.
//
// As with Redis, the data goes in under a provisional generation
// (backup.Provisional), then runs, and the backup's generation is set in
// a second transaction: a serve started on a file whose restore stopped
// half-way refuses it against its snapshot, and the same restore may run
// again over it.
func (s *Store) Restore(ctx context.Context, b *backup.Backup, force bool, then func(ctx context.Context, gen string) error) (dropped int, err error) {
	if b.Manifest.Backend != "bolt" {
		return 0, fmt.Errorf("restore: a %s backup does not restore into the embedded store", b.Manifest.Backend)
	}
	provisional := backup.Provisional(b.Manifest.Generation)
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	var accounts []string
	err = s.db.Update(func(tx *bbolt.Tx) error {
		gen := string(tx.Bucket(bMeta).Get(kGen))
		resume := gen == provisional
		if k, _ := tx.Bucket(bAccounts).Cursor().First(); k != nil && !resume {
			return fmt.Errorf("%w (account %s and maybe more)", backup.ErrPopulated, k)
		}
		if gen != "" && gen != b.Manifest.Generation && !resume && !force {
			return fmt.Errorf("%w: the store's is %q, the backup's %q (-force to restore over an empty store anyway)",
				backup.ErrOtherGeneration, gen, b.Manifest.Generation)
		}
		var names [][]byte
		tx.ForEach(func(name []byte, _ *bbolt.Bucket) error { names = append(names, name); return nil })
		for _, n := range names {
			if err := tx.DeleteBucket(n); err != nil {
				return err
			}
		}
		now := s.opts.Now()
		for i, r := range b.Records {
			if expiredRule(r, now) {
				dropped++
				continue
			}
			if err := restoreRecord(tx, r); err != nil {
				return fmt.Errorf("record %d: %w", i+1, err)
			}
		}
		for _, n := range [][]byte{bMeta, bAccounts, bAcct} {
			if tx.Bucket(n) == nil {
				return fmt.Errorf("the backup has no %s bucket", n)
			}
		}
		if err := buildLastDays(tx); err != nil { // a backup from before the index
			return err
		}
		if err := buildReviews(tx); err != nil { // a backup from before this one
			return err
		}
		if string(tx.Bucket(bMeta).Get(kGen)) != b.Manifest.Generation {
			return errors.New("the backup's data and manifest name different generations")
		}
		if err := tx.Bucket(bMeta).Put(kGen, []byte(provisional)); err != nil {
			return err
		}
		return tx.Bucket(bAccounts).ForEach(func(k, _ []byte) error {
			accounts = append(accounts, string(k))
			return nil
		})
	})
	if err == nil {
		for _, id := range accounts {
			s.publish(id) // under writeMu: feed order is commit order
		}
	}
	s.unlock()
	if err != nil {
		if errors.Is(err, backup.ErrPopulated) || errors.Is(err, backup.ErrOtherGeneration) {
			return 0, fmt.Errorf("restore: %w", err)
		}
		return 0, unavailable("restore", err)
	}
	if then != nil {
		if err := then(ctx, provisional); err != nil {
			return dropped, fmt.Errorf("restore: the data is back under the provisional generation %q, which serve refuses (run the same restore again to finish), but: %w", provisional, err)
		}
	}
	if err := s.lock(ctx); err != nil {
		return dropped, err
	}
	defer s.unlock()
	err = s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bMeta).Put(kGen, []byte(b.Manifest.Generation)) })
	return dropped, unavailable("restore: set the generation", err)
}

// expiredRule reports whether r is a rule (acct/ID/rules) that expired:
// the grants and leases that ended since the backup are left out. Rule
// IDs are not reused for it (the bucket's sequence is kept).
func expiredRule(r backup.Record, now time.Time) bool {
	if r.Tag != tagKey || len(r.Fields) != 5 || !bytes.Equal(r.Fields[2], bAcct) || !bytes.Equal(r.Fields[4], bRules) {
		return false
	}
	var rule policy.Rule
	return json.Unmarshal(r.Fields[1], &rule) == nil && rule.Expired(now)
}

func restoreRecord(tx *bbolt.Tx, r backup.Record) error {
	switch r.Tag {
	case tagBucket:
		if len(r.Fields) < 2 {
			return errors.New("bucket record without a path")
		}
		seq, n := binary.Uvarint(r.Fields[0])
		if n <= 0 || n != len(r.Fields[0]) {
			return errors.New("bucket record with a bad sequence")
		}
		b, err := bucketAt(tx, r.Fields[1:], true)
		if err != nil {
			return err
		}
		return b.SetSequence(seq)
	case tagKey:
		if len(r.Fields) < 3 {
			return errors.New("key record without a path")
		}
		b, err := bucketAt(tx, r.Fields[2:], false)
		if err != nil {
			return err
		}
		return b.Put(r.Fields[0], r.Fields[1])
	}
	return fmt.Errorf("unknown record tag %q", r.Tag)
}

// bucketAt finds the bucket at path; with create, it creates the last one.
func bucketAt(tx *bbolt.Tx, path [][]byte, create bool) (*bbolt.Bucket, error) {
	last := len(path) - 1
	var b *bbolt.Bucket
	for i, name := range path {
		var next *bbolt.Bucket
		var err error
		switch {
		case i == last && create && b == nil:
			next, err = tx.CreateBucketIfNotExists(name)
		case i == last && create:
			next, err = b.CreateBucketIfNotExists(name)
		case b == nil:
			next = tx.Bucket(name)
		default:
			next = b.Bucket(name)
		}
		if err != nil {
			return nil, fmt.Errorf("bucket %q: %w", name, err)
		}
		if next == nil {
			return nil, fmt.Errorf("bucket %q comes before its parent", name)
		}
		b = next
	}
	return b, nil
}
