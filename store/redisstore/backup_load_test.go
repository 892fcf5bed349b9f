package redisstore

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/store/backup"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// TestBackupMillionRules times a backup of 1,000,000 rules over 100,000
// accounts and its restore into an empty Redis, and checks that every
// rule is back (docs/benchmarks.md).
func TestBackupMillionRules(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("backs up 1M rules: skipped with -short and under -race")
	}
	const accounts, perAccount = 100_000, 10
	src, dst := redistest.Start(t), redistest.Start(t)
	ctx := t.Context()
	seed(t, ctx, rawClient(t, src), accounts, perAccount)
	s := openStore(t, src)
	path := filepath.Join(t.TempDir(), "million.gkbackup")
	key := make([]byte, backup.KeySize)

	runtime.GC()
	start := time.Now()
	m, err := backup.WriteFile(ctx, path, s, key, "test")
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	t.Logf("backup: %d rules, %d accounts, %d records in %v; file %.1f MiB (encrypted)",
		m.Counts["rules"], m.Counts["acct"], m.Records, took, float64(fi.Size())/(1<<20))

	start = time.Now()
	b, err := backup.ReadFile(path, key)
	if err != nil {
		t.Fatal(err)
	}
	decoded := time.Since(start)
	d := openStore(t, dst)
	start = time.Now()
	if _, err := d.Restore(ctx, b, false, nil); err != nil {
		t.Fatal(err)
	}
	restored := time.Since(start)
	p, err := d.LoadPolicy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rules := 0
	for _, a := range p.Accounts {
		rules += len(a.Rules)
	}
	t.Logf("restore: read and verified in %v, written in %v; %d accounts, %d rules back", decoded, restored, len(p.Accounts), rules)
	if len(p.Accounts) != accounts || rules != accounts*perAccount || p.Generation != m.Generation {
		t.Fatalf("restored %d accounts, %d rules, generation %q; want %d, %d, %q", len(p.Accounts), rules, p.Generation, accounts, accounts*perAccount, m.Generation)
	}
}
