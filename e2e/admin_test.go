package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// apiClient talks to the admin API over HTTPS from one loopback address.
type apiClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newAPIClient(t *testing.T, base, from string, roots *x509.CertPool) *apiClient {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	return &apiClient{t: t, base: base, hc: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		DialContext:     d.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"},
	}}}
}

// call sends a JSON request and decodes the JSON answer into out (if not
// nil); it returns the status.
func (c *apiClient) call(method, path, token string, body, out any) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

type loginAnswer struct {
	Token             string `json:"token"`
	Role              string `json:"role"`
	MustResetPassword bool   `json:"must_reset_password"`
}

// TestOffboardClosesTheGate is issue 4's story with the real binary: an
// employee logs in from 127.0.0.7, is made to set a new password, unblocks
// their address and passes the gate from it; the master offboards them,
// their live connection closes within a second, and they can no longer log
// in.
func TestOffboardClosesTheGate(t *testing.T) {
	const (
		home      = "127.0.0.7"
		office    = "127.0.0.8"
		masterPW  = "studio-master-password"
		initialPW = "first-day-password-1"
		newPW     = "my-own-password-2026"
	)
	dir := t.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "data", "gatekeeper.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.CreateAccount(context.Background(), st, admin.NewAccount{ID: "10042", Name: "Smith Studio",
		Password: masterPW, Actor: "e2e", Role: "operator"}, password.Default, time.Now())
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	cert := writeCert(t, dir, "admin", "localhost")
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	up := echoServer(t)
	gate, adminAddr := freeAddr(t), freeAddr(t)
	g := startGatekeeper(t, dir, fmt.Sprintf(`store: {url: "file:./data/gatekeeper.db", snapshot: ./data/policy.snapshot}
tls: {certificates: [{cert: admin.crt, key: admin.key}]}
admin: {addr: "%s", operator_token_file: ./data/operator.token}
ops: {addr: "{{ops}}"}
log: {level: debug, format: json}
listeners:
  - {name: desktop, addr: "%s", mode: tcp, routes: [{account: "10042", upstream: "%s"}]}
`, adminAddr, gate, up))
	base := "https://" + adminAddr

	// The master, at the office, adds the employee.
	masterAPI := newAPIClient(t, base, office, roots)
	var m loginAnswer
	if code := masterAPI.call("POST", "/api/v1/login", "", map[string]string{"account": "10042", "password": masterPW}, &m); code != 200 || m.Role != "master" {
		t.Fatalf("master login: %d %+v", code, m)
	}
	if code := masterAPI.call("POST", "/api/v1/accounts/10042/users", m.Token,
		map[string]string{"username": "jsmith", "display_name": "Jo Smith", "password": initialPW}, nil); code != 201 {
		t.Fatalf("create user: %d", code)
	}
	if code := masterAPI.call("PATCH", "/api/v1/accounts/10042/users/jsmith", m.Token, map[string]bool{"desktop_access": true}, nil); code != 200 {
		t.Fatalf("grant desktop access: %d", code)
	}

	// The employee, at home, must set their own password before anything.
	userAPI := newAPIClient(t, base, home, roots)
	var u loginAnswer
	if code := userAPI.call("POST", "/api/v1/login", "", map[string]string{"account": "10042", "username": "jsmith", "password": initialPW}, &u); code != 200 || !u.MustResetPassword {
		t.Fatalf("user login: %d %+v; want must_reset_password", code, u)
	}
	var e struct{ Error struct{ Code string } }
	if code := userAPI.call("POST", "/api/v1/accounts/10042/unblock", u.Token, map[string]any{}, &e); code != 403 || e.Error.Code != "password_reset_required" {
		t.Fatalf("unblock before the reset: %d %s; want 403 password_reset_required", code, e.Error.Code)
	}
	if code := userAPI.call("POST", "/api/v1/password", u.Token, map[string]string{"current": initialPW, "new": newPW}, nil); code != 200 {
		t.Fatalf("password change: %d", code)
	}

	// Home is not allowed yet.
	if c, err := dialFrom(home, gate); err == nil {
		if roundTrip(c, "before") == nil {
			t.Fatal("the gate let an address in before any rule allowed it")
		}
		c.Close()
	}
	var grant struct {
		Rule struct {
			CIDR string `json:"cidr"`
		} `json:"rule"`
	}
	var raw map[string]any
	if code := userAPI.call("POST", "/api/v1/accounts/10042/unblock", u.Token, map[string]any{}, &raw); code != 201 {
		t.Fatalf("unblock: %d %v", code, raw)
	}
	b, _ := json.Marshal(raw)
	json.Unmarshal(b, &grant)
	t.Logf("unblock answered %s", b)
	if grant.Rule.CIDR != home+"/32" {
		t.Fatalf("unblock allowed %q, want the caller's own address %s/32", grant.Rule.CIDR, home)
	}

	var live *net.TCPConn
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := dialFrom(home, gate)
		if err == nil && roundTrip(c, "hello from home") == nil {
			live = c
			break
		}
		if c != nil {
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatal("the unblocked address does not pass the gate")
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer live.Close()

	// The master offboards the employee: the live connection closes.
	var off map[string]any
	start := time.Now()
	if code := masterAPI.call("POST", "/api/v1/accounts/10042/users/jsmith/offboard", m.Token, nil, &off); code != 200 {
		t.Fatalf("offboard: %d %v", code, off)
	}
	t.Logf("offboard answered %v", off)
	if off["sessions_ended"] != float64(1) || off["grants_revoked"] != float64(1) || off["connections_closed"] != float64(1) {
		t.Errorf("offboard report %v; want 1 session ended, 1 grant revoked, 1 connection closed", off)
	}
	live.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 16)
	if _, err := live.Read(buf); err == nil {
		t.Fatal("the offboarded employee's connection still carries data")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the offboarded employee's connection is still open after 3s")
	}
	closed := time.Since(start)
	t.Logf("live connection closed %v after the offboard call was sent", closed)
	if closed > time.Second {
		t.Errorf("connection closed after %v, want within 1s", closed)
	}
	g.waitMetric(1, "gatekeeper_connections_revoked_total", "account", "10042")

	// And they are out: old session and new login both refused.
	if code := userAPI.call("GET", "/api/v1/me", u.Token, nil, nil); code != 401 {
		t.Errorf("the offboarded employee's session answers %d, want 401", code)
	}
	if code := userAPI.call("POST", "/api/v1/login", "", map[string]string{"account": "10042", "username": "jsmith", "password": newPW}, nil); code != 401 {
		t.Errorf("the offboarded employee can still log in: %d", code)
	}
	if c, err := dialFrom(home, gate); err == nil {
		if roundTrip(c, "after") == nil {
			t.Error("the gate still lets the offboarded employee's address in")
		}
		c.Close()
	}
}
