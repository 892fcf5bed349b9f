package e2e

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// TestReviewRemovesAtTheGate: an account whose access review is overdue
// holds a manual rule and an employee nobody used for months. The ops
// endpoint says the review is overdue; the master removes both in the
// review, and that takes effect on the gate: a client from the rule's
// address is refused, the employee's session has ended and their login
// and unblock no longer work, their address is refused too; the review's
// audit entry lists the decisions; the overdue gauge is back to 0.
//
// Months cannot pass in a test: with the instance stopped, the account's
// creation and the rule's and the employee's last use are moved back in
// the store, as months of disuse would leave them.
func TestReviewRemovesAtTheGate(t *testing.T) {
	rs := redistest.Start(t)
	in := startInstance(t, rs.URL(), echoServer(t))
	m := createAccount(t, in.admin, "acct", "studio-master-password")
	const (
		ruleIP = "127.0.0.23" // the stale manual rule's address
		userIP = "127.0.0.24" // the stale employee's
		keepIP = "127.0.0.25" // a rule that was used, kept
	)
	u := employee(t, m, in.admin, userIP, "old.hand", map[string]any{})
	code, stale, _ := m.addRule("acct", ruleIP+"/32")
	if code != http.StatusCreated {
		t.Fatalf("add the stale rule: %d", code)
	}
	if code, _, _ := m.addRule("acct", keepIP+"/32"); code != http.StatusCreated {
		t.Fatalf("add the kept rule: %d", code)
	}
	// (The stale rule's address is not used yet: a use would count as
	// recent in the review.)
	for _, ip := range []string{userIP, keepIP} {
		waitFor(t, 10*time.Second, "the gate to let "+ip+" through", func() bool { return through(ip, in.db) })
	}
	// (Absent, -1, until the first scan that sees the account; never 1.)
	if v := in.metricValue(`gatekeeper_access_review_overdue{account="acct"}`); v == 1 {
		t.Fatalf("a new account's review is overdue: %v", v)
	}

	if err := in.stop(40 * time.Second); err != nil {
		t.Logf("stop: %v", err)
	}
	st, err := redisstore.Open(t.Context(), rs.URL(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	long := time.Now().UTC().Add(-120 * 24 * time.Hour) // past review_every (90 days) and stale_after (60)
	err = st.Update(t.Context(), "acct", func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.CreatedAt = long
		if err := tx.PutAccount(a); err != nil {
			return err
		}
		rules, err := tx.Rules()
		if err != nil {
			return err
		}
		for _, r := range rules {
			if r.ID == policy.RuleID(stale.ID) { // added long ago, never used since
				r.CreatedAt = long
				if _, err := tx.PutRule(r); err != nil {
					return err
				}
			}
		}
		usr, err := tx.User("old.hand")
		if err != nil {
			return err
		}
		usr.CreatedAt, usr.LastLoginAt = long, long
		return tx.PutUser(usr)
	})
	if err != nil {
		t.Fatal(err)
	}
	in.spawn()
	in.waitReady()
	overdue := func() float64 { return in.metricValue(`gatekeeper_access_review_overdue{account="acct"}`) }
	waitFor(t, 20*time.Second, "the overdue gauge to say 1", func() bool { return overdue() == 1 })

	// The review lists both, marked for removal, and keeps the used rule.
	m = login(t, in.admin, "acct", "studio-master-password")
	code, b, _ := m.call("GET", "/api/v1/accounts/acct/review", nil)
	var rv struct {
		Overdue bool `json:"overdue"`
		Items   []struct {
			Kind, ID string
			Stale    bool
		} `json:"items"`
	}
	if code != http.StatusOK || json.Unmarshal(b, &rv) != nil || !rv.Overdue {
		t.Fatalf("review: %d %s", code, b)
	}
	marked := map[string]bool{}
	for _, it := range rv.Items {
		marked[it.Kind+":"+it.ID] = it.Stale
	}
	ruleRef := "rule:" + strconv.FormatUint(stale.ID, 10)
	if !marked[ruleRef] || !marked["user:old.hand"] || len(rv.Items) != 3 {
		t.Fatalf("review items %s", b)
	}
	if !through(ruleIP, in.db) {
		t.Fatal("the stale rule does not let its address through before the review")
	}

	remove := []map[string]string{{"kind": "rule", "id": strconv.FormatUint(stale.ID, 10)}, {"kind": "user", "id": "old.hand"}}
	if code, b, _ := m.call("POST", "/api/v1/accounts/acct/review", map[string]any{"remove": remove}); code != http.StatusOK {
		t.Fatalf("finish the review: %d %s", code, b)
	}
	waitFor(t, 10*time.Second, "the gate to refuse the removed rule's and user's addresses", func() bool {
		return !through(ruleIP, in.db) && !through(userIP, in.db)
	})
	if !through(keepIP, in.db) {
		t.Fatal("the kept rule no longer lets its address through")
	}
	if code, _, _ := u.call("GET", "/api/v1/me", nil); code != http.StatusUnauthorized {
		t.Errorf("the removed employee's session answers %d", code)
	}
	if code, b, _ := newAdminFrom(userIP, in.admin, "").call("POST", "/api/v1/login",
		map[string]string{"account": "acct", "username": "old.hand", "password": "my-own-password-2026"}); code == http.StatusOK {
		t.Errorf("the removed employee can still log in: %s", b)
	}
	if code, _, _ := u.call("POST", "/api/v1/accounts/acct/unblock", nil); code != http.StatusUnauthorized {
		t.Errorf("the removed employee's unblock answers %d", code)
	}

	// The audit entry lists the decisions.
	code, b, _ = m.call("GET", "/api/v1/accounts/acct/audit?limit=20", nil)
	var page struct {
		Entries []struct {
			Action string
			After  json.RawMessage
		} `json:"entries"`
	}
	if code != http.StatusOK || json.Unmarshal(b, &page) != nil {
		t.Fatalf("audit: %d %s", code, b)
	}
	found := false
	for _, e := range page.Entries {
		if e.Action != "review.finish" {
			continue
		}
		found = true
		var res struct{ Kept, Removed []struct{ Kind, ID string } }
		if err := json.Unmarshal(e.After, &res); err != nil || len(res.Removed) != 2 || len(res.Kept) != 1 ||
			!strings.Contains(string(e.After), `"id":"old.hand"`) || !strings.Contains(string(e.After), `"id":"`+strconv.FormatUint(stale.ID, 10)+`"`) {
			t.Fatalf("review.finish entry: %s", e.After)
		}
	}
	if !found {
		t.Fatalf("no review.finish entry in %s", b)
	}
	waitFor(t, 10*time.Second, "the overdue gauge to say 0", func() bool { return overdue() == 0 })
}
