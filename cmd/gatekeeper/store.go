package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/config"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// storeReseedCmd restores the policy in a snapshot file into a store that
// lost its data (a Redis restarted without persistence). The running
// instances, which kept enforcing the snapshot's generation and refused the
// empty store, accept it again once it holds that generation.
func storeReseedCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("store reseed", stderr)
	path := fs.String("config", "", "configuration `file` naming the store")
	snap := fs.String("snapshot", "", "snapshot `file` to restore from (default: store.snapshot of the config)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{"store reseed: -config is required"}
	}
	c, err := config.Load(*path)
	if err != nil {
		return err
	}
	if *snap == "" {
		*snap = c.Store.Snapshot
	}
	d, written, err := policy.ReadSnapshotFile(*snap)
	if err != nil {
		return fmt.Errorf("store reseed: %w", err)
	}
	st, err := openStoreForCLI(ctx, c)
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now().UTC()
	for i := range d.Accounts {
		ap := &d.Accounts[i]
		ap.Account.Name = ap.Account.ID
		ap.Account.CreatedAt = now
		for j := range ap.Rules {
			r := &ap.Rules[j]
			r.Source, r.CreatedBy, r.CreatedAt = policy.SourceManual, "reseed", now
			r.Note = "restored from the snapshot of " + written.UTC().Format(time.RFC3339)
		}
	}
	res, err := st.Reseed(ctx, d, policy.AuditEntry{Actor: "cli", Role: policy.RoleOperator, Action: "store.reseed",
		Target: *snap})
	if err != nil {
		return fmt.Errorf("store reseed: %w", err)
	}
	fmt.Fprintf(stdout, "restored %d accounts with %d rules from %s (written %s); %d accounts were already there\n",
		res.Restored, res.Rules, *snap, written.UTC().Format(time.RFC3339), res.Skipped)
	if res.Restored > 0 {
		fmt.Fprintln(stdout, "a snapshot holds no passwords or users: give each restored account a master password with\n  gatekeeper account reset-password -config FILE -account ID")
	}
	return nil
}

// accountResetPasswordCmd sets a new master password and ends the master's
// sessions: for a forgotten password, or an account restored by reseed.
func accountResetPasswordCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("account reset-password", stderr)
	path := fs.String("config", "", "configuration `file` naming the store")
	id := fs.String("account", "", "account `number`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" || *id == "" {
		return usageError{"account reset-password: -config and -account are required"}
	}
	c, err := config.Load(*path)
	if err != nil {
		return err
	}
	pw, generated, err := readPassword(stdin)
	if err != nil {
		return err
	}
	if err := password.Vet(pw, "", *id); err != nil {
		return fmt.Errorf("account reset-password: %w", err)
	}
	hash, err := password.Hash(pw, password.Default)
	if err != nil {
		return err
	}
	st, err := openStoreForCLI(ctx, c)
	if err != nil {
		return err
	}
	defer st.Close()
	var ended int
	err = st.Update(ctx, *id, func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.MasterHash = hash
		if err := tx.PutAccount(a); err != nil {
			return err
		}
		if ended, err = tx.DeleteSessions(""); err != nil {
			return err
		}
		return tx.Audit(policy.AuditEntry{Actor: "cli", Role: policy.RoleOperator, Action: "account.master_password_reset", Target: *id})
	})
	if err != nil {
		return fmt.Errorf("account reset-password %s: %w", *id, err)
	}
	fmt.Fprintf(stdout, "new master password set for %s; %d master sessions ended\n", *id, ended)
	if generated {
		fmt.Fprintf(stdout, "master password (shown once): %s\n", pw)
	}
	return nil
}

// openStoreForCLI opens the configured store, explaining the one failure
// an operator meets often.
func openStoreForCLI(ctx context.Context, c *config.Config) (policy.Store, error) {
	st, err := store.Open(ctx, c.Store.URL, store.Options{})
	if errors.Is(err, boltstore.ErrLocked) {
		return nil, fmt.Errorf("%w: stop gatekeeper serve first (the embedded store has one writer)", err)
	}
	return st, err
}
