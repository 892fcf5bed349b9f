package admin

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TestAccessReview: 91 days after the account was made, its review is
// overdue (the metric says 1); it lists the active users, devices and
// manual rules, with the unused ones marked; removing a stale user and a
// stale rule takes them away, the audit entry lists every decision, and
// the review is no longer overdue (the metric says 0).
func TestAccessReview(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	real := time.Now()
	var clock atomic.Int64
	clock.Store(real.Add(91 * 24 * time.Hour).UnixNano())
	f.svc.now = func() time.Time { return time.Unix(0, clock.Load()) }
	rule := f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Source: policy.SourceManual,
		Note: "old branch", CreatedBy: "master", CreatedAt: real})
	used := f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Source: policy.SourceManual,
		Note: "office", CreatedBy: "master", CreatedAt: real})
	if err := f.bolt.RecordUsage(t.Context(), []policy.Usage{{Account: acctA, Rule: used.ID,
		LastUsed: real.Add(90 * 24 * time.Hour), Hits: 1}}); err != nil {
		t.Fatal(err)
	}
	f.token(user) // alice logs in "today"
	mtok := f.token(master)
	if r := f.req("PUT", "/api/v1/accounts/10042/notifications", mtok,
		map[string]any{"emails": []any{map[string]string{"address": "owner@example.com"}}}); r.status != 200 {
		t.Fatalf("notifications: %d %s", r.status, r.body)
	}

	if err := f.svc.reviewPass(t.Context()); err != nil {
		t.Fatal(err)
	}
	if v := f.overdue(); v != 1 {
		t.Fatalf("overdue gauge %v, want 1", v)
	}
	// The masters are notified once per review, however many scans see it.
	if err := f.svc.reviewPass(t.Context()); err != nil {
		t.Fatal(err)
	}
	es, err := f.bolt.Audit(t.Context(), acctA, policy.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	overdue := 0
	for _, e := range es {
		if e.Action == policy.AuditReviewOverdue {
			overdue++
		}
	}
	if overdue != 1 {
		t.Fatalf("%d review.overdue entries, want 1", overdue)
	}
	outbox, err := f.bolt.OutboxEntries(t.Context(), acctA)
	if err != nil {
		t.Fatal(err)
	}
	notified := 0
	for _, o := range outbox {
		if o.Event == policy.EventAccessReviewOverdue {
			notified++
		}
	}
	if notified != 1 {
		t.Fatalf("%d access_review.overdue notifications queued, want 1", notified)
	}
	var rv AccessReview
	r := f.req("GET", "/api/v1/accounts/10042/review", mtok, nil)
	r.decode(t, &rv)
	if r.status != 200 || !rv.Overdue || rv.StaleAfter != "1440h0m0s" {
		t.Fatalf("review: %d %s", r.status, r.body)
	}
	stale := map[string]bool{}
	for _, it := range rv.Items {
		stale[it.Kind+":"+it.ID] = it.Stale
	}
	ruleID, usedID := strconv.Itoa(int(rule.ID)), strconv.Itoa(int(used.ID))
	want := map[string]bool{"user:alice": false, "user:bob": true, "user:carol": true, "rule:" + ruleID: true, "rule:" + usedID: false}
	if len(stale) != len(want) {
		t.Fatalf("items %+v", rv.Items)
	}
	for k, v := range want {
		if s, ok := stale[k]; !ok || s != v {
			t.Errorf("%s: stale %v (listed %v), want %v", k, s, ok, v)
		}
	}
	// A decision about something the review does not list changes nothing.
	n := f.auditCount(acctA)
	if r := f.req("POST", "/api/v1/accounts/10042/review", mtok, reviewBody{Remove: []ReviewRef{{Kind: "user", ID: "nobody"}}}); r.status != 409 {
		t.Fatalf("unknown item: %d %s", r.status, r.body)
	}
	if r := f.req("POST", "/api/v1/accounts/10042/review", mtok, `{"remove":[{"kind":"master","id":"x"}]}`); r.status != 400 {
		t.Fatalf("bad kind: %d %s", r.status, r.body)
	}
	if f.auditCount(acctA) != n {
		t.Fatal("a refused review was audited")
	}
	var res ReviewResult
	r = f.req("POST", "/api/v1/accounts/10042/review", mtok, reviewBody{Remove: []ReviewRef{{Kind: "user", ID: "bob"}, {Kind: "rule", ID: ruleID}}})
	r.decode(t, &res)
	if r.status != 200 || len(res.Removed) != 2 || len(res.Kept) != 3 || !res.NextDueAt.Equal(res.ReviewedAt.Add(policy.DefaultReviewEvery)) {
		t.Fatalf("finish: %d %s", r.status, r.body)
	}
	if u := f.user(acctA, "bob"); u.Active || u.Offboarding == nil {
		t.Fatalf("bob after the review: %+v", u)
	}
	for _, r := range f.rules(acctA) {
		if r.ID == rule.ID {
			t.Fatal("the stale rule survived the review")
		}
	}
	e := f.lastAudit(acctA)
	var rec ReviewResult
	if err := json.Unmarshal(e.After, &rec); err != nil || e.Action != "review.finish" || len(rec.Removed) != 2 || len(rec.Kept) != 3 {
		t.Fatalf("audit: %+v %s", e, e.After)
	}
	if v := f.overdue(); v != 0 {
		t.Fatalf("overdue gauge %v after the review, want 0", v)
	}
	f.req("GET", "/api/v1/accounts/10042/review", mtok, nil).decode(t, &rv)
	if rv.Overdue {
		t.Fatalf("still overdue: %+v", rv)
	}
	if err := f.svc.reviewPass(t.Context()); err != nil {
		t.Fatal(err)
	}
	if v := f.overdue(); v != 0 {
		t.Fatalf("overdue gauge %v after a scan, want 0", v)
	}
}

