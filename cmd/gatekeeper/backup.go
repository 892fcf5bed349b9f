package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/config"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store"
	"github.com/gatekeeper-dev/gatekeeper/store/backup"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// restorer is a store a backup restores into: both backends.
type restorer interface {
	Restore(ctx context.Context, b *backup.Backup, force bool, then func(ctx context.Context, gen string) error) (dropped int, err error)
}

// storeBackupCmd writes an online, consistent backup of the configured
// store. The embedded store's file is held by a running serve; the backup
// then goes through serve's backup socket.
func storeBackupCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("store backup", stderr)
	path := fs.String("config", "", "configuration `file` naming the store")
	out := fs.String("out", "", "backup `file` to write (replaced atomically)")
	keyFile := fs.String("key", "", "encrypt with the key in this `file` (64 hex digits; see -new-key)")
	newKey := fs.String("new-key", "", "write a new random key to this `file` (mode 0600) and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *newKey != "" {
		if err := backup.NewKeyFile(*newKey); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "new backup key written to %s: keep a copy apart from the backups, without it they cannot be read\n", *newKey)
		return nil
	}
	c, key, err := loadForBackup("store backup", *path, "-out", *out, *keyFile)
	if err != nil {
		return err
	}
	src, closeSrc, err := openExporter(ctx, c)
	if err != nil {
		return err
	}
	defer closeSrc()
	m, err := backup.WriteFile(ctx, *out, src, key, buildVersion())
	if err != nil {
		return fmt.Errorf("store backup: %w", err)
	}
	enc := "not encrypted"
	if key != nil {
		enc = "encrypted"
	}
	fmt.Fprintf(stdout, "backup of store generation %s written to %s (%s): %s\n", m.Generation, *out, enc, counts(m))
	return nil
}

// openExporter opens the store for a backup: directly, or through the
// running serve that holds the embedded store's file.
func openExporter(ctx context.Context, c *config.Config) (backup.Exporter, func(), error) {
	st, err := store.Open(ctx, c.Store.URL, store.Options{})
	if errors.Is(err, boltstore.ErrLocked) {
		file, _ := store.FilePath(c.Store.URL)
		return backup.Remote{Path: backup.SocketPath(file)}, func() {}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	ex, ok := st.(backup.Exporter)
	if !ok {
		st.Close()
		return nil, nil, errors.New("this store cannot be backed up")
	}
	return ex, func() { st.Close() }, nil
}

// loadForBackup checks the flags both commands require, and loads the
// configuration and the key file (nil without -key).
func loadForBackup(cmd, path, fileFlag, file, keyFile string) (*config.Config, []byte, error) {
	if path == "" || file == "" {
		return nil, nil, usageError{fmt.Sprintf("%s: -config and %s are required", cmd, fileFlag)}
	}
	c, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	if keyFile == "" {
		return c, nil, nil
	}
	key, err := backup.ReadKeyFile(keyFile)
	return c, key, err
}

// counts says a manifest's counts in a stable order.
func counts(m backup.Manifest) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m.Counts)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m.Counts[k]))
	}
	return strings.Join(parts, ", ")
}

