package web

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TestBrowserAccessReview: an account whose review is overdue shows the
// banner; the review page lists the stale rule and the stale user ticked;
// finishing it removes them (the gate denies the rule's address at once),
// the audit entry lists the decisions, and the banner is gone.
func TestBrowserAccessReview(t *testing.T) {
	f := newFixture(t, proxyTrust)
	engine := startEngine(t, f)
	now := time.Now()
	old := now.Add(-100 * 24 * time.Hour)
	err := f.bolt.Update(context.Background(), acctA, func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.CreatedAt = old
		if err := tx.PutAccount(a); err != nil {
			return err
		}
		u, err := tx.User("bob")
		if err != nil {
			return err
		}
		u.CreatedAt = old // and never logged in
		return tx.PutUser(u)
	})
	if err != nil {
		t.Fatal(err)
	}
	stale := f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("192.0.2.0/28"), Source: policy.SourceManual,
		Note: "Old branch office", CreatedBy: "master", CreatedAt: old})
	used := f.putRule(acctA, policy.Rule{Prefix: netip.MustParsePrefix("198.51.100.0/28"), Source: policy.SourceManual,
		Note: "Studio network", CreatedBy: "master", CreatedAt: old})
	if err := f.bolt.RecordUsage(context.Background(), []policy.Usage{{Account: acctA, Rule: used.ID,
		LastUsed: now.Add(-time.Hour), Hits: 12}}); err != nil {
		t.Fatal(err)
	}
	waitVerdict(t, engine, acctA, "192.0.2.5", policy.Allowed)

	b := newTab(t, f, "198.51.100.20")
	b.open("/login?as=master")
	b.typeInto("account", acctA)
	b.typeInto("password", pwA)
	b.press(`button[type="submit"].primary`)
	b.at("/accounts/10042/firewall")
	b.sees("An access review is due")
	b.press(`.banner-review a`)
	b.at("/accounts/10042/review")
	b.sees("Access review", "Old branch office", "Studio network", "unused, marked for removal")
	b.screenshot("access-review")
	// What is ticked: exactly the stale ones.
	checked, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll('input[name=remove]:checked')).map(e => e.value).sort()`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"rule:" + strconv.Itoa(int(stale.ID)), "user:bob"}
	if strings.Join(checked, " ") != strings.Join(want, " ") {
		t.Fatalf("ticked %v, want %v", checked, want)
	}
	b.press(`form.review button[type="submit"]`)
	b.at("/accounts/10042/review")
	b.sees("Review finished: 2 items removed, 3 items kept.")
	waitVerdict(t, engine, acctA, "192.0.2.5", policy.Denied)
	waitVerdict(t, engine, acctA, "198.51.100.5", policy.Allowed)
	if u := f.user(acctA, "bob"); u.Active {
		t.Fatalf("bob after the review: %+v", u)
	}
	if e := f.lastAudit(acctA); e.Action != "review.finish" {
		t.Fatalf("audit: %+v", e)
	}
	b.open("/accounts/10042/firewall")
	if txt := b.text("body"); strings.Contains(txt, "An access review is due") {
		t.Fatal("the banner stays after the review")
	}
}
