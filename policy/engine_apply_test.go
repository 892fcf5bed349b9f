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

// batchMemSource loads many accounts in one call, as redisstore does, and
// counts the calls of each kind.
type batchMemSource struct {
	*memSource
	batches, singles int
	fail             error
	short            bool
}

func (b *batchMemSource) LoadAccountPolicy(ctx context.Context, id string) (AccountPolicy, error) {
	b.singles++
	return b.memSource.LoadAccountPolicy(ctx, id)
}

func (b *batchMemSource) LoadAccountPolicies(ctx context.Context, ids []string) ([]*AccountPolicy, error) {
	b.batches++
	if b.fail != nil {
		return nil, b.fail
	}
	out := make([]*AccountPolicy, len(ids))
	for i, id := range ids {
		p, err := b.memSource.LoadAccountPolicy(ctx, id)
		if err == nil {
			out[i] = &p
		}
	}
	if b.short {
		out = out[:len(out)-1]
	}
	return out, nil
}

// A source that loads a batch at once is asked once per feed batch, never
// account by account; if it fails, or answers for fewer accounts than
// asked, nothing of the batch is published.
func TestApplyBatchSource(t *testing.T) {
	ctx := context.Background()
	addr := netip.MustParseAddr("192.0.2.1")
	policyOf := func(id string) AccountPolicy {
		return AccountPolicy{Account: Account{ID: id, Mode: ModeOn}, Rules: []Rule{{ID: 1, Prefix: netip.MustParsePrefix("192.0.2.0/24")}}}
	}
	src := &batchMemSource{memSource: &memSource{accounts: map[string]AccountPolicy{}}}
	src.set(policyOf("gone"))
	e, err := NewEngine(Options{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var batch []Change
	for i := range 30 {
		id := fmt.Sprint("n", i)
		src.set(policyOf(id))
		batch = append(batch, Change{Account: id, Cursor: fmt.Sprint(i)})
	}
	delete(src.accounts, "gone")
	batch = append(batch, Change{Account: "gone", Cursor: "30"})

	for _, broken := range []func(){
		func() { src.fail = fmt.Errorf("%w: injected", ErrUnavailable) },
		func() { src.fail, src.short = nil, true },
	} {
		broken()
		if err := e.apply(ctx, batch); err == nil {
			t.Fatal("apply succeeded with a broken batch load")
		}
		if e.Check("n3", addr).Verdict != Denied || e.Check("gone", addr).Verdict != Allowed {
			t.Fatal("a batch whose load failed was published in part")
		}
	}
	src.short = false
	src.batches, src.singles = 0, 0
	if err := e.apply(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if src.batches != 1 || src.singles != 0 {
		t.Fatalf("a batch of %d accounts took %d batch loads and %d single loads, want 1 and 0", len(batch), src.batches, src.singles)
	}
	for i := range 30 {
		if v := e.Check(fmt.Sprint("n", i), addr).Verdict; v != Allowed {
			t.Fatalf("n%d: %v after the batch, want allowed", i, v)
		}
	}
	if v := e.Check("gone", addr).Verdict; v != Denied {
		t.Fatalf("a removed account: %v, want denied", v)
	}
}

// A batch whose changes came Loaded (the source read the policies with
// them) is published as loaded, gone accounts removed, without asking the
// source; a batch where any change lacks it is loaded whole.
func TestApplyPreloaded(t *testing.T) {
	ctx := context.Background()
	addr := netip.MustParseAddr("192.0.2.1")
	policyOf := func(id, prefix string) AccountPolicy {
		return AccountPolicy{Account: Account{ID: id, Mode: ModeOn}, Rules: []Rule{{ID: 1, Prefix: netip.MustParsePrefix(prefix)}}}
	}
	mem := &memSource{accounts: map[string]AccountPolicy{}}
	mem.set(policyOf("a", "198.51.100.0/24"))
	mem.set(policyOf("gone", "192.0.2.0/24"))
	src := &batchMemSource{memSource: mem}
	e, err := NewEngine(Options{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	carried := policyOf("a", "192.0.2.0/24") // not the source's: it must come from the change
	batch := []Change{
		{Account: "a", Cursor: "1", Loaded: true, Policy: &carried},
		{Account: "gone", Cursor: "2", Loaded: true},
		{Account: "a", Cursor: "3", Loaded: true, Policy: &carried},
	}
	if err := e.apply(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if src.batches+src.singles != 0 {
		t.Fatalf("the source was asked %d times for policies the changes carried", src.batches+src.singles)
	}
	if e.Check("a", addr).Verdict != Allowed || e.Check("gone", addr).Verdict != Denied || e.Table().cursor() != "3" {
		t.Fatal("the carried policies are not what is enforced")
	}

	// One change without: the source's policies, for every account.
	batch = []Change{{Account: "a", Cursor: "4", Loaded: true, Policy: &carried}, {Account: "gone", Cursor: "5"}}
	if err := e.apply(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if src.batches != 1 {
		t.Fatalf("a mixed batch was loaded %d times, want once", src.batches)
	}
	if e.Check("a", addr).Verdict != Denied || e.Check("gone", addr).Verdict != Allowed {
		t.Fatal("a mixed batch enforced a carried policy")
	}
}
