package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func FuzzDecodeSnapshot(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	tab, path := snapshotFile(f, now)
	good, _ := os.ReadFile(path)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(snapshotMagic))
	f.Add(writeV1(f, tab, now))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, _, err := decodeSnapshot(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("error %v does not wrap ErrCorruptSnapshot", err)
			}
			return
		}
		// Whatever decodes must compile without panicking.
		newTable(d, now).Check("a", mustPrefix(t, "203.0.113.1").Addr())
	})
}

// snapshotTable is a policy with what a snapshot must keep: modes, IPv4
// and IPv6 networks, expiries, an empty account.
func snapshotTable(t testing.TB, now time.Time) *Table {
	return newTable(snapshotData(t, now), now)
}

// snapshotData is snapshotTable's policy.
func snapshotData(t testing.TB, now time.Time) *Data {
	return &Data{Generation: "g1", Cursor: "c:1", Accounts: []AccountPolicy{
		{Account: Account{ID: "a", Mode: ModeMonitor}, Rules: []Rule{
			{ID: 1, Prefix: mustPrefix(t, "203.0.113.0/24")},
			{ID: 2, Prefix: mustPrefix(t, "2001:db8::1"), ExpiresAt: now.Add(time.Hour)},
			{ID: 70000, Prefix: mustPrefix(t, "198.51.100.7")},
		}},
		{Account: Account{ID: "b", Mode: ModeOff}},
		{Account: Account{ID: "c", Mode: ModeOn}, Rules: []Rule{{ID: 3, Prefix: mustPrefix(t, "2001:db8:1::/48")}}},
		{Account: Account{ID: "d", Mode: ModeOn, Settings: Settings{RequireDevice: true}},
			Rules:   []Rule{{ID: 4, Prefix: mustPrefix(t, "192.0.2.0/24")}},
			Devices: []DeviceKey{{Key: [32]byte{1}, Standing: DeviceKnown}, {Key: [32]byte{2}, Standing: DeviceOwnerBarred}}},
		{Account: Account{ID: "e", Mode: ModeOn, Settings: Settings{RequireDevice: true}}},
	}}
}

// snapshotFile writes snapshotTable to a file and returns both.
func snapshotFile(t testing.TB, now time.Time) (*Table, string) {
	tab := snapshotTable(t, now)
	path := filepath.Join(t.TempDir(), "snap")
	if err := WriteSnapshotFile(path, tab, now); err != nil {
		t.Fatal(err)
	}
	return tab, path
}

// sameTables reports whether two tables hold the same accounts, modes and
// entries.
func sameTables(a, b *Table) bool {
	if a.Accounts() != b.Accounts() || a.Rules() != b.Rules() || a.generation() != b.generation() || a.cursor() != b.cursor() {
		return false
	}
	for id, at := range a.all() {
		bt := b.account(id)
		if bt == nil || at.mode != bt.mode || at.nextExpiry != bt.nextExpiry || !at.dev().equal(bt.dev()) {
			return false
		}
		for p, e := range at.prefixes.All() {
			if f, ok := bt.prefixes.Get(p); !ok || f != e {
				return false
			}
		}
	}
	return true
}

func TestSnapshotRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tab, path := snapshotFile(t, now)
	d, written, err := ReadSnapshotFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !written.Equal(now) || !sameTables(tab, newTable(d, now)) {
		t.Fatalf("read back %+v written %v", d, written)
	}
}

