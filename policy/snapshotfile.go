package policy

import (
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
// the payload length, the payload's SHA-256, then the gob-encoded payload.
// A file whose length or checksum does not match is refused whole.
const snapshotMagic = "GKSNAP1\n"

// ErrCorruptSnapshot means a snapshot file exists but cannot be trusted.
var ErrCorruptSnapshot = errors.New("snapshot file is corrupt or truncated")

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

func payloadFromTable(t *Table, now time.Time) snapshotPayload {
	// The cursor is read before the accounts, so that every account is at
	// least as new as it: following the feed from it again on start
	// reloads what changed since, and a reload is idempotent. That is the
	// one place a consistent cross-account view would matter.
	p := snapshotPayload{Generation: t.generation(), Cursor: t.cursor(), Written: now}
	p.Accounts = make([]snapshotAccount, 0, t.Accounts())
	for id, at := range t.all() {
		sa := snapshotAccount{ID: id, Mode: at.mode.mode(), Rules: make([]snapshotRule, 0, at.prefixes.Size())}
		for pfx, e := range at.prefixes.All() {
			sa.Rules = append(sa.Rules, snapshotRule{ID: e.rule, Prefix: pfx, Expires: e.expires})
		}
		p.Accounts = append(p.Accounts, sa)
	}
	return p
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
// same directory, fsynced, then renamed over the old one.
func WriteSnapshotFile(path string, t *Table, now time.Time) error {
	var body bytes.Buffer
	if err := gob.NewEncoder(&body).Encode(payloadFromTable(t, now)); err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	sum := sha256.Sum256(body.Bytes())
	var head bytes.Buffer
	head.WriteString(snapshotMagic)
	binary.Write(&head, binary.BigEndian, uint64(body.Len()))
	head.Write(sum[:])

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create snapshot directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".snapshot-*")
	if err != nil {
		return fmt.Errorf("create snapshot temp file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if _, err := f.Write(head.Bytes()); err == nil {
		_, err = f.Write(body.Bytes())
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write snapshot %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("install snapshot %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // make the rename durable; best effort where unsupported
		d.Close()
	}
	return nil
}

// ReadSnapshotFile reads a snapshot written by WriteSnapshotFile. It
// returns an error wrapping os.ErrNotExist when there is none, and one
// wrapping ErrCorruptSnapshot when it cannot be trusted.
func ReadSnapshotFile(path string) (*Data, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("open snapshot: %w", err)
	}
	defer f.Close()
	return decodeSnapshot(f)
}

func decodeSnapshot(r io.Reader) (*Data, time.Time, error) {
	head := make([]byte, len(snapshotMagic)+8+sha256.Size)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: short header: %v", ErrCorruptSnapshot, err)
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return nil, time.Time{}, fmt.Errorf("%w: not a gatekeeper snapshot", ErrCorruptSnapshot)
	}
	n := binary.BigEndian.Uint64(head[len(snapshotMagic):])
	const maxSnapshot = 4 << 30
	if n > maxSnapshot {
		return nil, time.Time{}, fmt.Errorf("%w: claims %d bytes", ErrCorruptSnapshot, n)
	}
	body, err := io.ReadAll(io.LimitReader(r, int64(n)+1))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("read snapshot: %w", err)
	}
	if uint64(len(body)) != n {
		return nil, time.Time{}, fmt.Errorf("%w: %d bytes of payload, header says %d", ErrCorruptSnapshot, len(body), n)
	}
	sum := sha256.Sum256(body)
	if !bytes.Equal(sum[:], head[len(snapshotMagic)+8:]) {
		return nil, time.Time{}, fmt.Errorf("%w: checksum mismatch", ErrCorruptSnapshot)
	}
	var p snapshotPayload
	if err := gob.NewDecoder(bytes.NewReader(body)).Decode(&p); err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
	}
	return p.data(), p.Written, nil
}
