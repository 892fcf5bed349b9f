package policy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// The snapshot file is the last good policy on local disk: a magic line,
// the payload length, the payload's SHA-256, then the payload. A file
// whose length or checksum does not match is refused whole.
//
// Version 2's payload is a compact binary form (see appendSnapshot),
// written straight from the table: at a million rules, version 1's gob
// encoding took 1.5 s and 216 MB of allocations per write. Version 1
// files, written before an upgrade, are still read.
const (
	snapshotMagic   = "GKSNAP2\n"
	snapshotMagicV1 = "GKSNAP1\n"
)

// ErrCorruptSnapshot means a snapshot file exists but cannot be trusted.
var ErrCorruptSnapshot = errors.New("snapshot file is corrupt or truncated")

// snapshotPayload is version 1's payload, gob-encoded.
type snapshotPayload struct {
	Generation string
	Cursor     string
	Written    time.Time
	Accounts   []snapshotAccount
}

type snapshotAccount struct {
	ID    string
	Mode  Mode
	Rules []snapshotRule
}

type snapshotRule struct {
	ID      RuleID
	Prefix  netip.Prefix
	Expires uint32
}

func (p snapshotPayload) data() *Data {
	d := &Data{Generation: p.Generation, Cursor: p.Cursor, Accounts: make([]AccountPolicy, len(p.Accounts))}
	for i, sa := range p.Accounts {
		ap := AccountPolicy{Account: Account{ID: sa.ID, Mode: sa.Mode}, Rules: make([]Rule, len(sa.Rules))}
		for j, r := range sa.Rules {
			ap.Rules[j] = Rule{ID: r.ID, Account: sa.ID, Prefix: r.Prefix}
			if r.Expires != 0 {
				ap.Rules[j].ExpiresAt = time.Unix(int64(r.Expires), 0)
			}
		}
		d.Accounts[i] = ap
	}
	return d
}

// WriteSnapshotFile writes t to path atomically: a temporary file in the
// same directory, fsynced, then renamed over the old one. The payload goes
// to the file as it is encoded, through its checksum, and the header is
// written over a placeholder once both are known: a whole payload in
// memory was 24 MB allocated a write at a million rules, under churn
// every few seconds, which the collector then had to come back for. A
// journal of the snapshot it replaces is removed.
func WriteSnapshotFile(path string, t *Table, now time.Time) error {
	_, err := writeSnapshotFile(path, t, now, nil)
	return err
}

