package admin

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

func (f *fixture) events(account string) []string {
	var out []string
	for _, e := range f.outbox(account) {
		out = append(out, e.Event)
	}
	return out
}

func (f *fixture) grantsOf(account, owner string) []policy.Rule {
	f.t.Helper()
	var out []policy.Rule
	err := f.bolt.View(context.Background(), account, func(tx policy.Tx) error {
		rs, err := tx.Rules()
		for _, r := range rs {
			if r.Source == policy.SourceUnblock && r.Owner == owner {
				out = append(out, r)
			}
		}
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

func TestAccessRequestApproved(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	alice, m := f.token(user), f.token(master)
	f.setNotifications(acctA, policy.Notifications{Emails: []policy.Email{{Address: "owner@example.com"}}})

	// unblock: self (the default): no requests, the unblock is at once.
	if r := f.req("POST", "/api/v1/accounts/10042/access-requests", alice, nil); r.status != 409 || r.errCode() != CodeApprovalNotRequired {
		t.Fatalf("a request with unblock: self: %d %s", r.status, r.body)
	}
	if r := f.req("PATCH", "/api/v1/accounts/10042/settings", m, map[string]string{"unblock": "approval"}); r.status != 200 {
		t.Fatalf("setting unblock: approval: %d %s", r.status, r.body)
	}
	// The unblock is now a request: no grant.
	r := f.req("POST", "/api/v1/accounts/10042/unblock", alice, map[string]string{"ttl": "2h"})
	var made struct{ Request AccessRequestView }
	r.decode(t, &made)
	if r.status != 202 || made.Request.Status != policy.RequestPending || made.Request.IP != netip.MustParseAddr("127.0.0.1") ||
		made.Request.User != "alice" || made.Request.TTL != policy.Duration(2*time.Hour) {
		t.Fatalf("unblock with approval: %d %s", r.status, r.body)
	}
	if g := f.grantsOf(acctA, "alice"); len(g) != 0 {
		t.Fatalf("a request made a grant: %+v", g)
	}
	// Asking again from the same address answers the same request.
	var again AccessRequestView
	r = f.req("POST", "/api/v1/accounts/10042/access-requests", alice, map[string]string{"reason": "again"})
	r.decode(t, &again)
	if r.status != 200 || again.ID != made.Request.ID {
		t.Fatalf("a second request: %d %s", r.status, r.body)
	}
	if ev := f.events(acctA); fmt.Sprint(ev) != "[access_request.created]" {
		t.Fatalf("outbox %v, want one access_request.created", ev)
	}

	var list struct{ Requests []AccessRequestView }
	f.req("GET", "/api/v1/accounts/10042/access-requests?status=pending", m, nil).decode(t, &list)
	if len(list.Requests) != 1 || list.Requests[0].ID != made.Request.ID {
		t.Fatalf("pending requests: %+v", list)
	}
	// An approval may shorten the time asked for, not lengthen it.
	path := "/api/v1/accounts/10042/access-requests/" + made.Request.ID
	if r := f.req("POST", path+"/approve", m, map[string]string{"ttl": "3h"}); r.status != 400 || r.errCode() != CodeInvalidTTL {
		t.Fatalf("a longer approval: %d %s", r.status, r.body)
	}
	var decided AccessRequestView
	r = f.req("POST", path+"/approve", m, map[string]string{"ttl": "30m"})
	r.decode(t, &decided)
	if r.status != 200 || decided.Status != policy.RequestApproved || decided.Rule == 0 || decided.DecidedBy != "master" {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
	g := f.grantsOf(acctA, "alice")
	if len(g) != 1 || g[0].Prefix != netip.MustParsePrefix("127.0.0.1/32") || g[0].ID != decided.Rule ||
		g[0].ExpiresAt.Sub(g[0].CreatedAt) != 30*time.Minute {
		t.Fatalf("grant after approval: %+v", g)
	}
	if ev := f.events(acctA); fmt.Sprint(ev) != "[access_request.created grant.created access_request.decided]" {
		t.Errorf("outbox %v", ev)
	}
	if r := f.req("POST", path+"/deny", m, nil); r.status != 409 || r.errCode() != CodeNotPending {
		t.Fatalf("deciding twice: %d %s", r.status, r.body)
	}
	f.req("GET", "/api/v1/me/access-requests", alice, nil).decode(t, &list)
	if len(list.Requests) != 1 || list.Requests[0].Status != policy.RequestApproved {
		t.Fatalf("alice's requests: %+v", list)
	}
}

func TestAccessRequestDeniedExpiredLimited(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	alice, m := f.token(user), f.token(master)
	f.setUnblock(acctA, policy.UnblockApproval)
	now := time.Now().UTC()
	f.putRequest(acctA, policy.AccessRequest{ID: "other", User: "alice", IP: netip.MustParseAddr("192.0.2.9"),
		Status: policy.RequestPending, CreatedAt: now, ExpiresAt: now.Add(policy.RequestLifetime)})
	f.putRequest(acctA, policy.AccessRequest{ID: "old", User: "alice", IP: netip.MustParseAddr("192.0.2.10"),
		Status: policy.RequestPending, CreatedAt: now.Add(-25 * time.Hour), ExpiresAt: now.Add(-time.Hour)})

	var denied AccessRequestView
	r := f.req("POST", "/api/v1/accounts/10042/access-requests/other/deny", m, map[string]string{"reason": "use the office network"})
	r.decode(t, &denied)
	if r.status != 200 || denied.Status != policy.RequestDenied || denied.DenyReason != "use the office network" {
		t.Fatalf("deny: %d %s", r.status, r.body)
	}
	if g := f.grantsOf(acctA, "alice"); len(g) != 0 {
		t.Fatalf("a denied request left a grant: %+v", g)
	}
	if r := f.req("POST", "/api/v1/accounts/10042/access-requests/old/approve", m, nil); r.status != 409 || r.errCode() != CodeNotPending {
		t.Fatalf("approving an expired request: %d %s", r.status, r.body)
	}
	var list struct{ Requests []AccessRequestView }
	f.req("GET", "/api/v1/me/access-requests", alice, nil).decode(t, &list)
	got := map[string]string{}
	for _, r := range list.Requests {
		got[r.ID] = r.Status + " " + r.DenyReason
	}
	if got["other"] != "denied use the office network" || got["old"] != "expired " {
		t.Fatalf("alice sees %v", got)
	}
	if r := f.req("POST", "/api/v1/accounts/10042/access-requests/nope/approve", m, nil); r.status != 404 {
		t.Fatalf("an unknown request: %d %s", r.status, r.body)
	}
	if r := f.req("POST", "/api/v1/accounts/10042/access-requests", alice, map[string]string{"reason": "line\nbreak"}); r.status != 400 {
		t.Fatalf("a two-line reason: %d %s", r.status, r.body)
	}

	// Five requests in 24 hours are the most one user makes.
	for i := range 4 {
		f.putRequest(acctA, policy.AccessRequest{ID: fmt.Sprintf("d%d", i), User: "alice", IP: netip.MustParseAddr("192.0.2.20"),
			Status: policy.RequestDenied, CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour)})
	}
	if r := f.req("POST", "/api/v1/accounts/10042/access-requests", alice, nil); r.status != 429 || r.errCode() != CodeRateLimited {
		t.Fatalf("a sixth request in 24h: %d %s", r.status, r.body)
	}
}

// TestLockoutNotified: the failed login that locks a login out is
// notified as login.locked_out, the ones before it are not.
func TestLockoutNotified(t *testing.T) {
	f := newFixture(t, fixtureOptions{limits: LoginLimits{PerIP: Limit{Burst: 1000}, PerLogin: Limit{Burst: 3}}})
	f.setNotifications(acctA, policy.Notifications{Emails: []policy.Email{{Address: "owner@example.com"}}})
	for i := 0; i < 20 && len(f.outbox(acctA)) == 0; i++ {
		f.req("POST", "/api/v1/login", "", LoginRequest{Account: acctA, Password: "wrong-password-" + fmt.Sprint(i)})
	}
	if ev := f.events(acctA); fmt.Sprint(ev) != "[login.locked_out]" {
		t.Fatalf("outbox %v, want one login.locked_out", ev)
	}
}
