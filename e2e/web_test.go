package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/browsertest"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

var browser browsertest.Browser

// TestEmployeeUnblocksInBrowser is issue 5's story with every part real:
// in Chromium, an employee logs in to the real binary's pages, sets a new
// password, presses "Unblock", and the gate then lets their address
// through, and only theirs. The browser connects from 127.0.0.1; the
// admin listener trusts 127.0.0.1 as a proxy, so the X-Forwarded-For the
// tab sends plays the employee's home address.
func TestEmployeeUnblocksInBrowser(t *testing.T) {
	const home, firstPW, ownPW = "127.0.0.9", "first-day-password-1", "carol-chose-this-1"
	dir := t.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "data", "gatekeeper.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err = admin.CreateAccount(ctx, st, admin.NewAccount{ID: "10042", Name: "Smith Studio",
		Password: "studio-master-password", Actor: "e2e", Role: "operator"}, password.Default, time.Now()); err != nil {
		t.Fatal(err)
	}
	hash, _ := password.Hash(firstPW, password.Default)
	err = st.Update(ctx, "10042", func(tx policy.Tx) error {
		return tx.PutUser(policy.User{Username: "carol", DisplayName: "Carol", Active: true, DesktopAccess: true,
			MustResetPassword: true, PasswordHash: hash, CreatedAt: time.Now()})
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	up := echoServer(t)
	gate, adminAddr := freeAddr(t), freeAddr(t)
	startGatekeeper(t, dir, fmt.Sprintf(`store: {url: "file:./data/gatekeeper.db", snapshot: ./data/policy.snapshot}
tls: {self_signed: true}
admin: {addr: "%s", trusted_proxies: ["127.0.0.1"], operator_token_file: ./data/operator.token}
ops: {addr: "{{ops}}"}
log: {level: info, format: json}
listeners:
  - {name: desktop, addr: "%s", mode: tcp, routes: [{account: "10042", upstream: "%s"}]}
`, adminAddr, gate, up))
	passes := func(from string) bool {
		c, err := dialFrom(from, gate)
		if err != nil {
			return false
		}
		defer c.Close()
		return roundTrip(c, "hello") == nil
	}
	if passes(home) {
		t.Fatal("the gate let the employee's address in before the unblock")
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
	if _, err := chromedp.Call(tab, network.SetExtraHTTPHeaders,
		network.SetExtraHTTPHeadersParams{Headers: network.Headers{"X-Forwarded-For": home}}); err != nil {
		t.Fatal(err)
	}
	run("open the login page", chromedp.Navigate("https://"+adminAddr+"/login"),
		chromedp.SendKeys(chromedp.ID("account"), "10042"),
		chromedp.SendKeys(chromedp.ID("username"), "carol"),
		chromedp.SendKeys(chromedp.ID("password"), firstPW))
	if _, err := chromedp.RunResponse(tab, chromedp.Click(chromedp.CSS(`button[type="submit"].primary`))); err != nil {
		t.Fatalf("log in: %v", err)
	}
	if b := body(); !strings.Contains(b, "Choose a new password") {
		t.Fatalf("after the first login, no forced password reset:\n%s", b)
	}
	run("fill the new password", chromedp.SendKeys(chromedp.ID("current"), firstPW),
		chromedp.SendKeys(chromedp.ID("new"), ownPW), chromedp.SendKeys(chromedp.ID("repeat"), ownPW))
	if _, err := chromedp.RunResponse(tab, chromedp.Click(chromedp.CSS(`main button[type="submit"]`))); err != nil {
		t.Fatalf("set the password: %v", err)
	}
	if b := body(); !strings.Contains(b, "Your IP address is "+home) {
		t.Fatalf("the page does not show the employee's address %s:\n%s", home, b)
	}
	if _, err := chromedp.RunResponse(tab, chromedp.Click(chromedp.CSS(`form[action="/me/unblock"] button`))); err != nil {
		t.Fatalf("press unblock: %v", err)
	}
	if b := body(); !strings.Contains(b, home+" is unblocked until") {
		t.Fatalf("no confirmation of the unblock:\n%s", b)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !passes(home) {
		if time.Now().After(deadline) {
			t.Fatal("the gate does not let the unblocked address through")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if passes(ipDenied) {
		t.Error("the unblock opened the gate to another address too")
	}
}
