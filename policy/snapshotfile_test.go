package policy

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func FuzzDecodeSnapshot(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	tab := newTable(&Data{Generation: "g1", Cursor: "c:1", Accounts: []AccountPolicy{
		{Account: Account{ID: "a", Mode: ModeMonitor}, Rules: []Rule{
			{ID: 1, Prefix: mustPrefix(f, "203.0.113.0/24")},
			{ID: 2, Prefix: mustPrefix(f, "2001:db8::1"), ExpiresAt: now.Add(time.Hour)},
		}},
	}}, now)
	path := filepath.Join(f.TempDir(), "snap")
	if err := WriteSnapshotFile(path, tab, now); err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(snapshotMagic))
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