// storeRestoreCmd restores a backup into an empty store, or one that lost
// its data. The store takes the backup's generation, so that running
// instances that refused the emptied store take it back, as after reseed.
// When the local snapshot (the policy the fleet enforced last) is newer
// than the backup and differs, the differences are listed and, unless
// -keep-backup-policy, the snapshot's policy is brought forward.
func storeRestoreCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("store restore", stderr)
	path := fs.String("config", "", "configuration `file` naming the store")
	in := fs.String("in", "", "backup `file` to restore")
	keyFile := fs.String("key", "", "key `file` of an encrypted backup")
	force := fs.Bool("force", false, "restore over an empty store that holds another generation")
	snap := fs.String("snapshot", "", "snapshot `file` to compare the policy with (default: store.snapshot of the config)")
	keep := fs.Bool("keep-backup-policy", false, "keep the backup's rules and modes even where the snapshot is newer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, key, err := loadForBackup("store restore", *path, "-in", *in, *keyFile)
	if err != nil {
		return err
	}
	b, err := backup.ReadFile(*in, key)
	if err != nil {
		return fmt.Errorf("store restore: %w; nothing was restored", err)
	}
	st, err := openStore(ctx, c, nil, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	r, ok := st.(restorer)
	if !ok {
		return errors.New("store restore: this store cannot be restored into")
	}
	if *snap == "" {
		*snap = c.Store.Snapshot
	}
	m := b.Manifest
	// The policy is compared, and brought forward, before the store takes
	// the backup's generation: no instance ever enforces the older policy.
	dropped, err := r.Restore(ctx, b, *force, func(ctx context.Context, gen string) error {
		fmt.Fprintf(stdout, "restored the backup of %s (store generation %s): %s\n", m.Created.Format(time.RFC3339), m.Generation, counts(m))
		return comparePolicy(ctx, st, *snap, m, gen, !*keep, stdout)
	})
	if err != nil {
		return fmt.Errorf("store restore: %w", err)
	}
	if dropped > 0 {
		fmt.Fprintf(stdout, "%d items had expired since the backup and were left out (sessions, grants, leases)\n", dropped)
	}
	fmt.Fprintf(stdout, "the store holds generation %s again: running instances take it back\n", m.Generation)
	return nil
}

// comparePolicy lists how the restored policy differs from the snapshot
// file, the policy the fleet enforced last, and brings the snapshot's
// forward when it is newer than the backup.
// gen is the store's generation while it runs (a restore's provisional one).
func comparePolicy(ctx context.Context, st policy.Store, snapPath string, m backup.Manifest, gen string, forward bool, stdout io.Writer) error {
	if snapPath == "" {
		return nil
	}
	snap, written, err := policy.ReadSnapshotFile(snapPath)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stdout, "WARNING: no snapshot at %s to compare the restored policy with: rules deleted since the backup are back. Run the restore where an instance runs, or give one's snapshot with -snapshot\n", snapPath)
		return nil
	}
	if err != nil && !forward {
		fmt.Fprintf(stdout, "WARNING: the snapshot at %s cannot be read (%v): the backup's policy stands, unchecked\n", snapPath, err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("the snapshot to compare the restored policy with: %w (-snapshot to name another, or -keep-backup-policy)", err)
	}
	if snap.Generation != m.Generation {
		fmt.Fprintf(stdout, "the snapshot at %s is of another store generation (%s): not compared\n", snapPath, snap.Generation)
		return nil
	}
	if !written.After(m.Created) {
		fmt.Fprintf(stdout, "the snapshot at %s (%s) is older than the backup: the backup's policy stands\n", snapPath, written.UTC().Format(time.RFC3339))
		return nil
	}
	have, err := st.LoadPolicy(ctx)
	if err != nil {
		return fmt.Errorf("read the restored policy: %w", err)
	}
	now := time.Now()
	diffs := policyDiff(have, snap, now)
	if len(diffs) == 0 {
		fmt.Fprintf(stdout, "the restored policy is the one in the snapshot of %s\n", written.UTC().Format(time.RFC3339))
		return nil
	}
	fmt.Fprintf(stdout, "the policy changed between the backup and the snapshot of %s:\n", written.UTC().Format(time.RFC3339))
	for _, d := range diffs {
		fmt.Fprintf(stdout, "  %s\n", d)
	}
	if !forward {
		fmt.Fprintln(stdout, "kept the backup's policy (-keep-backup-policy); `gatekeeper store reseed` recreates the accounts listed as missing")
		return nil
	}
	if err := forwardPolicy(ctx, st, have, snap, gen, written, now); err != nil {
		return fmt.Errorf("bring the policy forward from the snapshot: %w", err)
	}
	fmt.Fprintln(stdout, "brought the policy forward to the snapshot's: the fleet enforces what it did before the loss")
	return nil
}

// policyDiff lists what differs between the restored policy and the
// snapshot's, in the snapshot's terms.
func policyDiff(have, snap *policy.Data, now time.Time) []string {
	var out []string
	haveBy := map[string]policy.AccountPolicy{}
	for _, ap := range have.Accounts {
		haveBy[ap.Account.ID] = ap
	}
	for _, sp := range snap.Accounts {
		hp, ok := haveBy[sp.Account.ID]
		if !ok {
			out = append(out, fmt.Sprintf("account %s: created after the backup", sp.Account.ID))
			continue
		}
		if hp.Account.Mode != sp.Account.Mode {
			out = append(out, fmt.Sprintf("account %s: mode %s in the backup, %s since", sp.Account.ID, hp.Account.Mode, sp.Account.Mode))
		}
		added, deleted := ruleDiff(hp.Rules, sp.Rules, now)
		for _, r := range added {
			out = append(out, fmt.Sprintf("account %s: rule %d %s added after the backup", sp.Account.ID, r.ID, r.Prefix))
		}
		for _, r := range deleted {
			out = append(out, fmt.Sprintf("account %s: rule %d %s deleted after the backup", sp.Account.ID, r.ID, r.Prefix))
		}
	}
	return out
}

