package device_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/device"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// TestEnrollAndLease: the client side against the real admin API. A
// device enrols with a code and gets a lease for 127.0.0.1 over tcp4; a
// lease asked over tcp6 goes to ::1, where this admin listener does not
// listen, so the family the connector reached the gate over is the one
// used.
func TestEnrollAndLease(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "gk.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cheap := password.Params{Memory: 64, Time: 1, Threads: 1, KeyLen: 32}
	if _, err := admin.CreateAccount(ctx, st, admin.NewAccount{ID: "10042", Password: "master-password-1"}, cheap, time.Now()); err != nil {
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
	defer ts.Close()
	ip := netip.MustParseAddr("127.0.0.1")
	login, err := svc.Login(ctx, admin.LoginRequest{Account: "10042", Password: "master-password-1"}, ip)
	if err != nil {
		t.Fatal(err)
	}
	master, _ := svc.Authenticate(ctx, login.Token, ip)
	code, err := svc.CreateEnrollment(ctx, master, "desk")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ts.Listener.Addr().String())
	adminURL := "https://localhost:" + port + "/"
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	id, err := device.Enroll(ctx, hc, adminURL, code.Code, "desk", "linux/amd64")
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{InsecureSkipVerify: true}
	l, err := device.RequestLease(ctx, id, "tcp4", tc)
	if err != nil {
		t.Fatal(err)
	}
	if l.Rule.CIDR != "127.0.0.1/32" || l.Renewed || time.Until(l.Rule.ExpiresAt) < 59*time.Minute {
		t.Fatalf("lease %+v", l)
	}
	if l, err := device.RequestLease(ctx, id, "tcp4", tc); err != nil || !l.Renewed {
		t.Fatalf("renewal: %+v %v", l, err)
	}
	if _, err := device.RequestLease(ctx, id, "tcp6", tc); err == nil {
		t.Fatal("a lease over tcp6 reached an IPv4-only listener")
	}
}
