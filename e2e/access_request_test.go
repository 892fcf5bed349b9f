package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// TestAccessRequestApprovedInBrowser is issue 15's story: on an account
// with unblock: approval, an employee at 127.0.0.7 asks for access, the
// master approves in Chromium, and 127.0.0.7 passes the gate; a request
// from 127.0.0.8 the master denies leaves no grant.
func TestAccessRequestApprovedInBrowser(t *testing.T) {
	const approved, denied, alicePW, masterPW = "127.0.0.7", "127.0.0.8", "alice-password-123", "studio-master-password"
	dir := prepareDir(t)
	st, err := boltstore.Open(filepath.Join(dir, "data", "gatekeeper.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err = admin.CreateAccount(ctx, st, admin.NewAccount{ID: "10042", Name: "Smith Studio",
		Password: masterPW, Actor: "e2e", Role: "operator"}, password.Default, time.Now()); err != nil {
		t.Fatal(err)
	}
	hash, _ := password.Hash(alicePW, password.Default)
	err = st.Update(ctx, "10042", func(tx policy.Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.Settings.Unblock = policy.UnblockApproval
		if err := tx.PutAccount(a); err != nil {
			return err
		}
		return tx.PutUser(policy.User{Username: "alice", Active: true, DesktopAccess: true, PasswordHash: hash, CreatedAt: time.Now()})
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	gate, adminAddr := freeAddr(t), freeAddr(t)
	startGatekeeper(t, dir, fmt.Sprintf(`store: {url: "file:./data/gatekeeper.db", snapshot: ./data/policy.snapshot}
tls: {self_signed: true}
admin: {addr: "%s", operator_token_file: ./data/operator.token}
ops: {addr: "{{ops}}"}
log: {level: info, format: json}
listeners:
  - {name: desktop, addr: "%s", mode: tcp, routes: [{account: "10042", upstream: "%s"}]}
`, adminAddr, gate, echoServer(t)))
	passes := func(from string) bool {
		c, err := dialFrom(from, gate)
		if err != nil {
			return false
		}
		defer c.Close()
		return roundTrip(c, "hello") == nil
	}

	// Alice asks from two addresses, through the API.
	ask := func(from, path string, body any) string {
		t.Helper()
		code, b, _ := newAdminFrom(from, adminAddr, "").call("POST", "/api/v1/login",
			map[string]string{"account": "10042", "username": "alice", "password": alicePW})
		var login struct{ Token string }
		if code != http.StatusOK || json.Unmarshal(b, &login) != nil {
			t.Fatalf("alice's login from %s: %d %s", from, code, b)
		}
		code, b, _ = newAdminFrom(from, adminAddr, login.Token).call("POST", path, body)
		var res struct {
			ID      string
			Request struct{ ID, Status string }
		}
		json.Unmarshal(b, &res)
		if res.ID == "" {
			res.ID = res.Request.ID
		}
		if code >= 300 || res.ID == "" {
			t.Fatalf("alice's request from %s: %d %s", from, code, b)
		}
		return res.ID
	}
	// An unblock needs approval: it answers with a request, not a grant.
	idOK := ask(approved, "/api/v1/accounts/10042/unblock", nil)
	idNo := ask(denied, "/api/v1/accounts/10042/access-requests", map[string]string{"reason": "on the train"})
	if passes(approved) || passes(denied) {
		t.Fatal("an address passes before any approval")
	}

	tab := browser.Tab(t)
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tab, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	body := func() string {
		t.Helper()
		return pageText(t, tab)
	}
	submit := func(what, sel string) {
		t.Helper()
		if _, err := chromedp.RunResponse(tab, chromedp.Click(chromedp.CSS(sel))); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	run("open the login page", chromedp.Navigate("https://"+adminAddr+"/login?as=master"),
		chromedp.SendKeys(chromedp.ID("account"), "10042"),
		chromedp.SendKeys(chromedp.ID("password"), masterPW))
	submit("log in", `button[type="submit"].primary`)
	run("open the inbox", chromedp.Navigate("https://"+adminAddr+"/accounts/10042/access-requests"))
	if b := body(); !strings.Contains(b, approved) || !strings.Contains(b, "on the train") {
		t.Fatalf("the inbox lacks the requests:\n%s", b)
	}
	submit("approve", `form[action="/accounts/10042/access-requests/`+idOK+`/approve"] button`)
	if b := body(); !strings.Contains(b, "alice may now connect from "+approved) {
		t.Fatalf("no confirmation of the approval:\n%s", b)
	}
	run("give a reason", chromedp.SendKeys(chromedp.ID("reason-"+idNo), "use the office network"))
	submit("deny", `form[action="/accounts/10042/access-requests/`+idNo+`/deny"] button`)
	if b := body(); !strings.Contains(b, "request was denied") {
		t.Fatalf("no confirmation of the denial:\n%s", b)
	}

	waitFor(t, 30*time.Second, approved+" through the gate", func() bool { return passes(approved) })
	if passes(denied) {
		t.Error("the denied address passes the gate")
	}
	m := login(t, adminAddr, "10042", masterPW)
	_, rules := m.rules("10042")
	for _, r := range rules {
		if strings.HasPrefix(r.CIDR, denied+"/") {
			t.Errorf("the denied request left a grant: %+v", r)
		}
	}
}