func (f *fixture) overdue() float64 {
	f.t.Helper()
	var m dto.Metric
	if err := f.svc.reviewOverdue.WithLabelValues(acctA).Write(&m); err != nil {
		f.t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// TestReviewSeriesOnlyWhenOverdue: a review scan of accounts whose reviews
// are not due makes no series of gatekeeper_access_review_overdue, so a
// fleet of many accounts exports only those that were overdue; once one
// was, it stays, and reads 0 after its review.
func TestReviewSeriesOnlyWhenOverdue(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	if err := f.svc.reviewPass(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := seriesOf(f.svc.reviewOverdue); n != 0 {
		t.Fatalf("%d series with no review overdue, want 0", n)
	}
	real := time.Now()
	f.svc.now = func() time.Time { return real.Add(91 * 24 * time.Hour) }
	if err := f.svc.reviewPass(t.Context()); err != nil {
		t.Fatal(err)
	}
	overdue := seriesOf(f.svc.reviewOverdue)
	if overdue == 0 || f.overdue() != 1 {
		t.Fatalf("after 91 days: %d series, %s's %v", overdue, acctA, f.overdue())
	}
	f.svc.now = func() time.Time { return real }
	if err := f.svc.reviewPass(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := seriesOf(f.svc.reviewOverdue); n != overdue || f.overdue() != 0 {
		t.Fatalf("no longer due: %d series (want %d), %s's %v", n, overdue, acctA, f.overdue())
	}
}

// seriesOf counts the series c exports.
func seriesOf(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}

// TestReviewPassReadsTheIndex: a review scan lists no account. It finds
// the overdue reviews in the store's index of reviews, reads an account
// only to note its overdue review (once: afterwards the index says it is
// noted), makes the series of an overdue review on an instance that did
// not note it, and sets 0 for a review finished on another instance.
// Counted, not timed.
func TestReviewPassReadsTheIndex(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx := t.Context()
	// acctB's review is due later than the others'.
	if err := f.bolt.Update(ctx, acctB, func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.Settings.ReviewEvery = policy.Duration(180 * 24 * time.Hour)
		return tx.PutAccount(a)
	}); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(91 * 24 * time.Hour)
	cs := &countingStore{Store: f.svc.store}
	f.svc.store = cs
	f.svc.now = func() time.Time { return later }
	pass := func(s *Service, what string, reads int64) {
		t.Helper()
		cs.lists.Store(0)
		cs.reads.Store(0)
		if err := s.reviewPass(ctx); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n := cs.lists.Load(); n != 0 {
			t.Errorf("%s: listed every account %d times, want 0", what, n)
		}
		if n := cs.reads.Load(); n != reads {
			t.Errorf("%s: read %d accounts, want %d", what, n, reads)
		}
	}
	pass(f.svc, "first scan", 2) // acctParent and acctA, to note them
	if v := f.overdue(); v != 1 {
		t.Fatalf("%s's overdue gauge %v, want 1", acctA, v)
	}
	if n := seriesOf(f.svc.reviewOverdue); n != 2 {
		t.Fatalf("%d series, want 2 (not %s's, not due)", n, acctB)
	}
	pass(f.svc, "second scan", 0)
	overdue := 0
	es, err := f.bolt.Audit(ctx, acctA, policy.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Action == policy.AuditReviewOverdue {
			overdue++
		}
	}
	if overdue != 1 {
		t.Fatalf("%d review.overdue entries, want 1", overdue)
	}

	// Another instance, which did not note them, exports them too.
	other, err := New(Options{Store: cs, PasswordParams: cheap})
	if err != nil {
		t.Fatal(err)
	}
	other.now = f.svc.now
	pass(other, "another instance", 0)
	if n := seriesOf(other.reviewOverdue); n != 2 {
		t.Fatalf("another instance: %d series, want 2", n)
	}

	// acctA's review is finished elsewhere: this instance's gauge follows.
	if err := f.bolt.Update(ctx, acctA, func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.ReviewedAt = later
		return tx.PutAccount(a)
	}); err != nil {
		t.Fatal(err)
	}
	pass(f.svc, "after the review", 0)
	if v := f.overdue(); v != 0 {
		t.Fatalf("%s's overdue gauge %v after its review elsewhere, want 0", acctA, v)
	}
}
