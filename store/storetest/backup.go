package storetest

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/backup"
)

// BackupStore is a store that backs up and restores (store/backup).
type BackupStore interface {
	policy.Store
	backup.Exporter
	Restore(ctx context.Context, b *backup.Backup, force bool, then func(ctx context.Context, gen string) error) (dropped int, err error)
}

// RunBackup checks a backend's backup and restore: everything comes back
// (accounts, password hashes, rules with usage, users, sessions, the whole
// audit trail, the generation), a backup taken during a burst of writes
// holds every write acknowledged before it began, and a restore over a
// store holding data or another generation is refused. open returns a new,
// empty store each time it is called; several are open at once.
func RunBackup(t *testing.T, open func(t *testing.T) BackupStore) {
	t.Run("RoundTrip", func(t *testing.T) { BackupRoundTrip(t, open) })
	t.Run("DuringWrites", func(t *testing.T) { testBackupDuringWrites(t, open) })
	t.Run("Refusals", func(t *testing.T) { testRestoreRefusals(t, open) })
	t.Run("Then", func(t *testing.T) { testRestoreThen(t, open) })
	t.Run("Interrupted", func(t *testing.T) { testRestoreInterrupted(t, open) })
}

// testRestoreInterrupted: a restore whose hook fails leaves the store
// under the provisional generation, which no instance takes, and the same
// restore runs again over it.
func testRestoreInterrupted(t *testing.T, open func(t *testing.T) BackupStore) {
	ctx, b := t.Context(), smallBackup(t, open)
	dst := open(t)
	_, err := dst.Restore(ctx, b, false, func(context.Context, string) error { return errors.New("interrupted") })
	if err == nil || !strings.Contains(err.Error(), "run the same restore again") {
		t.Fatalf("restore with a failing hook: %v", err)
	}
	if d, err := dst.LoadPolicy(ctx); err != nil || d.Generation != backup.Provisional(b.Manifest.Generation) {
		t.Fatalf("after the interrupted restore: generation %q (%v); want the provisional one", d.Generation, err)
	}
	if _, err := dst.Restore(ctx, b, false, nil); err != nil {
		t.Fatalf("the same restore again: %v", err)
	}
	if d, _ := dst.LoadPolicy(ctx); d.Generation != b.Manifest.Generation || len(d.Accounts) != 1 {
		t.Fatalf("after the second restore: %+v", d)
	}
	// A backup of a store holding nothing is refused.
	if _, err := backup.WriteFile(ctx, filepath.Join(t.TempDir(), "empty"), open(t), nil, "test"); !errors.Is(err, backup.ErrNoData) {
		t.Fatalf("backup of an empty store: %v, want ErrNoData", err)
	}
}

