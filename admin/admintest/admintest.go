// Package admintest starts a real admin API over a temporary embedded
// store, for the tests of packages that talk to it (the device client,
// gatekeeper connect enroll). It is not for production use.
package admintest

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// API is a running admin API with one account.
type API struct {
	// Server is the HTTPS test server (a self-signed certificate).
	Server  *httptest.Server
	Service *admin.Service
	// Master is the account's master, logged in from 127.0.0.1.
	Master admin.Actor
	Store  *boltstore.Store
}

// Start runs an admin API with account on a loopback HTTPS listener until
// the test ends.
func Start(t testing.TB, account string) *API {
	t.Helper()
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "gk.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cheap := password.Params{Memory: 64, Time: 1, Threads: 1, KeyLen: 32}
	const pw = "master-password-1"
	if _, err := admin.CreateAccount(ctx, st, admin.NewAccount{ID: account, Password: pw}, cheap, time.Now()); err != nil {
		t.Fatal(err)
	}
	svc, err := admin.New(admin.Options{Store: st, PasswordParams: cheap})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := admin.NewServer(admin.ServerOptions{Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(ts.Close)
	ip := netip.MustParseAddr("127.0.0.1")
	login, err := svc.Login(ctx, admin.LoginRequest{Account: account, Password: pw}, ip)
	if err != nil {
		t.Fatal(err)
	}
	master, err := svc.Authenticate(ctx, login.Token, ip)
	if err != nil {
		t.Fatal(err)
	}
	return &API{Server: ts, Service: svc, Master: master, Store: st}
}

// Code returns a fresh enrolment code of the master.
func (a *API) Code(t testing.TB) string {
	t.Helper()
	c, err := a.Service.CreateEnrollment(context.Background(), a.Master, "")
	if err != nil {
		t.Fatal(err)
	}
	return c.Code
}
