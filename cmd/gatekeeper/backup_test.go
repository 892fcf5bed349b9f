package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// TestRestoreBringsPolicyForward: the embedded store is backed up, then a
// rule is deleted and another added (the snapshot has both changes); the
// file is lost. The restore lists both changes and applies them: the
// deleted rule's address is not let in again.
func TestRestoreBringsPolicyForward(t *testing.T) {
	dir := t.TempDir()
	snap := filepath.Join(dir, "policy.snapshot")
	cfg := filepath.Join(dir, "gk.yaml")
	writeCfg := func(db string) {
		os.WriteFile(cfg, []byte(`store: {url: "file:`+filepath.Join(dir, db)+`", snapshot: "`+snap+`"}
listeners:
  - {name: desktop, addr: "127.0.0.1:0", mode: tcp, routes: [{account: "10042", upstream: "127.0.0.1:1"}]}
`), 0o600)
	}
	writeCfg("gk.db")
	if _, errOut, err := runCLI(t, "correct horse battery staple\n", "account", "create", "-config", cfg, "-account", "10042"); err != nil {
		t.Fatal(err, errOut)
	}
	ctx := context.Background()
	put := func(st *boltstore.Store, cidr string) policy.RuleID {
		var r policy.Rule
		err := st.Update(ctx, "10042", func(tx policy.Tx) (err error) {
			r, err = tx.PutRule(policy.Rule{Prefix: netip.MustParsePrefix(cidr), Source: policy.SourceManual})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	st, err := boltstore.Open(filepath.Join(dir, "gk.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	put(st, "192.0.2.1/32")
	gone := put(st, "198.51.100.7/32")
	st.Close()
	file := filepath.Join(dir, "gk.gkbackup")
	if out, errOut, err := runCLI(t, "", "store", "backup", "-config", cfg, "-out", file); err != nil || !strings.Contains(out, "rules 2") {
		t.Fatalf("backup: %v %s %s", err, out, errOut)
	}

	// After the backup: one rule deleted, one added; the engine's snapshot
	// records it.
	st, err = boltstore.Open(filepath.Join(dir, "gk.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(ctx, "10042", func(tx policy.Tx) error { return tx.DeleteRule(gone) }); err != nil {
		t.Fatal(err)
	}
	added := put(st, "203.0.113.9/32")
	e, err := policy.NewEngine(policy.Options{Source: st, SnapshotPath: snap})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Written after the backup (a minute on, so no clock tick matters).
	if err := policy.WriteSnapshotFile(snap, e.Table(), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	st.Close()

	// The file is lost; restore into a new one.
	writeCfg("restored.db")
	out, errOut, err := runCLI(t, "", "store", "restore", "-config", cfg, "-in", file)
	if err != nil {
		t.Fatalf("restore: %v\n%s%s", err, out, errOut)
	}
	t.Logf("store restore:\n%s", out)
	for _, want := range []string{"198.51.100.7/32 deleted after the backup", "203.0.113.9/32 added after the backup", "brought the policy forward"} {
		if !strings.Contains(out, want) {
			t.Errorf("the restore does not say %q", want)
		}
	}
	st, err = boltstore.Open(filepath.Join(dir, "restored.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, err := st.LoadAccountPolicy(ctx, "10042")
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, r := range p.Rules {
		have = append(have, r.Prefix.String())
		if r.ID == gone {
			t.Errorf("rule %d, deleted after the backup, is back", gone)
		}
	}
	if len(p.Rules) != 2 || !strings.Contains(strings.Join(have, " "), "203.0.113.9/32") {
		t.Errorf("restored rules %v; want 192.0.2.1/32 and 203.0.113.9/32 (ID %d)", have, added)
	}
	d, _ := st.LoadPolicy(ctx)
	sd, _, _ := policy.ReadSnapshotFile(snap)
	if d.Generation != sd.Generation || d.Generation == "" {
		t.Errorf("restored generation %q, want the snapshot's %q", d.Generation, sd.Generation)
	}
}
