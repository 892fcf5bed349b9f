package admin_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// A master adds a user; the user logs in from home, sets a new password
// and unblocks their address; the master offboards them.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "gk-example")
	defer os.RemoveAll(dir)
	st, _ := boltstore.Open(filepath.Join(dir, "gk.db"), boltstore.Options{})
	defer st.Close()
	cheap := password.Params{Memory: 64, Time: 1, Threads: 1, KeyLen: 32} // production: password.Default
	admin.CreateAccount(ctx, st, admin.NewAccount{ID: "10042", Name: "Smith Studio", Password: "master-password-1"}, cheap, time.Now())
	svc, _ := admin.New(admin.Options{Store: st, PasswordParams: cheap})

	office := netip.MustParseAddr("192.0.2.10")
	home := netip.MustParseAddr("203.0.113.7")
	login, _ := svc.Login(ctx, admin.LoginRequest{Account: "10042", Password: "master-password-1"}, office)
	master, _ := svc.Authenticate(ctx, login.Token, office)
	svc.CreateUser(ctx, master, "10042", admin.NewUser{Username: "jane.smith", Password: "first-password-1"})

	login, _ = svc.Login(ctx, admin.LoginRequest{Account: "10042", Username: "jane.smith", Password: "first-password-1"}, home)
	fmt.Println("must reset:", login.MustResetPassword)
	jane, _ := svc.Authenticate(ctx, login.Token, home)
	_, err := svc.Unblock(ctx, jane, "10042", 0)
	fmt.Println("unblock before reset:", err)
	svc.ChangePassword(ctx, jane, "first-password-1", "jane-own-password")
	jane, _ = svc.Authenticate(ctx, login.Token, home)
	g, _ := svc.Unblock(ctx, jane, "10042", 8*time.Hour)
	fmt.Println("granted:", g.Rule.Prefix, g.Rule.Source, g.Rule.Owner)

	rep, _ := svc.Offboard(ctx, master, "10042", "jane.smith")
	fmt.Printf("offboarded: %d session ended, %d grant revoked\n", rep.SessionsEnded, rep.GrantsRevoked)
	_, err = svc.Authenticate(ctx, login.Token, home)
	fmt.Println("jane's session:", err != nil)
	fw, _ := svc.Firewall(ctx, master, "10042")
	fmt.Println("rules left:", len(fw.Rules), "mode:", fw.Mode == policy.ModeOn)
	// Output:
	// must reset: true
	// unblock before reset: password_reset_required: set a new password first (POST /api/v1/password)
	// granted: 203.0.113.7/32 unblock jane.smith
	// offboarded: 1 session ended, 1 grant revoked
	// jane's session: true
	// rules left: 0 mode: true
}