// A snapshot written after changes holds the changes: the writer keeps
// each account's record with the table it was encoded from, so a stale one
// would show here. Changed: a rule added (patched from the old table), a
// mode moved (built anew), an account gone, one new; untouched accounts
// keep theirs.
func TestSnapshotAfterChanges(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tab := snapshotTable(t, now)
	w := &snapshotFiles{path: filepath.Join(t.TempDir(), "snap")}
	defer w.closeJournal()
	if err := w.writeAll(tab, now); err != nil {
		t.Fatal(err)
	}
	cached, ok := w.records["b"]
	if !ok || cached.at != tab.account("b") {
		t.Fatal("a written snapshot left no record of account b")
	}
	tab.set(map[string]*accountTable{
		"a": recompile(tab.account("a"), AccountPolicy{Account: Account{ID: "a", Mode: ModeMonitor}, Rules: []Rule{
			{ID: 1, Prefix: mustPrefix(t, "203.0.113.0/24")},
			{ID: 2, Prefix: mustPrefix(t, "2001:db8::1"), ExpiresAt: now.Add(2 * time.Hour)},
			{ID: 70000, Prefix: mustPrefix(t, "198.51.100.7")},
			{ID: 70001, Prefix: mustPrefix(t, "192.0.2.9")},
		}}, now),
		"b": recompile(tab.account("b"), AccountPolicy{Account: Account{ID: "b", Mode: ModeOn}}, now),
		"d": compileAccount(AccountPolicy{Account: Account{ID: "d"}, Rules: []Rule{{ID: 5, Prefix: mustPrefix(t, "10.1.0.0/16")}}}, now),
		"f": compileAccount(AccountPolicy{Account: Account{ID: "f"}, Rules: []Rule{{ID: 6, Prefix: mustPrefix(t, "10.2.0.0/16")}}}, now),
	})
	tab.set(map[string]*accountTable{"c": nil})
	// A table shared under another ID (nothing does this today) must not
	// lend it its record.
	tab.set(map[string]*accountTable{"e": tab.account("d")})

	if err := w.writeAll(tab, now); err != nil {
		t.Fatal(err)
	}
	d, _, err := ReadSnapshotFile(w.path)
	if err != nil {
		t.Fatal(err)
	}
	if !sameTables(tab, newTable(d, now)) {
		t.Fatalf("the second snapshot does not hold the changes: %+v", d)
	}
	if _, ok := w.records["c"]; ok {
		t.Error("the removed account's record was kept")
	}
	if w.records["f"].at != tab.account("f") {
		t.Error("the new account's record was not kept")
	}
}

// writeV1 writes tab as the gob-encoded version 1 did.
func writeV1(t testing.TB, tab *Table, now time.Time) []byte {
	p := snapshotPayload{Generation: tab.generation(), Cursor: tab.cursor(), Written: now}
	for id, at := range tab.all() {
		sa := snapshotAccount{ID: id, Mode: at.mode.mode()}
		for pfx, e := range at.prefixes.All() {
			sa.Rules = append(sa.Rules, snapshotRule{ID: e.rule, Prefix: pfx, Expires: e.expires})
		}
		p.Accounts = append(p.Accounts, sa)
	}
	var body bytes.Buffer
	if err := gob.NewEncoder(&body).Encode(p); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body.Bytes())
	out := []byte(snapshotMagicV1)
	out = binary.BigEndian.AppendUint64(out, uint64(body.Len()))
	return append(append(out, sum[:]...), body.Bytes()...)
}

// A snapshot written before the upgrade (version 1, gob) is still read.
func TestSnapshotReadsVersion1(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	// Version 1 came before devices: its accounts require none.
	d0 := snapshotData(t, now)
	for i := range d0.Accounts {
		d0.Accounts[i].Account.Settings.RequireDevice = false
	}
	tab := newTable(d0, now)
	d, written, err := decodeSnapshot(bytes.NewReader(writeV1(t, tab, now)))
	if err != nil {
		t.Fatal(err)
	}
	if !written.Equal(now) || !sameTables(tab, newTable(d, now)) {
		t.Fatalf("read back %+v written %v", d, written)
	}
}

// The payload parser, reached directly (the file's checksum keeps most
// mutations away from it): it never panics, and what it accepts writes
// back to the same policy.
func FuzzParseSnapshot(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add(appendSnapshot(nil, snapshotTable(f, now), now))
	f.Add(appendSnapshot(nil, &Table{}, now))
	f.Add([]byte{0, 0, 0, 1, 1, 'a', 0, 1, 5, 4, 10, 0, 0, 1, 32, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, written, err := parseSnapshot(b)
		if err != nil {
			return
		}
		tab := newTable(d, time.Unix(0, 0))
		again, _, err := parseSnapshot(appendSnapshot(nil, tab, written))
		if err != nil {
			t.Fatalf("a parsed snapshot does not parse once written again: %v", err)
		}
		if !sameTables(tab, newTable(again, time.Unix(0, 0))) {
			t.Fatal("a parsed snapshot changed when written again")
		}
	})
}