// ruleDiff is what the snapshot has that the store lacks (live rules
// only), and what the store has that the snapshot lacks.
func ruleDiff(have, snap []policy.Rule, now time.Time) (added, deleted []policy.Rule) {
	key := func(r policy.Rule) string { return fmt.Sprint(r.ID, r.Prefix) }
	in := map[string]bool{}
	for _, r := range have {
		in[key(r)] = true
	}
	inSnap := map[string]bool{}
	for _, r := range snap {
		inSnap[key(r)] = true
		if !in[key(r)] && !r.Expired(now) {
			added = append(added, r)
		}
	}
	for _, r := range have {
		if !inSnap[key(r)] && !r.Expired(now) {
			deleted = append(deleted, r)
		}
	}
	return added, deleted
}

// forwardPolicy makes the store's policy the snapshot's: modes, rules
// added and deleted since the backup, accounts created since (as reseed
// does). Each account's change is one audited transaction.
func forwardPolicy(ctx context.Context, st policy.Store, have, snap *policy.Data, gen string, written, now time.Time) error {
	haveBy := map[string]policy.AccountPolicy{}
	for _, ap := range have.Accounts {
		haveBy[ap.Account.ID] = ap
	}
	missing := &policy.Data{Generation: gen}
	note := "restored from the snapshot of " + written.UTC().Format(time.RFC3339)
	for _, sp := range snap.Accounts {
		hp, ok := haveBy[sp.Account.ID]
		if !ok {
			ap := sp
			ap.Account.Name, ap.Account.CreatedAt = ap.Account.ID, now.UTC()
			ap.Rules = slices.Clone(sp.Rules)
			for j := range ap.Rules {
				r := &ap.Rules[j]
				r.Source, r.CreatedBy, r.CreatedAt, r.Note = policy.SourceManual, "restore", now.UTC(), note
			}
			missing.Accounts = append(missing.Accounts, ap)
			continue
		}
		added, deleted := ruleDiff(hp.Rules, sp.Rules, now)
		if len(added) == 0 && len(deleted) == 0 && hp.Account.Mode == sp.Account.Mode {
			continue
		}
		err := st.Update(ctx, sp.Account.ID, func(tx policy.Tx) error {
			a, err := tx.Account()
			if err != nil {
				return err
			}
			before := a.Mode
			if a.Mode != sp.Account.Mode {
				a.Mode = sp.Account.Mode
				if err := tx.PutAccount(a); err != nil {
					return err
				}
			}
			for _, r := range deleted {
				if err := tx.DeleteRule(r.ID); err != nil && !errors.Is(err, policy.ErrNotFound) {
					return err
				}
			}
			for _, r := range added {
				r.Source, r.CreatedBy, r.CreatedAt, r.Note = policy.SourceManual, "restore", now.UTC(), note
				if _, err := tx.PutRule(r); err != nil {
					return err
				}
			}
			beforeJSON, _ := json.Marshal(map[string]any{"mode": before})
			afterJSON, _ := json.Marshal(map[string]any{"mode": a.Mode, "rules_added": len(added), "rules_deleted": len(deleted), "from": note})
			return tx.Audit(policy.AuditEntry{Actor: "cli", Role: policy.RoleOperator, Action: "store.restore.policy_forward",
				Target: sp.Account.ID, Before: beforeJSON, After: afterJSON})
		})
		if err != nil {
			return fmt.Errorf("account %s: %w", sp.Account.ID, err)
		}
	}
	if len(missing.Accounts) > 0 {
		if _, err := st.Reseed(ctx, missing, policy.AuditEntry{Actor: "cli", Role: policy.RoleOperator, Action: "store.restore.policy_forward"}); err != nil {
			return err
		}
	}
	return nil
}
