package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// TestAuditUserFilter: ?user= keeps what a person did and what was done to
// them, pages chain, and a search through a long trail is bounded.
func TestAuditUserFilter(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	m := f.token(master)
	alice := f.token(user)
	f.req("POST", "/api/v1/accounts/10042/firewall/rules", m, ruleBody{CIDR: "198.51.100.1"})
	f.req("POST", "/api/v1/accounts/10042/unblock", alice, nil)
	f.req("PATCH", "/api/v1/accounts/10042/users/bob", m, patchBody{DesktopAccess: new(true)})
	f.req("PATCH", "/api/v1/accounts/10042/users/alice", m, patchBody{MustResetPassword: new(true)})

	var got []string
	before := ""
	for range 10 {
		var p AuditPage
		r := f.req("GET", "/api/v1/accounts/10042/audit?limit=2&user=ALICE&before="+before, m, nil)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		r.decode(t, &p)
		for _, e := range p.Entries {
			got = append(got, e.Actor+" "+e.Action)
		}
		if p.Next == "" {
			break
		}
		before = p.Next
	}
	want := "master user.update,alice grant.create,alice login.success"
	if strings.Join(got, ",") != want {
		t.Fatalf("alice's entries: %q, want %q", strings.Join(got, ","), want)
	}
	var p AuditPage
	f.req("GET", "/api/v1/accounts/10042/audit?user=master", m, nil).decode(t, &p)
	if len(p.Entries) != 4 { // login, rule, two patches
		t.Fatalf("master's entries: %+v", p.Entries)
	}
	if r := f.req("GET", "/api/v1/accounts/10042/audit?user="+strings.Repeat("x", 81), m, nil); r.status != 400 {
		t.Fatalf("long user: %d", r.status)
	}

	// A filter that matches nothing in a long trail stops after 5000
	// entries read and says where to go on.
	err := f.bolt.Update(context.Background(), acctA, func(tx policy.Tx) error {
		for i := range auditMaxScan + 100 {
			if err := tx.Audit(policy.AuditEntry{Actor: "master", Role: policy.RoleMaster, Action: "test",
				Target: fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p = AuditPage{}
	f.req("GET", "/api/v1/accounts/10042/audit?user=alice", m, nil).decode(t, &p)
	if len(p.Entries) != 0 || p.Next == "" {
		t.Fatalf("bounded search: %d entries, next %q", len(p.Entries), p.Next)
	}
	p2 := AuditPage{}
	f.req("GET", "/api/v1/accounts/10042/audit?user=alice&before="+p.Next, m, nil).decode(t, &p2)
	if len(p2.Entries) != 3 || p2.Next != "" {
		t.Fatalf("next page: %d entries, next %q", len(p2.Entries), p2.Next)
	}
}

// TestManagedAccounts: a master sees their account and its children; the
// list of children is reused for a minute; nobody else may ask.
func TestManagedAccounts(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx := context.Background()
	var now time.Time
	f.svc.now = func() time.Time { return now }
	now = time.Now()
	actor := func(identity int) Actor {
		t.Helper()
		a, err := f.svc.Authenticate(ctx, f.token(identity), netip.MustParseAddr("127.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	ids := func(a Actor) string {
		t.Helper()
		as, err := f.svc.ManagedAccounts(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, v := range as {
			s = append(s, v.ID)
		}
		return strings.Join(s, ",")
	}
	parent, child := actor(parentMaster), actor(master)
	if got := ids(parent); got != "10000,10042" {
		t.Fatalf("parent's accounts: %s", got)
	}
	if got := ids(child); got != "10042" {
		t.Fatalf("child's accounts: %s", got)
	}
	if _, err := CreateAccount(ctx, f.bolt, NewAccount{ID: "10044", Name: "Smith Annex", Parent: acctParent,
		Password: "annex-master-pw-1"}, cheap, now); err != nil {
		t.Fatal(err)
	}
	if got := ids(parent); got != "10000,10042" {
		t.Fatalf("the index was not reused: %s", got)
	}
	now = now.Add(childrenTTL)
	if got := ids(parent); got != "10000,10042,10044" {
		t.Fatalf("after a minute: %s", got)
	}
	for _, id := range []int{user, operator} {
		a := Operator(netip.MustParseAddr("127.0.0.1"))
		if id == user {
			a = actor(user)
		}
		if _, err := f.svc.ManagedAccounts(ctx, a); AsError(err).Code != CodeForbidden {
			t.Errorf("%s: %v", identityNames[id], err)
		}
	}
	if v, err := f.svc.Account(ctx, parent, acctA); err != nil || v.Name != "Smith Studio" || v.Parent != acctParent {
		t.Fatalf("parent reads child: %+v %v", v, err)
	}
	if _, err := f.svc.Account(ctx, child, acctParent); AsError(err).Code != CodeNotFound {
		t.Fatalf("child reads parent: %v", err)
	}
}

// TestPagesOption: with Pages set, everything outside /api/ goes to it and
// the API stays as it was.
func TestPagesOption(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	pages := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("page " + r.URL.Path)) })
	srv, err := NewServer(ServerOptions{Service: f.svc, Pages: pages})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/":               "page /",
		"/login":          "page /login",
		"/apis":           "page /apis",
		"/api":            `"not_found"`,
		"/api/v1/me":      `"unauthorized"`,
		"/api/v1/nothing": `"not_found"`,
	} {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "https://gk"+path, nil))
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %d %s, want %s", path, rec.Code, rec.Body, want)
		}
	}
}
