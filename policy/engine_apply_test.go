package policy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// failingSource fails to load one account.
type failingSource struct {
	*memSource
	bad string
}

func (f failingSource) LoadAccountPolicy(ctx context.Context, id string) (AccountPolicy, error) {
	if id == f.bad {
		return AccountPolicy{}, fmt.Errorf("%w: injected", ErrUnavailable)
	}
	return f.memSource.LoadAccountPolicy(ctx, id)
}

// A batch naming many accounts, some twice, some gone, is loaded (in
// parallel) and published as one change that names each account once;
// if one account cannot be loaded, nothing of the batch is published.
func TestApplyBatch(t *testing.T) {
	ctx := context.Background()
	addr := netip.MustParseAddr("192.0.2.1")
	policyOf := func(id string) AccountPolicy {
		return AccountPolicy{Account: Account{ID: id, Mode: ModeOn}, Rules: []Rule{{ID: 1, Prefix: netip.MustParsePrefix("192.0.2.0/24")}}}
	}
	src := &memSource{accounts: map[string]AccountPolicy{}}
	for i := range 40 {
		src.set(policyOf(fmt.Sprint("a", i)))
	}
	e, err := NewEngine(Options{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var heard [][]string
	e.OnChange(func(_ *Table, accts []string) { heard = append(heard, accts) })

	for i := range 40 {
		src.set(policyOf(fmt.Sprint("b", i)))
	}
	delete(src.accounts, "a0")
	var batch []Change
	var want []string
	for i := range 40 {
		batch = append(batch, Change{Account: fmt.Sprint("b", i), Cursor: fmt.Sprint(i)}, Change{Account: fmt.Sprint("b", i), Cursor: fmt.Sprint(i)})
		want = append(want, fmt.Sprint("b", i))
	}
	batch = append(batch, Change{Account: "a0", Cursor: "41"})
	want = append(want, "a0")

	bad := failingSource{memSource: src, bad: "b7"}
	e.opts.Source = bad
	if err := e.apply(ctx, batch); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("apply with one account failing: %v", err)
	}
	if len(heard) != 0 || e.Check("b3", addr).Verdict != Denied || e.Check("a0", addr).Verdict != Allowed {
		t.Fatal("a batch that failed was published in part")
	}

	e.opts.Source = src
	if err := e.apply(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if len(heard) != 1 {
		t.Fatalf("listeners heard %d changes, want 1", len(heard))
	}
	got := slices.Sorted(slices.Values(heard[0]))
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("listeners heard %v, want %v", got, want)
	}
	if e.Check("b39", addr).Verdict != Allowed || e.Check("a0", addr).Verdict != Denied || e.Check("a1", addr).Verdict != Allowed {
		t.Error("the batch is not enforced")
	}
	if e.Table().Accounts() != 79 || e.Table().cursor() != "41" {
		t.Errorf("%d accounts, cursor %q", e.Table().Accounts(), e.Table().cursor())
	}
}

// Snapshot files are written at most once per interval, and less often
// when a write takes long, so that writing takes at most 1/snapshotDuty
// of the time.
func TestSnapshotPause(t *testing.T) {
	for _, tc := range []struct{ interval, took, want time.Duration }{
		{2 * time.Second, 0, 2 * time.Second},
		{2 * time.Second, 10 * time.Millisecond, 2 * time.Second},
		{2 * time.Second, 500 * time.Millisecond, 10 * time.Second},
	} {
		if got := snapshotPause(tc.interval, tc.took); got != tc.want {
			t.Errorf("snapshotPause(%v, %v) = %v, want %v", tc.interval, tc.took, got, tc.want)
		}
	}
}
