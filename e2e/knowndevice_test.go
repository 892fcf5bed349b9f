package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawTLS is a TLS client from a loopback address that shows no
// certificate and records whether the server asked for one and how many
// bytes it sent.
type rawTLS struct {
	conn     *tls.Conn
	asked    atomic.Bool
	received atomic.Int64
	err      error
}

type countReader struct {
	net.Conn
	n *atomic.Int64
}

func (c countReader) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func dialRawTLS(from, to string) *rawTLS {
	r := &rawTLS{}
	raw, err := dialFrom(from, to)
	if err != nil {
		r.err = err
		return r
	}
	r.conn = tls.Client(countReader{Conn: raw, n: &r.received}, &tls.Config{
		InsecureSkipVerify: true, ServerName: "db.test",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			r.asked.Store(true)
			return &tls.Certificate{}, nil
		},
	})
	r.conn.SetDeadline(time.Now().Add(10 * time.Second))
	r.err = r.conn.Handshake()
	return r
}

// TestRequireKnownDevice is issue 14 item 5 with the real binary: with
// require_device on, `gatekeeper connect -identity` (the device's own
// certificate) reaches the tls listener's upstream and the same connector
// without the identity does not; a raw TLS client from a denied address
// gets no certificate request and not a byte, while one from the allowed
// address is asked; the device made inactive loses its live connection
// and its next one is refused.
func TestRequireKnownDevice(t *testing.T) {
	upstream := echoServer(t)
	dir := prepareDir(t)
	gate, admin := freeAddr(t), freeAddr(t)
	g := startGatekeeper(t, dir, storeConfig+fmt.Sprintf(`tls: {self_signed: true}
admin: {addr: "%s", operator_token_file: ./data/operator.token}
listeners:
  - {name: desktop, addr: "%s", mode: tls, routes: [{account: acme, upstream: "%s"}]}
`, admin, gate, upstream))
	master := createAccount(t, admin, "acme", "correct horse battery staple 9")
	if code, _, _ := master.addRule("acme", "127.0.0.1/32"); code != http.StatusCreated {
		t.Fatalf("add rule: %d", code)
	}

	code, b, _ := master.call("POST", "/api/v1/me/devices", map[string]any{"name": "front desk"})
	if code != http.StatusCreated {
		t.Fatalf("enrolment code: %d %s", code, b)
	}
	var enrol struct {
		Code string `json:"enrollment_code"`
	}
	if err := json.Unmarshal(b, &enrol); err != nil || enrol.Code == "" {
		t.Fatalf("enrolment code answer %s: %v", b, err)
	}
	identity := filepath.Join(dir, "gatekeeper.identity")
	if out, err := runBinary(dir, "", "connect", "enroll", "-admin-url", "https://"+admin+"/", "-insecure-skip-verify",
		"-code", enrol.Code, "-name", "front desk", "-identity", identity); err != nil {
		t.Fatalf("connect enroll: %v\n%s", err, out)
	}
	code, b, _ = master.call("GET", "/api/v1/accounts/acme/devices", nil)
	var list struct{ Devices []struct{ ID string } }
	if code != http.StatusOK || json.Unmarshal(b, &list) != nil || len(list.Devices) != 1 {
		t.Fatalf("devices: %d %s", code, b)
	}
	devs := list.Devices
	if code, b, _ := master.call("PATCH", "/api/v1/accounts/acme/settings", map[string]any{"require_device": true}); code != http.StatusOK {
		t.Fatalf("require_device on: %d %s", code, b)
	}

	withDevice, _ := runConnect(t, "-server", gate, "-sni", "db.test", "-insecure-skip-verify", "-identity", identity)
	without, _ := runConnect(t, "-server", gate, "-sni", "db.test", "-insecure-skip-verify")
	through := func(addr string) (net.Conn, bool) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return nil, false
		}
		if roundTrip(c, "hello") != nil {
			c.Close()
			return nil, false
		}
		return c, true
	}
	// The setting reaches the gate through the store's feed: wait for the
	// first refusal of the connector without a device.
	waitFor(t, 10*time.Second, "the connector without a device to be refused", func() bool {
		c, ok := through(without)
		if ok {
			c.Close()
		}
		return !ok
	})
	atLeastOne(t, g, "gatekeeper_device_checks_total", "account", "acme", "outcome", "no_certificate")
	live, ok := through(withDevice)
	if !ok {
		t.Fatal("the enrolled device did not get through")
	}
	defer live.Close()
	atLeastOne(t, g, "gatekeeper_device_checks_total", "account", "acme", "outcome", "known")

	denied := dialRawTLS(ipDenied, gate)
	if denied.err == nil {
		t.Error("a denied address completed a handshake")
	}
	if denied.asked.Load() || denied.received.Load() != 0 {
		t.Errorf("a denied address was asked for a certificate: %v, sent %d bytes; want neither", denied.asked.Load(), denied.received.Load())
	}
	allowed := dialRawTLS("127.0.0.1", gate)
	if !allowed.asked.Load() {
		t.Errorf("the allowed address was not asked for a certificate (handshake: %v)", allowed.err)
	}
	if allowed.conn != nil {
		allowed.conn.Close()
	}

	// Inactive: the live connection closes, the next one is refused.
	if code, b, _ := master.call("PATCH", "/api/v1/accounts/acme/devices/"+devs[0].ID, map[string]any{"active": false}); code != http.StatusOK {
		t.Fatalf("make the device inactive: %d %s", code, b)
	}
	live.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := live.Read(make([]byte, 1)); n > 0 || (err != nil && strings.Contains(err.Error(), "timeout")) {
		t.Fatalf("the inactive device's live connection is still open: %d bytes, %v", n, err)
	}
	g.waitMetric(1, "gatekeeper_connections_revoked_total", "account", "acme")
	if c, ok := through(withDevice); ok {
		c.Close()
		t.Fatal("the inactive device got through again")
	}
	atLeastOne(t, g, "gatekeeper_device_checks_total", "account", "acme", "outcome", "device_not_active")
}

// atLeastOne waits until a counter is at least 1: the connector may try
// the gate twice for one local connection.
func atLeastOne(t *testing.T, g *gatekeeper, name string, labels ...string) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%s%v >= 1", name, labels), func() bool { return g.metric(name, labels...) >= 1 })
}
