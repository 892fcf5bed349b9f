package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/config"
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
	st, err := openStore(ctx, c, nil, nil)
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
// sessions: for a forgotten password, or an account restored by reseed. It
// acts as the operator through admin.Service, like every other write.
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
	st, err := openStore(ctx, c, nil, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	svc, err := admin.New(admin.Options{Store: st, StoreTimeout: c.Store.Timeout})
	if err != nil {
		return err
	}
	res, err := svc.ResetMasterPassword(ctx, admin.Operator(netip.Addr{}), *id, pw)
	if err != nil {
		return fmt.Errorf("account reset-password %s: %w", *id, err)
	}
	fmt.Fprintf(stdout, "new master password set for %s; %d master sessions ended\n", *id, res.SessionsEnded)
	if generated {
		fmt.Fprintf(stdout, "master password (shown once): %s\n", pw)
	}
	return nil
}

// openStore opens the configured store for any command. It hands the
// store this machine's snapshot, so that a store that lost its data is
// never given a new generation (policy.Lineage), whichever command opened
// it, and explains the one failure an operator meets often.
func openStore(ctx context.Context, c *config.Config, log *zap.Logger, reg prometheus.Registerer) (policy.Store, error) {
	st, err := store.Open(ctx, c.Store.URL, store.Options{Logger: log, Registerer: reg, Snapshot: c.Store.Snapshot})
	if errors.Is(err, boltstore.ErrLocked) {
		return nil, fmt.Errorf("%w: stop gatekeeper serve first (the embedded store has one writer)", err)
	}
	return st, err
}
