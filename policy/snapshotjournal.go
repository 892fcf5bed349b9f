package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"time"
)

// The snapshot journal keeps the snapshot file within a fraction of a
// second of the table while whole writes stay rare. A whole write is the
// whole policy whatever changed (at a million rules, tens of
// milliseconds of CPU and 24 MB to disk); under steady churn, writing it
// every few seconds was a good part of what a change cost an instance
// (docs/benchmarks.md). The journal, PATH.journal beside the snapshot
// file PATH, holds the accounts changed since that file was written:
//
//	magic "GKJRNL1\n", then the SHA-256 of the snapshot it follows (the
//	  one in that file's header)
//	records, each: uvarint payload length, CRC-32C of the payload
//	  (4 bytes, big-endian), payload
//	payload: varint Unix nanoseconds; the cursor (uvarint length,
//	  bytes), read before the accounts as in the snapshot; the changed
//	  accounts' records as in the snapshot (kinds 1 and 2), or kind 3
//	  and the ID of an account that is gone; byte 0
//
// A reader applies the records in order over the snapshot and stops at
// the first that is short or does not check: a write torn by a crash
// loses only the last changes, and what it applies is the table as it
// was after some record, never a mix. A journal that follows another
// snapshot file (one left by a crash between the two files' writes) is
// ignored.
const (
	journalMagic  = "GKJRNL1\n"
	journalSuffix = ".journal"
	journalHead   = len(journalMagic) + sha256.Size
)

var journalCRC = crc32.MakeTable(crc32.Castagnoli)

// snapshotBase identifies a snapshot file a journal may follow.
type snapshotBase struct {
	sum  [sha256.Size]byte
	size int64
}

// snapshotFiles writes the snapshot file and its journal. It is used by
// one goroutine (Engine.runSnapshots).
type snapshotFiles struct {
	path        string
	records     recordCache // the accounts' records as last written
	base        snapshotBase
	journal     *os.File // nil: the next write must be whole
	journalSize int64
}

// writeAll writes the whole table and starts an empty journal after it.
func (w *snapshotFiles) writeAll(t *Table, now time.Time) error {
	w.closeJournal()
	b, err := writeSnapshotFile(w.path, t, now, &w.records)
	if err != nil {
		return err
	}
	w.base = b
	f, err := os.OpenFile(w.path+journalSuffix, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create snapshot journal: %w", err)
	}
	// Not synced here: a journal whose header is lost is ignored, and the
	// first record's sync makes both durable.
	if _, err := f.Write(append([]byte(journalMagic), b.sum[:]...)); err != nil {
		f.Close()
		return fmt.Errorf("write snapshot journal: %w", err)
	}
	w.journal, w.journalSize = f, int64(journalHead)
	return nil
}

// journalFull reports whether the journal has grown enough that a whole
// write is due: half the snapshot's size, so that a reader never has
// more than half as much again to apply, and the whole writes cost at
// most as much as the journal they replace.
func (w *snapshotFiles) journalFull() bool {
	return w.journalSize-int64(journalHead) > max(w.base.size/2, 1<<20)
}

// appendChanges appends one record with the current table of each of
// ids (distinct), and syncs it. After a failure the journal is closed
// and the next write must be whole.
func (w *snapshotFiles) appendChanges(t *Table, ids []string, now time.Time) error {
	if w.journal == nil {
		return errors.New("no snapshot journal open")
	}
	rec := appendJournalRecord(nil, t, ids, now, &w.records)
	_, err := w.journal.Write(rec)
	if err == nil {
		err = w.journal.Sync()
	}
	if err != nil {
		w.closeJournal()
		return fmt.Errorf("append to snapshot journal: %w", err)
	}
	w.journalSize += int64(len(rec))
	return nil
}

func (w *snapshotFiles) closeJournal() {
	if w.journal != nil {
		w.journal.Close()
		w.journal = nil
	}
}

// appendJournalRecord appends the record of ids as t holds them now,
// keeping their records in cache.
func appendJournalRecord(b []byte, t *Table, ids []string, now time.Time, cache *recordCache) []byte {
	var cursor string
	if meta := t.meta.Load(); meta != nil {
		cursor = meta.cursor // before the accounts: see appendSnapshot
	}
	if *cache == nil {
		*cache = make(recordCache)
	}
	payload := binary.AppendVarint(nil, now.UnixNano())
	payload = appendString(payload, cursor)
	for _, id := range ids {
		if at := t.account(id); at != nil {
			rec := cache.record(id, at)
			(*cache)[id] = cachedRecord{at, rec}
			payload = append(payload, rec...)
		} else {
			delete(*cache, id)
			payload = appendString(append(payload, recordGone), id)
		}
	}
	payload = append(payload, recordEnd)
	b = binary.AppendUvarint(b, uint64(len(payload)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(payload, journalCRC))
	return append(b, payload...)
}

// readJournal applies the journal at path over d, the snapshot whose
// identity is base, and returns the time of the last record applied
// (written when none was). A journal that is missing, unreadable or
// follows another snapshot leaves d as it is.
func readJournal(path string, base [sha256.Size]byte, d *Data, written time.Time) time.Time {
	f, err := os.Open(path)
	if err != nil {
		return written
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSnapshot))
	if err != nil {
		return written
	}
	return applyJournal(b, base, d, written)
}

// applyJournal applies the journal b over d (see readJournal).
func applyJournal(b []byte, base [sha256.Size]byte, d *Data, written time.Time) time.Time {
	if len(b) < journalHead || string(b[:len(journalMagic)]) != journalMagic ||
		!bytes.Equal(b[len(journalMagic):journalHead], base[:]) {
		return written
	}
	b = b[journalHead:]
	index := make(map[string]int, len(d.Accounts))
	for i, ap := range d.Accounts {
		index[ap.Account.ID] = i
	}
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) || uint64(len(b)-k)-n < 4 {
			break // torn
		}
		sum := binary.BigEndian.Uint32(b[k:])
		payload := b[k+4 : k+4+int(n)]
		if crc32.Checksum(payload, journalCRC) != sum {
			break
		}
		b = b[k+4+int(n):]
		r := &snapshotReader{b: payload}
		nanos := r.varint()
		cursor := r.string()
		var gone []string
		changed := r.accounts(func(id string) { gone = append(gone, id) })
		if r.err != nil || len(r.b) != 0 {
			break // checked but malformed: not ours to guess at
		}
		for _, ap := range changed {
			if i, ok := index[ap.Account.ID]; ok {
				d.Accounts[i] = ap
			} else {
				index[ap.Account.ID] = len(d.Accounts)
				d.Accounts = append(d.Accounts, ap)
			}
		}
		for _, id := range gone {
			i, ok := index[id]
			if !ok {
				continue
			}
			last := len(d.Accounts) - 1
			d.Accounts[i] = d.Accounts[last]
			index[d.Accounts[i].Account.ID] = i
			d.Accounts = d.Accounts[:last]
			delete(index, id)
		}
		d.Cursor = cursor
		written = time.Unix(0, nanos)
	}
	return written
}
