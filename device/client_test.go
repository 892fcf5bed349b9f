package device_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/admin/admintest"
	"github.com/gatekeeper-dev/gatekeeper/device"
)

// TestEnrollAndLease: the client side against the real admin API. A
// device enrols with a code and gets a lease for 127.0.0.1 over tcp4; a
// lease asked over tcp6 goes to ::1, where this admin listener does not
// listen, so the family the connector reached the gate over is the one
// used.
func TestEnrollAndLease(t *testing.T) {
	ctx := context.Background()
	api := admintest.Start(t, "10042")
	ts := api.Server
	_, port, _ := net.SplitHostPort(ts.Listener.Addr().String())
	adminURL := "https://localhost:" + port + "/"
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	id, err := device.Enroll(ctx, hc, adminURL, api.Code(t), "desk", "linux/amd64")
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
