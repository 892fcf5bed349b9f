package boltstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

func open(t *testing.T, path string, opts boltstore.Options) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustCreate(t *testing.T, s policy.Store, id string) {
	t.Helper()
	if err := s.CreateAccount(context.Background(), policy.Account{ID: id, Mode: policy.ModeOn}, policy.AuditEntry{Action: "account.create"}); err != nil {
		t.Fatal(err)
	}
}

func putRule(s policy.Store, acct string, i int) (policy.RuleID, error) {
	var id policy.RuleID
	err := s.Update(context.Background(), acct, func(tx policy.Tx) error {
		r, err := tx.PutRule(policy.Rule{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32), Source: policy.SourceManual})
		id = r.ID
		return err
	})
	return id, err
}

func TestSecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gk.db")
	open(t, path, boltstore.Options{})
	_, err := boltstore.Open(path, boltstore.Options{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, boltstore.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

func TestFollowGaps(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "gk.db"), boltstore.Options{FeedKeep: 4})
	mustCreate(t, s, "a")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	d, err := s.LoadPolicy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 { // more than FeedKeep changes after the cursor
		if _, err := putRule(s, "a", i); err != nil {
			t.Fatal(err)
		}
	}
	noop := func([]policy.Change) { t.Error("changes delivered across a gap") }
	if err := s.Follow(ctx, d.Cursor, noop); !errors.Is(err, policy.ErrFeedGap) {
		t.Errorf("cursor older than the kept feed: %v, want ErrFeedGap", err)
	}
	if err := s.Follow(ctx, "an-earlier-process:3", noop); !errors.Is(err, policy.ErrFeedGap) {
		t.Errorf("cursor of another process: %v, want ErrFeedGap", err)
	}
}

// TestAcknowledgedWritesSurviveKill kills a writer process with SIGKILL in
// the middle of a burst of writes; every write it acknowledged must be in
// the file when it is opened again.
func TestAcknowledgedWritesSurviveKill(t *testing.T) {
	if os.Getenv("GK_BOLT_WRITER") != "" {
		writer(os.Getenv("GK_BOLT_WRITER"))
		return
	}
	path := filepath.Join(t.TempDir(), "gk.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcknowledgedWritesSurviveKill$")
	cmd.Env = append(os.Environ(), "GK_BOLT_WRITER="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[policy.RuleID]bool{}
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 200 {
		n, err := strconv.Atoi(sc.Text())
		if err != nil {
			continue
		}
		acked[policy.RuleID(n)] = true
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if len(acked) < 200 {
		t.Fatalf("writer acknowledged only %d writes before it stopped", len(acked))
	}
	s := open(t, path, boltstore.Options{})
	p, err := s.LoadAccountPolicy(context.Background(), "a")
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	have := map[policy.RuleID]bool{}
	for _, r := range p.Rules {
		have[r.ID] = true
	}
	for id := range acked {
		if !have[id] {
			t.Errorf("acknowledged rule %d lost", id)
		}
	}
	t.Logf("%d acknowledged writes, %d in the file after SIGKILL", len(acked), len(have))
}

// writer is the child process: it writes rules as fast as it can and prints
// each ID once Update has returned.
func writer(path string) {
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := s.CreateAccount(context.Background(), policy.Account{ID: "a", Mode: policy.ModeOn}, policy.AuditEntry{Action: "account.create"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for i := 0; i < 100000; i++ {
		id, err := putRule(s, "a", i)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(id)
	}
	os.Exit(0)
}
