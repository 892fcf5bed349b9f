package policy

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

var returnTricks = []string{
	"", "reports", "//evil.example", "//evil.example/x", "/\\evil.example", "\\\\evil.example", "/%2F%2Fevil.example",
	"/%2fevil", "/a%5cb", "/%5C%5Cevil", "https://evil.example/", "javascript:alert(1)", "JAVASCRIPT:alert(1)",
	"/a\r\nSet-Cookie: x=1", "/a\nb", "/a%0d%0aSet-Cookie:x", "/a%00", "/a b", "/a\tb", "/\u00e9", "/%zz", "/%2",
	"/.gatekeeper/callback?token=x", "/.gatekeeper", "///evil.example", "/\x7f",
}

var returnGood = []string{"/", "/reports", "/reports?q=1&r=%20x", "/a/b/c.html#top", "/%C3%A9t%C3%A9", "/.well-known/x"}

func TestValidReturnPath(t *testing.T) {
	for _, s := range returnTricks {
		if ValidReturnPath(s) == nil {
			t.Errorf("ValidReturnPath(%q) accepted it", s)
		}
	}
	for _, s := range returnGood {
		if err := ValidReturnPath(s); err != nil {
			t.Errorf("ValidReturnPath(%q): %v", s, err)
		}
	}
	if ValidReturnPath("/"+strings.Repeat("a", MaxReturnPath)) == nil {
		t.Error("an overlong path was accepted")
	}
}

// FuzzReturnPath: whatever ValidReturnPath accepts stays on the host it
// is resolved against, however it is decoded once more.
func FuzzReturnPath(f *testing.F) {
	for _, s := range append(returnTricks, returnGood...) {
		f.Add(s)
	}
	base, _ := url.Parse("https://app.test/base/")
	f.Fuzz(func(t *testing.T, s string) {
		if ValidReturnPath(s) != nil {
			return
		}
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("accepted %q that does not parse: %v", s, err)
		}
		if r := base.ResolveReference(u); r.Host != "app.test" || r.Scheme != "https" {
			t.Fatalf("accepted %q, which leads to %s", s, r)
		}
		dec, err := url.PathUnescape(s)
		if err != nil {
			t.Fatalf("accepted %q, which does not decode: %v", s, err)
		}
		if strings.HasPrefix(dec, "//") || strings.ContainsAny(dec, "\\\r\n\x00") {
			t.Fatalf("accepted %q, which decodes to %q", s, dec)
		}
	})
}

func TestNextWebEpoch(t *testing.T) {
	on := User{Active: true, WebAccess: true, Web: WebState{Epoch: 4}}
	off := on
	off.WebAccess = false
	if e := NextWebEpoch(on, off); e != 5 {
		t.Errorf("web access taken away: epoch %d, want 5", e)
	}
	if e := NextWebEpoch(off, on); e != 4 {
		t.Errorf("web access given: epoch %d, want 4", e)
	}
	stale := on
	stale.Web.Epoch = 2
	if e := NextWebEpoch(on, stale); e != 4 {
		t.Errorf("a lower epoch written: %d, want 4", e)
	}
	deact := on
	deact.Active = false
	if e := NextWebEpoch(on, deact); e != 5 {
		t.Errorf("deactivated: epoch %d, want 5", e)
	}
}

// TestTableWebEpoch: the table lets in who the store says, at their
// epoch; a policy that does not say (a snapshot) lets nobody in, the
// master neither.
func TestTableWebEpoch(t *testing.T) {
	now := time.Now()
	d := &Data{Accounts: []AccountPolicy{
		{Account: Account{ID: "a", Mode: ModeOn, MasterWeb: WebState{Epoch: 2}}, Web: []WebUser{{Username: "alice", Epoch: 3}}, WebKnown: true},
		{Account: Account{ID: "snap", Mode: ModeOn}},
	}}
	tb := newTable(d, now)
	if e, ok := tb.WebEpoch("a", "alice"); !ok || e != 3 {
		t.Errorf("alice: %d %v", e, ok)
	}
	if e, ok := tb.WebEpoch("a", ""); !ok || e != 2 {
		t.Errorf("master: %d %v", e, ok)
	}
	if _, ok := tb.WebEpoch("a", "bob"); ok {
		t.Error("bob, not listed, let in")
	}
	if _, ok := tb.WebEpoch("snap", ""); ok {
		t.Error("the master of an account whose web state is unknown let in")
	}
	if _, ok := tb.WebEpoch("none", ""); ok {
		t.Error("an unknown account let in")
	}
	// A recompile keeps the web state, and follows its changes.
	p := d.Accounts[0]
	p.Web = []WebUser{{Username: "alice", Epoch: 4}}
	at := recompile(tb.account("a"), p, now)
	if e := at.web().users["alice"]; e != 4 {
		t.Errorf("after recompile alice's epoch is %d, want 4", e)
	}
	if at2 := recompile(at, p, now); at2 != at {
		t.Error("recompiling an unchanged policy made a new table")
	}
}