// writeSnapshotFile is WriteSnapshotFile, returning what identifies the
// file for a journal to follow. It takes records from cache, and leaves
// there those of this table, when cache is not nil.
func writeSnapshotFile(path string, t *Table, now time.Time, cache *recordCache) (snapshotBase, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return snapshotBase{}, fmt.Errorf("create snapshot directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".snapshot-*")
	if err != nil {
		return snapshotBase{}, fmt.Errorf("create snapshot temp file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	_, err = f.Write(make([]byte, len(snapshotMagic)+8+sha256.Size))
	var base snapshotBase
	if err == nil {
		base, err = writeSnapshotTo(f, t, now, cache)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return snapshotBase{}, fmt.Errorf("write snapshot %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return snapshotBase{}, fmt.Errorf("install snapshot %s: %w", path, err)
	}
	// The old journal follows the old file: a crash before this removal
	// leaves one that readers ignore (it names another checksum).
	if err := os.Remove(path + journalSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return snapshotBase{}, fmt.Errorf("remove old snapshot journal: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // make the rename durable; best effort where unsupported
		d.Close()
	}
	return base, nil
}

// writeSnapshotTo writes t's payload to f after the placeholder of its
// header, then the header over the placeholder.
func writeSnapshotTo(f *os.File, t *Table, now time.Time, cache *recordCache) (snapshotBase, error) {
	sum := sha256.New()
	var n countingWriter
	w := bufio.NewWriterSize(io.MultiWriter(f, sum, &n), 256<<10)
	if err := writeSnapshot(w, t, now, cache); err != nil {
		return snapshotBase{}, err
	}
	if err := w.Flush(); err != nil {
		return snapshotBase{}, err
	}
	head := append([]byte(snapshotMagic), binary.BigEndian.AppendUint64(nil, uint64(n))...)
	head = sum.Sum(head)
	if _, err := f.WriteAt(head, 0); err != nil {
		return snapshotBase{}, err
	}
	b := snapshotBase{size: int64(len(head)) + int64(n)}
	copy(b.sum[:], head[len(snapshotMagic)+8:])
	return b, nil
}

// countingWriter counts what goes through it.
type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// ReadSnapshotFile reads a snapshot written by WriteSnapshotFile, with
// the changes its journal holds (snapshotjournal.go). It returns an error
// wrapping os.ErrNotExist when there is none, and one wrapping
// ErrCorruptSnapshot when it cannot be trusted. A journal never makes a
// snapshot unreadable: what of it does not check is left out.
func ReadSnapshotFile(path string) (*Data, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("open snapshot: %w", err)
	}
	defer f.Close()
	d, written, sum, err := decodeSnapshotFile(f)
	if err != nil {
		return nil, time.Time{}, err
	}
	return d, readJournal(path+journalSuffix, sum, d, written), nil
}

// maxSnapshot bounds what is read of a snapshot file or journal.
const maxSnapshot = 4 << 30

func decodeSnapshot(r io.Reader) (*Data, time.Time, error) {
	d, written, _, err := decodeSnapshotFile(r)
	return d, written, err
}

// decodeSnapshotFile decodes a snapshot file and returns, with its
// policy and write time, the checksum in its header.
func decodeSnapshotFile(r io.Reader) (*Data, time.Time, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	head := make([]byte, len(snapshotMagic)+8+sha256.Size)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, time.Time{}, sum, fmt.Errorf("%w: short header: %v", ErrCorruptSnapshot, err)
	}
	magic := string(head[:len(snapshotMagic)])
	if magic != snapshotMagic && magic != snapshotMagicV1 {
		return nil, time.Time{}, sum, fmt.Errorf("%w: not a gatekeeper snapshot", ErrCorruptSnapshot)
	}
	n := binary.BigEndian.Uint64(head[len(snapshotMagic):])
	if n > maxSnapshot {
		return nil, time.Time{}, sum, fmt.Errorf("%w: claims %d bytes", ErrCorruptSnapshot, n)
	}
	body, err := io.ReadAll(io.LimitReader(r, int64(n)+1))
	if err != nil {
		return nil, time.Time{}, sum, fmt.Errorf("read snapshot: %w", err)
	}
	if uint64(len(body)) != n {
		return nil, time.Time{}, sum, fmt.Errorf("%w: %d bytes of payload, header says %d", ErrCorruptSnapshot, len(body), n)
	}
	sum = sha256.Sum256(body)
	if !bytes.Equal(sum[:], head[len(snapshotMagic)+8:]) {
		return nil, time.Time{}, sum, fmt.Errorf("%w: checksum mismatch", ErrCorruptSnapshot)
	}
	if magic == snapshotMagic {
		d, written, err := parseSnapshot(body)
		if err != nil {
			return nil, time.Time{}, sum, fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
		}
		return d, written, sum, nil
	}
	var p snapshotPayload
	if err := gob.NewDecoder(bytes.NewReader(body)).Decode(&p); err != nil {
		return nil, time.Time{}, sum, fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
	}
	return p.data(), p.Written, sum, nil
}

// appendSnapshot appends version 2's payload of t to b:
//
//	generation, cursor: uvarint length, bytes
//	written: varint Unix nanoseconds
//	per account: byte 1, ID (uvarint length, bytes), mode code byte,
//	  or, for an account that requires a known device, byte 2, ID, mode
//	  code byte, uvarint device count, then per device its 32-byte
//	  Ed25519 key and its standing byte; then
//	  uvarint rule count, then per rule: uvarint rule ID, byte 4 or 6,
//	  the address (4 or 16 bytes), prefix length byte, uvarint expiry
//	  (Unix seconds, 0 for never)
//	byte 0
//
// The cursor is read before the accounts, so that every account is at
// least as new as it: following the feed from it again on start reloads
// what changed since, and a reload is idempotent. That is the one place a
// consistent cross-account view would matter.
func appendSnapshot(b []byte, t *Table, now time.Time) []byte {
	buf := bytes.NewBuffer(b)
	writeSnapshot(buf, t, now, nil) // a bytes.Buffer does not fail
	return buf.Bytes()
}

// writeSnapshot writes what appendSnapshot appends, with the records of
// cache when it is not nil, which then holds those of t's accounts only.
func writeSnapshot(w io.Writer, t *Table, now time.Time, cache *recordCache) error {
	meta := t.meta.Load()
	if meta == nil {
		meta = &tableMeta{}
	}
	b := appendString(nil, meta.generation)
	b = appendString(b, meta.cursor)
	b = binary.AppendVarint(b, now.UnixNano())
	if _, err := w.Write(b); err != nil {
		return err
	}
	var kept recordCache
	if cache != nil {
		kept = make(recordCache, len(*cache))
	}
	for id, at := range t.all() {
		rec := cache.record(id, at)
		if kept != nil {
			kept[id] = cachedRecord{at, rec}
		}
		if _, err := w.Write(rec); err != nil {
			return err
		}
	}
	if cache != nil {
		*cache = kept
	}
	_, err := w.Write([]byte{recordEnd})
	return err
}

// recordCache keeps each account's encoded record with the table it was
// encoded from: tables never change, so a whole write under churn encodes
// only the accounts changed since the one before, and a journal record
// reuses them. The snapshot writer owns it (Engine.runSnapshots); it is
// not the gate's, so the lookup table carries none of it.
type recordCache map[string]cachedRecord

type cachedRecord struct {
	at *accountTable
	b  []byte
}

// record returns the record of account id's table at: the cached one when
// it was encoded from at, else a fresh one. A nil cache encodes.
func (c *recordCache) record(id string, at *accountTable) []byte {
	if c == nil {
		return appendAccountRecord(nil, id, at)
	}
	if r, ok := (*c)[id]; ok && r.at == at {
		return r.b
	}
	return appendAccountRecord(nil, id, at)
}

// appendAccountRecord appends the record of one account: its ID, mode,
// devices if it requires a known device, and rules.
func appendAccountRecord(b []byte, id string, at *accountTable) []byte {
	dev := at.dev()
	if dev == nil {
		b = append(b, recordAccount)
		b = appendString(b, id)
		b = append(b, byte(at.mode))
	} else {
		b = append(b, recordDevices)
		b = appendString(b, id)
		b = append(b, byte(at.mode))
		b = binary.AppendUvarint(b, uint64(len(dev.keys)))
		for k, st := range dev.keys {
			b = append(append(b, k[:]...), byte(st))
		}
	}
	b = binary.AppendUvarint(b, uint64(at.prefixes.Size()))
	for pfx, e := range at.prefixes.All() {
		b = binary.AppendUvarint(b, uint64(e.rule))
		if a := pfx.Addr(); a.Is4() {
			a4 := a.As4()
			b = append(append(b, 4), a4[:]...)
		} else {
			a16 := a.As16()
			b = append(append(b, 6), a16[:]...)
		}
		b = append(b, byte(pfx.Bits()))
		b = binary.AppendUvarint(b, uint64(e.expires))
	}
	return b
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// snapshotReader reads version 2's payload; the first error sticks.
type snapshotReader struct {
	b   []byte
	err error
}

func (r *snapshotReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

func (r *snapshotReader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail("%d bytes wanted, %d left", n, len(r.b))
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *snapshotReader) byte() byte {
	if b := r.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *snapshotReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *snapshotReader) string() string { return string(r.bytes(r.uvarint())) }

// parseSnapshot reads version 2's payload, refusing anything out of range.
func parseSnapshot(body []byte) (*Data, time.Time, error) {
	r := &snapshotReader{b: body}
	d := &Data{Generation: r.string(), Cursor: r.string()}
	nanos := r.varint()
	d.Accounts = r.accounts(nil)
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d bytes after the end", len(r.b))
	}
	if r.err != nil {
		return nil, time.Time{}, r.err
	}
	return d, time.Unix(0, nanos), nil
}

func (r *snapshotReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Record kinds: an account (1), an account that requires a known device
// (2), an account that is gone (3, journal records only), the end (0).
const (
	recordEnd     = 0
	recordAccount = 1
	recordDevices = 2
	recordGone    = 3
)

// accounts reads account records up to the end byte. With gone set (a
// journal record), a removed account's record is taken too and handed
// to it; an account named twice is refused either way.
func (r *snapshotReader) accounts(gone func(id string)) []AccountPolicy {
	var out []AccountPolicy
	seen := map[string]bool{}
	for r.err == nil {
		kind := r.byte()
		if kind == recordEnd {
			break
		}
		if kind > recordGone || (kind == recordGone && gone == nil) {
			r.fail("record kind %d", kind)
			break
		}
		id := r.string()
		if seen[id] {
			r.fail("account %q twice", id)
		}
		seen[id] = true
		if kind == recordGone {
			if r.err == nil {
				gone(id)
			}
			continue
		}
		if ap, ok := r.account(id, kind); ok {
			out = append(out, ap)
		}
	}
	return out
}

// account reads the rest of one account's record after its ID.
func (r *snapshotReader) account(id string, kind byte) (AccountPolicy, bool) {
	code := modeCode(r.byte())
	if code > codeOff {
		r.fail("account %q: mode %d", id, code)
	}
	var devices []DeviceKey
	if kind == recordDevices {
		n := r.uvarint()
		if n > uint64(len(r.b))/33 {
			r.fail("account %q: %d devices in %d bytes", id, n, len(r.b))
			return AccountPolicy{}, false
		}
		devices = make([]DeviceKey, 0, n)
		for range n {
			k := r.bytes(32)
			st := DeviceStanding(r.byte())
			if r.err != nil {
				return AccountPolicy{}, false
			}
			if st > DeviceOwnerBarred {
				r.fail("account %q: device standing %d", id, st)
				return AccountPolicy{}, false
			}
			devices = append(devices, DeviceKey{Key: [32]byte(k), Standing: st})
		}
	}
	count := r.uvarint()
	if count > uint64(len(r.b))/7 { // a rule takes at least 7 bytes
		r.fail("account %q: %d rules in %d bytes", id, count, len(r.b))
	}
	if r.err != nil {
		return AccountPolicy{}, false
	}
	ap := AccountPolicy{Account: Account{ID: id, Mode: code.mode()}, Rules: make([]Rule, 0, count), Devices: devices}
	ap.Account.Settings.RequireDevice = kind == recordDevices
	for range count {
		ruleID := r.uvarint()
		var addr netip.Addr
		switch kind := r.byte(); kind {
		case 4:
			if a := r.bytes(4); a != nil {
				addr = netip.AddrFrom4([4]byte(a))
			}
		case 6:
			if a := r.bytes(16); a != nil {
				addr = netip.AddrFrom16([16]byte(a))
			}
		default:
			r.fail("account %q: address kind %d", id, kind)
		}
		bits := int(r.byte())
		expires := r.uvarint()
		if r.err != nil {
			return AccountPolicy{}, false
		}
		pfx := netip.PrefixFrom(addr, bits)
		if ruleID > 1<<32-1 || !pfx.IsValid() || pfx != pfx.Masked() || expires > 1<<32-1 {
			r.fail("account %q: rule %d %v expiring %d", id, ruleID, pfx, expires)
			return AccountPolicy{}, false
		}
		rule := Rule{ID: RuleID(ruleID), Account: id, Prefix: pfx}
		if expires != 0 {
			rule.ExpiresAt = time.Unix(int64(expires), 0)
		}
		ap.Rules = append(ap.Rules, rule)
	}
	return ap, true
}