// testRestoreThen: the hook runs with the data back, writes work in it,
// and the backup's generation comes only after it.
func testRestoreThen(t *testing.T, open func(t *testing.T) BackupStore) {
	ctx, b := t.Context(), smallBackup(t, open)
	dst := open(t)
	_, err := dst.Restore(ctx, b, false, func(ctx context.Context, gen string) error {
		d, err := dst.LoadPolicy(ctx)
		if err != nil {
			return err
		}
		if d.Generation != gen || len(d.Accounts) != 1 {
			t.Errorf("in the hook: generation %q (told %q), %d accounts", d.Generation, gen, len(d.Accounts))
		}
		return dst.Update(ctx, "10042", func(tx policy.Tx) error {
			_, err := tx.PutRule(rule("192.0.2.9/32", "forward"))
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := dst.LoadPolicy(ctx)
	if err != nil || d.Generation != b.Manifest.Generation || len(d.Accounts) != 1 || len(d.Accounts[0].Rules) != 1 {
		t.Fatalf("after the restore: %+v %v", d, err)
	}
}

// smallBackup is a backup of a new store with one account.
func smallBackup(t *testing.T, open func(t *testing.T) BackupStore) *backup.Backup {
	t.Helper()
	src := open(t)
	mustCreate(t, src, "10042")
	return takeBackup(t, src, nil)
}

// takeBackup writes src to a file and reads it back, verified.
func takeBackup(t *testing.T, src backup.Exporter, key []byte) *backup.Backup {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gk.backup")
	if _, err := backup.WriteFile(t.Context(), path, src, key, "test"); err != nil {
		t.Fatalf("backup: %v", err)
	}
	b, err := backup.ReadFile(path, key)
	if err != nil {
		t.Fatalf("read backup: %v", err)
	}
	return b
}

func restore(t *testing.T, dst BackupStore, b *backup.Backup) int {
	t.Helper()
	dropped, err := dst.Restore(t.Context(), b, false, nil)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	return dropped
}

// everything is what a store holds for the accounts it lists, for
// comparing two stores.
type everything struct {
	Generation string
	Accounts   []policy.Account
	Rules      map[string][]policy.Rule
	Users      map[string][]policy.User
	Devices    map[string][]policy.Device
	Audit      map[string][]policy.AuditEntry
	// Requests and Outbox came after the backup format, like devices.
	Requests map[string][]policy.AccessRequest
	Outbox   map[string][]policy.OutboxEntry
	// LastDays, the index of last days, came after it too.
	LastDays []policy.LastDay
	// ReviewsDue, the index of reviews, too.
	ReviewsDue []policy.ReviewDue
}

func readEverything(t *testing.T, s policy.Store) everything {
	t.Helper()
	ctx := t.Context()
	d, err := s.LoadPolicy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := everything{Generation: d.Generation, Rules: map[string][]policy.Rule{}, Users: map[string][]policy.User{}, Devices: map[string][]policy.Device{}, Audit: map[string][]policy.AuditEntry{},
		Requests: map[string][]policy.AccessRequest{}, Outbox: map[string][]policy.OutboxEntry{}}
	if e.Accounts, err = s.Accounts(ctx); err != nil {
		t.Fatal(err)
	}
	e.Accounts = normalize(e.Accounts).([]policy.Account)
	if e.LastDays, err = s.LastDays(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if e.ReviewsDue, err = s.ReviewsDue(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	for _, a := range e.Accounts {
		mustUpdate(t, s, a.ID, func(tx policy.Tx) error {
			rs, err := tx.Rules()
			if err != nil {
				return err
			}
			us, err := tx.Users()
			if err != nil {
				return err
			}
			ds, err := tx.Devices()
			if err != nil {
				return err
			}
			rq, err := tx.AccessRequests()
			e.Rules[a.ID], e.Users[a.ID], e.Devices[a.ID] = normalize(rs).([]policy.Rule), normalize(us).([]policy.User), normalize(ds).([]policy.Device)
			e.Requests[a.ID] = normalize(rq).([]policy.AccessRequest)
			return err
		})
		ob, err := s.OutboxEntries(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		e.Outbox[a.ID] = normalize(ob).([]policy.OutboxEntry)
		var all []policy.AuditEntry
		before := ""
		for {
			page, err := s.Audit(ctx, a.ID, policy.AuditQuery{Limit: 1000, Before: before})
			if err != nil {
				t.Fatal(err)
			}
			for i := range page {
				page[i].Time = page[i].Time.UTC()
			}
			all = append(all, page...)
			if len(page) < 1000 {
				break
			}
			before = page[len(page)-1].ID
		}
		e.Audit[a.ID] = all
	}
	return e
}

// BackupRoundTrip is RunBackup's first part alone, for a backend whose
// stores are expensive to open (a Redis Cluster each): a backup, plain and
// encrypted, restored into a new store, holds everything.
func BackupRoundTrip(t *testing.T, open func(t *testing.T) BackupStore) {
	ctx := t.Context()
	src := open(t)
	mustCreate(t, src, "10042", "10043")
	now := time.Now().UTC().Truncate(time.Second)
	grant := rule("203.0.113.7/32", "home")
	grant.Source, grant.CreatedBy, grant.ExpiresAt = policy.SourceUnblock, "anna", now.Add(time.Hour)
	ended := rule("203.0.113.99/32", "an ended lease")
	ended.Source, ended.CreatedBy, ended.ExpiresAt = policy.SourceUnblock, "anna", now.Add(-time.Minute)
	rs := addRules(t, src, "10042", rule("192.0.2.0/24", "office"), grant, rule("2001:db8::/48", "v6"), ended)
	if err := src.RecordUsage(ctx, []policy.Usage{{Account: "10042", Rule: rs[0].ID, Hits: 7, LastUsed: now}}); err != nil {
		t.Fatal(err)
	}
	live := policy.Session{TokenHash: "live-hash", Username: "anna", Role: policy.RoleUser, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	mustUpdate(t, src, "10042", func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.Mode = policy.ModeMonitor
		if err := tx.PutAccount(a); err != nil {
			return err
		}
		if err := tx.DeleteRule(rs[2].ID); err != nil { // an ID never to be reused
			return err
		}
		if err := tx.PutUser(policy.User{Username: "anna", Active: true, DesktopAccess: true, PasswordHash: "$argon2id$anna", CreatedAt: t0,
			AccessUntil: now.Add(30 * 24 * time.Hour)}); err != nil {
			return err
		}
		if err := tx.PutSession(live); err != nil {
			return err
		}
		// Devices came after the backup format: a generic format carries them.
		if err := tx.PutDevice(policy.Device{ID: "dev1", Account: "10042", Owner: "anna", Name: "studio pc", Platform: "windows",
			Status: policy.DeviceActive, PublicKey: make(ed25519.PublicKey, ed25519.PublicKeySize), EnrolledAt: now}); err != nil {
			return err
		}
		// So did access requests and the outbox: a pending request, and a
		// notification not yet delivered when the backup is taken.
		if err := tx.PutAccessRequest(policy.AccessRequest{ID: "req1", Account: "10042", User: "anna", IP: netip.MustParseAddr("198.51.100.9"),
			Status: policy.RequestPending, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}); err != nil {
			return err
		}
		a.Notifications = testNotifications
		if err := tx.PutAccount(a); err != nil {
			return err
		}
		if err := tx.Audit(policy.AuditEntry{Actor: "master", Role: policy.RoleMaster, Action: "firewall.mode"}); err != nil {
			return err
		}
		for i := range 30 {
			if err := tx.Audit(policy.AuditEntry{Actor: "anna", Role: policy.RoleUser, Action: "test", Target: fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	want := readEverything(t, src)
	if len(want.LastDays) != 1 {
		t.Fatalf("source last days: %+v", want.LastDays)
	}
	if len(want.ReviewsDue) != 2 {
		t.Fatalf("source reviews: %+v", want.ReviewsDue)
	}
	if len(want.Devices["10042"]) != 1 || len(want.Requests["10042"]) != 1 || len(want.Outbox["10042"]) != 1 {
		t.Fatalf("source devices %+v, requests %+v, outbox %+v", want.Devices["10042"], want.Requests["10042"], want.Outbox["10042"])
	}
	// The rule that had ended is left out of a restore.
	if len(want.Rules["10042"]) != 3 {
		t.Fatalf("source rules: %+v", want.Rules["10042"])
	}
	want.Rules["10042"] = slices.DeleteFunc(slices.Clone(want.Rules["10042"]), func(r policy.Rule) bool { return r.ID == rs[3].ID })

	for _, key := range [][]byte{nil, make([]byte, backup.KeySize)} {
		b := takeBackup(t, src, key)
		m := b.Manifest
		if m.Generation != want.Generation || m.Generation == "" || m.Records != int64(len(b.Records)) || len(m.Counts) == 0 {
			t.Fatalf("manifest %+v, store generation %q", m, want.Generation)
		}
		dst := open(t)
		if dropped := restore(t, dst, b); dropped != 1 {
			t.Errorf("restore dropped %d items, want 1 (the ended lease)", dropped)
		}
		got := readEverything(t, dst)
		equal(t, "restored store", got, want)
		ses, err := dst.Session(ctx, "10042", "live-hash")
		if err != nil {
			t.Fatalf("the live session did not come back: %v", err)
		}
		equal(t, "session", ses, normalize(policy.Session{TokenHash: "live-hash", Account: "10042", Username: "anna",
			Role: policy.RoleUser, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}))
		// The restored store goes on: a new rule takes a new ID.
		r := addRules(t, dst, "10042", rule("198.51.100.0/24", "after"))[0]
		if r.ID <= rs[3].ID {
			t.Errorf("a rule added after the restore took ID %d, at or below the dropped %d", r.ID, rs[3].ID)
		}
		mustUpdate(t, dst, "10043", func(tx policy.Tx) error { return tx.Audit(policy.AuditEntry{Action: "after"}) })
		if es, _ := dst.Audit(ctx, "10043", policy.AuditQuery{Limit: 1}); len(es) != 1 || es[0].Action != "after" {
			t.Errorf("an audit entry after the restore is not the newest: %+v", es)
		}
	}
}

// testBackupDuringWrites takes a backup while writers add rules: every
// rule acknowledged before the backup began is in it.
func testBackupDuringWrites(t *testing.T, open func(t *testing.T) BackupStore) {
	src := open(t)
	mustCreate(t, src, "w1", "w2", "w3")
	ctx, cancel := context.WithCancel(t.Context())
	var mu sync.Mutex
	acked := map[string][]policy.RuleID{}
	var wg sync.WaitGroup
	for _, acct := range []string{"w1", "w2", "w3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				var r policy.Rule
				err := src.Update(ctx, acct, func(tx policy.Tx) (err error) {
					r, err = tx.PutRule(rule(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()+"/32", "burst"))
					return err
				})
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("write: %v", err)
					}
					return
				}
				mu.Lock()
				acked[acct] = append(acked[acct], r.ID)
				mu.Unlock()
			}
		}()
	}
	waitWrites := func(n int) {
		for {
			mu.Lock()
			got := len(acked["w1"]) + len(acked["w2"]) + len(acked["w3"])
			mu.Unlock()
			if got >= n {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitWrites(100)
	mu.Lock()
	before := map[string][]policy.RuleID{}
	for k, v := range acked {
		before[k] = append([]policy.RuleID(nil), v...)
	}
	mu.Unlock()
	b := takeBackup(t, src, nil)
	waitWrites(len(before["w1"]) + len(before["w2"]) + len(before["w3"]) + 50) // writes went on meanwhile
	cancel()
	wg.Wait()

	dst := open(t)
	restore(t, dst, b)
	total := 0
	for acct, ids := range before {
		have := map[policy.RuleID]bool{}
		for _, r := range txRules(t, dst, acct) {
			have[r.ID] = true
		}
		for _, id := range ids {
			if !have[id] {
				t.Errorf("%s: rule %d, acknowledged before the backup began, is not in it", acct, id)
			}
		}
		total += len(ids)
	}
	t.Logf("%d writes acknowledged before the backup; %d rules in it", total, b.Manifest.Counts["rules"])
}

func testRestoreRefusals(t *testing.T, open func(t *testing.T) BackupStore) {
	ctx, b := t.Context(), smallBackup(t, open)

	// Over a store that holds data: refused, and the data is untouched.
	dst := open(t)
	mustCreate(t, dst, "other")
	before := readEverything(t, dst)
	_, err := dst.Restore(ctx, b, true, nil)
	wantErr(t, "restore over a populated store, even with force", err, backup.ErrPopulated)
	equal(t, "the populated store after the refused restore", readEverything(t, dst), before)

	// Over an empty store of another generation: only with force.
	other := open(t)
	if _, err := other.Reseed(ctx, &policy.Data{Generation: "another-generation"}, createAudit("none")); err != nil {
		t.Fatal(err)
	}
	_, err = other.Restore(ctx, b, false, nil)
	wantErr(t, "restore over another generation", err, backup.ErrOtherGeneration)
	if _, err := other.Restore(ctx, b, true, nil); err != nil {
		t.Fatalf("restore with force over an empty store of another generation: %v", err)
	}
	if d, _ := other.LoadPolicy(ctx); d.Generation != b.Manifest.Generation || len(d.Accounts) != 1 {
		t.Errorf("after the forced restore: generation %q, %d accounts", d.Generation, len(d.Accounts))
	}
}
