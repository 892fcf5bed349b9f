package policy

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// journalFixture is a snapshot file and a journal of three records
// after it, with the table after each record (tables[i]: after i
// records).
type journalFixture struct {
	path    string
	tables  []*Table
	records []int // the journal's length after each record
}

func newJournalFixture(t testing.TB, now time.Time) journalFixture {
	t.Helper()
	tab := snapshotTable(t, now)
	path := filepath.Join(t.TempDir(), "snap")
	w := &snapshotFiles{path: path}
	if err := w.writeAll(tab, now); err != nil {
		t.Fatal(err)
	}
	defer w.closeJournal()
	fx := journalFixture{path: path, tables: []*Table{cloneTable(t, tab, now)}, records: []int{journalHead}}
	step := func(ids []string, changed map[string]*accountTable, cursor string) {
		tab.set(changed)
		tab.setCursor(cursor)
		if err := w.appendChanges(tab, ids, now.Add(time.Duration(len(fx.records))*time.Second)); err != nil {
			t.Fatal(err)
		}
		fx.tables = append(fx.tables, cloneTable(t, tab, now))
		fx.records = append(fx.records, int(w.journalSize))
	}
	step([]string{"a"}, map[string]*accountTable{
		"a": recompile(tab.account("a"), AccountPolicy{Account: Account{ID: "a", Mode: ModeMonitor}, Rules: []Rule{
			{ID: 1, Prefix: mustPrefix(t, "203.0.113.0/24")},
			{ID: 70001, Prefix: mustPrefix(t, "192.0.2.9"), ExpiresAt: now.Add(time.Hour)},
		}}, now),
	}, "c:2")
	step([]string{"c", "new"}, map[string]*accountTable{
		"c":   nil,
		"new": compileAccount(AccountPolicy{Account: Account{ID: "new"}, Rules: []Rule{{ID: 9, Prefix: mustPrefix(t, "10.9.0.0/16")}}}, now),
	}, "c:3")
	step([]string{"b", "d", "gone-before"}, map[string]*accountTable{
		"b": recompile(tab.account("b"), AccountPolicy{Account: Account{ID: "b", Mode: ModeOn}}, now),
		"d": compileAccount(AccountPolicy{Account: Account{ID: "d", Mode: ModeOn, Settings: Settings{RequireDevice: true}},
			Devices: []DeviceKey{{Key: [32]byte{7}, Standing: DeviceNotActive}}}, now),
	}, "c:4")
	return fx
}

// cloneTable copies tab through a snapshot, so later changes to tab
// leave the copy alone.
func cloneTable(t testing.TB, tab *Table, now time.Time) *Table {
	t.Helper()
	d, _, err := parseSnapshot(appendSnapshot(nil, tab, now))
	if err != nil {
		t.Fatal(err)
	}
	return newTable(d, now)
}

// The snapshot file with its journal reads back as the table after the
// last record: changed, removed and new accounts, the cursor, the time.
func TestJournalRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	fx := newJournalFixture(t, now)
	d, written, err := ReadSnapshotFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	if !sameTables(fx.tables[3], newTable(d, now)) {
		t.Fatalf("read back %+v", d)
	}
	if d.Cursor != "c:4" || !written.Equal(now.Add(3*time.Second)) {
		t.Errorf("cursor %q written %v, want c:4 and the last record's time", d.Cursor, written)
	}
}

// Cut anywhere, as a crash in the middle of an append would leave it,
// the journal gives the table after the last whole record: never a
// record in part, never an error.
func TestJournalTornAnywhere(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	fx := newJournalFixture(t, now)
	full, err := os.ReadFile(fx.path + journalSuffix)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n <= len(full); n++ {
		if err := os.WriteFile(fx.path+journalSuffix, full[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		d, _, err := ReadSnapshotFile(fx.path)
		if err != nil {
			t.Fatalf("cut at %d: %v", n, err)
		}
		whole := 0
		for i, end := range fx.records {
			if n >= end {
				whole = i
			}
		}
		if !sameTables(fx.tables[whole], newTable(d, now)) {
			t.Fatalf("cut at %d of %d: read %+v, want the table after %d records", n, len(full), d, whole)
		}
	}
}

// A record whose bytes changed is where reading stops; a journal of
// another snapshot file is ignored whole.
func TestJournalRefused(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	fx := newJournalFixture(t, now)
	full, err := os.ReadFile(fx.path + journalSuffix)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(full)
	flipped[fx.records[1]+8] ^= 0x40 // inside the second record
	if err := os.WriteFile(fx.path+journalSuffix, flipped, 0o600); err != nil {
		t.Fatal(err)
	}
	d, _, err := ReadSnapshotFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	if !sameTables(fx.tables[1], newTable(d, now)) {
		t.Fatalf("a changed second record: read %+v, want the table after the first", d)
	}

	other := bytes.Clone(full)
	other[len(journalMagic)] ^= 1 // another snapshot's checksum
	if err := os.WriteFile(fx.path+journalSuffix, other, 0o600); err != nil {
		t.Fatal(err)
	}
	d, _, err = ReadSnapshotFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	if !sameTables(fx.tables[0], newTable(d, now)) {
		t.Fatalf("a journal of another snapshot was applied: %+v", d)
	}
}

// A whole write replaces the journal: the old one, which follows the old
// file, is removed, and a new empty one follows the new file.
func TestWholeWriteReplacesJournal(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	fx := newJournalFixture(t, now)
	if err := WriteSnapshotFile(fx.path, fx.tables[1], now); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fx.path + journalSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old journal is still there: %v", err)
	}
	d, _, err := ReadSnapshotFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	if !sameTables(fx.tables[1], newTable(d, now)) {
		t.Fatalf("read %+v", d)
	}
}

// FuzzJournal: whatever the journal file holds, reading it over a good
// snapshot never panics nor fails, and what it gives compiles.
func FuzzJournal(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	fx := newJournalFixture(f, now)
	full, err := os.ReadFile(fx.path + journalSuffix)
	if err != nil {
		f.Fatal(err)
	}
	base, err := os.ReadFile(fx.path)
	if err != nil {
		f.Fatal(err)
	}
	sum := [32]byte(base[len(snapshotMagic)+8 : len(snapshotMagic)+8+32])
	f.Add(full)
	f.Add(full[:fx.records[1]])
	f.Add(full[:fx.records[2]-1])
	f.Add([]byte(journalMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, _, err := parseSnapshot(appendSnapshot(nil, fx.tables[0], now))
		if err != nil {
			t.Fatal(err)
		}
		applyJournal(b, sum, d, now)
		seen := map[string]bool{}
		for _, ap := range d.Accounts {
			if seen[ap.Account.ID] {
				t.Fatalf("account %q twice after the journal", ap.Account.ID)
			}
			seen[ap.Account.ID] = true
		}
		newTable(d, now).Check("a", mustPrefix(t, "203.0.113.1").Addr())
	})
}
