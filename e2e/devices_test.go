package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/device"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// psqlAt runs one psql command through a local address (a connector's).
func psqlAt(ctx context.Context, addr, sql string) *exec.Cmd {
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.CommandContext(ctx, "psql", "-X", "-q", "-tA", "-w", "-h", host, "-p", port,
		"-U", "postgres", "-d", "postgres", "-c", sql)
	cmd.Env = append(os.Environ(), "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
	return cmd
}

func psqlThrough(addr, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := psqlAt(ctx, addr, sql).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// livePsql starts a psql whose query runs for a minute, waits until
// PostgreSQL is running it, and returns a channel closed when psql exits.
func livePsql(t *testing.T, pgPort, addr, tag string) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	sql := fmt.Sprintf("select pg_sleep(60) /* %s */", tag)
	cmd := psqlAt(ctx, addr, sql)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); cancel(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		<-exited
		psql(pgPort, fmt.Sprintf("select pg_terminate_backend(pid) from pg_stat_activity where query like '%%/* %s */%%' and pid <> pg_backend_pid()", tag))
	})
	waitFor(t, 30*time.Second, "PostgreSQL running the live session's query", func() bool {
		select {
		case <-exited:
			t.Fatalf("the live psql exited before its query ran: %s", out)
		default:
		}
		n, err := psql(pgPort, fmt.Sprintf("select count(*) from pg_stat_activity where query like '%%/* %s */%%' and pid <> pg_backend_pid()", tag))
		return err == nil && strings.TrimSpace(n) == "1"
	})
	return exited
}

// enrolCode asks for an enrolment code as a logged-in user.
func enrolCode(t *testing.T, c *apiClient, token, name string) string {
	t.Helper()
	var res struct {
		Code string `json:"enrollment_code"`
	}
	if code := c.call("POST", "/api/v1/me/devices", token, map[string]string{"name": name}, &res); code != 201 || res.Code == "" {
		t.Fatalf("ask for an enrolment code: %d", code)
	}
	return res.Code
}

type deviceRule struct {
	CIDR      string `json:"cidr"`
	Source    string `json:"source"`
	Owner     string `json:"owner"`
	CreatedBy string `json:"created_by"`
}

// TestDeviceLeases is issue 14's story with every part real. Alice gets
// enrolment codes and `gatekeeper connect enroll` registers two computers.
// psql goes through `gatekeeper connect -identity` to a tls listener and
// on to PostgreSQL with no rule for the connector's address: the
// connector gets a device lease, which the rules list shows with source
// device. One computer reaches the gate over IPv4 and the other over IPv6,
// while the admin listener listens on both (::): each lease covers the
// address, in the family, that the gate sees (an IPv6 one its /64). The
// master marks the first computer inactive and its live psql session is
// closed, and the next is refused; its stolen identity file gets nothing.
// Offboarding Alice does the same to her other computer. On the way: a
// device key is refused anywhere but the lease endpoint, and a code used
// twice, expired, or guessed at gets nothing.
func TestDeviceLeases(t *testing.T) {
	const (
		account  = "10042"
		masterPW = "studio-master-password"
		alicePW  = "alice-own-password-1"
		guesser  = "127.0.0.5"
	)
	pgPort := postgres(t)
	dir := t.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "data", "gatekeeper.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err = admin.CreateAccount(ctx, st, admin.NewAccount{ID: account, Name: "Smith Studio",
		Password: masterPW, Actor: "e2e", Role: "operator"}, password.Default, time.Now()); err != nil {
		t.Fatal(err)
	}
	hash, _ := password.Hash(alicePW, password.Default)
	// An enrolment code that expired a minute ago: the binary's clock is
	// not the test's to move, so the store holds it already expired.
	expiredCode, expiredHash := device.NewCode(account)
	err = st.Update(ctx, account, func(tx policy.Tx) error {
		if err := tx.PutUser(policy.User{Username: "alice", DisplayName: "Alice", Active: true, DesktopAccess: true,
			PasswordHash: hash, CreatedAt: time.Now()}); err != nil {
			return err
		}
		return tx.PutEnrollment(policy.Enrollment{CodeHash: expiredHash, Owner: "alice",
			CreatedAt: time.Now().Add(-11 * time.Minute), ExpiresAt: time.Now().Add(-time.Minute)})
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	cert := writeCert(t, dir, "gate", "clinic.db.test", "localhost", "::1")
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	ca := filepath.Join(dir, "gate.crt")
	gate4 := freeAddr(t)
	_, port6, _ := net.SplitHostPort(freeAddr(t))
	gate6 := net.JoinHostPort("::1", port6)
	_, adminPort, _ := net.SplitHostPort(freeAddr(t))
	g := startGatekeeper(t, dir, storeConfig+fmt.Sprintf(`tls: {certificates: [{cert: gate.crt, key: gate.key}]}
admin: {addr: "[::]:%s", operator_token_file: ./data/operator.token}
listeners:
  - name: desktop
    addr: "%s"
    mode: tls
    routes: [{sni: clinic.db.test, account: "%s", upstream: "127.0.0.1:%s"}]
  - name: desktop6
    addr: "%s"
    mode: tls
    routes: [{sni: clinic.db.test, account: "%s", upstream: "127.0.0.1:%s"}]
`, adminPort, gate4, account, pgPort, gate6, account, pgPort))
	// The laptop knows the admin listener by a name, the desktop by its
	// IPv6 address: this machine's /etc/hosts gives localhost no ::1.
	adminURL4, adminURL6 := "https://localhost:"+adminPort+"/", "https://[::1]:"+adminPort+"/"
	api := newAPIClient(t, "https://127.0.0.1:"+adminPort, "127.0.0.1", roots)

	var m, u loginAnswer
	if code := api.call("POST", "/api/v1/login", "", map[string]string{"account": account, "password": masterPW}, &m); code != 200 {
		t.Fatalf("master login: %d", code)
	}
	if code := api.call("POST", "/api/v1/login", "", map[string]string{"account": account, "username": "alice", "password": alicePW}, &u); code != 200 {
		t.Fatalf("alice's login: %d", code)
	}
	rules := func() []deviceRule {
		t.Helper()
		var fw struct{ Rules []deviceRule }
		if code := api.call("GET", "/api/v1/accounts/"+account+"/firewall", m.Token, nil, &fw); code != 200 {
			t.Fatalf("rules list: %d", code)
		}
		return fw.Rules
	}
	if rs := rules(); len(rs) != 0 {
		t.Fatalf("the account starts with rules %+v; want none", rs)
	}

	// Alice enrols two computers with the real binary.
	enrollAt := func(adminURL, code, name, file string) (string, error) {
		return runBinary(dir, "", "connect", "enroll", "-admin-url", adminURL, "-ca", ca,
			"-code", code, "-name", name, "-identity", file)
	}
	enroll := func(code, name, file string) (string, error) { return enrollAt(adminURL4, code, name, file) }
	laptop, desktop := filepath.Join(dir, "laptop.identity"), filepath.Join(dir, "desktop.identity")
	laptopCode := enrolCode(t, api, u.Token, "Alice's laptop")
	if out, err := enroll(laptopCode, "Alice's laptop", laptop); err != nil {
		t.Fatalf("enrol the laptop: %v\n%s", err, out)
	}
	if fi, err := os.Stat(laptop); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v %v; want mode 0600", fi.Mode(), err)
	}
	if out, err := enrollAt(adminURL6, enrolCode(t, api, u.Token, "Alice's desktop"), "Alice's desktop", desktop); err != nil {
		t.Fatalf("enrol the desktop: %v\n%s", err, out)
	}

	// Codes: used twice, expired, guessed.
	spare := filepath.Join(dir, "spare.identity")
	for _, c := range []struct{ what, code string }{{"used twice", laptopCode}, {"expired", expiredCode}} {
		out, err := enroll(c.code, "spare", spare)
		if err == nil || !strings.Contains(out, "wrong, used or expired") {
			t.Errorf("a code %s: %v\n%s; want it refused as wrong, used or expired", c.what, err, out)
		}
		if _, err := os.Stat(spare); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused enrolment (%s) left an identity file: %v", c.what, err)
		}
	}
	goodCode := enrolCode(t, api, u.Token, "spare")
	guessAPI := newAPIClient(t, "https://127.0.0.1:"+adminPort, guesser, roots)
	laptopID, err := device.ReadIdentity(laptop)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(laptopID.Key.Public())
	if err != nil {
		t.Fatal(err)
	}
	guesses, limited := 0, false
	for guesses < 100 && !limited {
		guess, _ := device.NewCode(account)
		var e struct{ Error struct{ Code string } }
		switch code := guessAPI.call("POST", "/api/v1/devices/enroll", "", map[string]any{"code": guess, "public_key": der}, &e); {
		case code == 429:
			limited = true
		case code == 403 && e.Error.Code == "invalid_enrollment_code":
			guesses++
		default:
			t.Fatalf("a guessed code answered %d %s; want 403 invalid_enrollment_code, then 429", code, e.Error.Code)
		}
	}
	t.Logf("guessed codes: %d refused, then 429", guesses)
	if !limited {
		t.Fatal("100 guessed codes from one address and no 429")
	}
	if code := guessAPI.call("POST", "/api/v1/devices/enroll", "", map[string]any{"code": goodCode, "public_key": der}, nil); code != 429 {
		t.Errorf("a real code from a rate-limited address answered %d; want 429 before the code is looked at", code)
	}

	// The laptop reaches the gate over IPv4, the desktop over IPv6; psql
	// passes through each, on a lease.
	status4 := filepath.Join(dir, "laptop.status")
	via4, log4 := runConnect(t, "-server", gate4, "-sni", "clinic.db.test", "-ca", ca, "-identity", laptop, "-status", status4)
	via6, log6 := runConnect(t, "-server", gate6, "-sni", "clinic.db.test", "-ca", ca, "-identity", desktop)
	for _, c := range []struct{ family, via string }{{"IPv4", via4}, {"IPv6", via6}} {
		if out, err := psqlThrough(c.via, "select 'leased ' || 6*7"); err != nil || out != "leased 42" {
			t.Fatalf("psql through the connector (%s): %v\n%s", c.family, err, out)
		}
	}
	var leases []deviceRule
	for _, r := range rules() {
		if r.Source == policy.SourceDevice && r.Owner == "alice" {
			leases = append(leases, r)
		}
	}
	cidrs := map[string]bool{}
	for _, r := range leases {
		cidrs[r.CIDR] = true
	}
	if len(leases) != 2 || !cidrs["127.0.0.1/32"] || !cidrs["::/64"] {
		t.Fatalf("leases %+v; want alice's, source device, for 127.0.0.1/32 (the IPv4 address the gate saw) and ::/64 (the /64 of ::1)", leases)
	}
	// connect status tells the lease and the address the gate saw.
	waitFor(t, 10*time.Second, "the lease in connect status", func() bool {
		out, _ := runBinary(dir, "", "connect", "status", "-status", status4)
		return strings.Contains(out, "for 127.0.0.1, expires")
	})
	for _, l := range []*syncBuffer{log4, log6} {
		if !strings.Contains(l.String(), "got a device lease") {
			t.Errorf("the connector does not say it got a lease:\n%s", l)
		}
	}
	var devs struct{ Devices []admin.DeviceView }
	if code := api.call("GET", "/api/v1/accounts/"+account+"/devices", m.Token, nil, &devs); code != 200 || len(devs.Devices) != 2 {
		t.Fatalf("devices: %d %+v", code, devs)
	}
	ids := map[string]string{}
	for _, d := range devs.Devices {
		ids[d.Name] = d.ID
		if d.Status != policy.DeviceActive || !d.LastIP.IsValid() || d.LastSeenAt.IsZero() || d.Platform == "" {
			t.Errorf("device %+v; want active, with last address, last seen and platform", d)
		}
	}

	// A device key is good for the lease endpoint and nothing else.
	for _, ep := range []struct{ method, path string }{
		{"GET", "/api/v1/me"}, {"GET", "/api/v1/me/devices"}, {"POST", "/api/v1/me/devices"},
		{"GET", "/api/v1/accounts/" + account + "/firewall"}, {"POST", "/api/v1/accounts/" + account + "/unblock"},
		{"GET", "/api/v1/accounts/" + account + "/devices"}, {"POST", "/api/v1/devices/enroll"},
	} {
		body := []byte("{}")
		req, _ := http.NewRequest(ep.method, "https://127.0.0.1:"+adminPort+ep.path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", device.Sign(laptopID, ep.method, ep.path, body, time.Now()))
		resp, err := api.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("a device key at %s %s answered %d; want 403", ep.method, ep.path, resp.StatusCode)
		}
	}

	// The master marks the laptop inactive: its live session closes.
	live := livePsql(t, pgPort, via4, "laptop")
	start := time.Now()
	var change map[string]any
	if code := api.call("PATCH", "/api/v1/accounts/"+account+"/devices/"+ids["Alice's laptop"], m.Token,
		map[string]bool{"active": false}, &change); code != 200 {
		t.Fatalf("mark the laptop inactive: %d %v", code, change)
	}
	select {
	case <-live:
		t.Logf("marking the laptop inactive closed its live psql session %v after the call was sent (report: %v)", time.Since(start), change)
	case <-time.After(10 * time.Second):
		t.Fatal("the inactive laptop's live psql session still runs 10s later")
	}
	if out, err := psqlThrough(via4, "select 1"); err == nil {
		t.Errorf("psql through the inactive laptop's connector passed: %s", out)
	}
	waitFor(t, 10*time.Second, "the refused lease gone from connect status", func() bool {
		out, _ := runBinary(dir, "", "connect", "status", "-status", status4)
		return strings.Contains(out, "lease                    none")
	})
	// A stolen copy of its identity file gets nothing either.
	stolen := filepath.Join(t.TempDir(), "stolen.identity")
	b, _ := os.ReadFile(laptop)
	os.WriteFile(stolen, b, 0o600)
	id, err := device.ReadIdentity(stolen)
	if err != nil {
		t.Fatal(err)
	}
	_, err = device.RequestLease(ctx, id, "tcp4", &tls.Config{RootCAs: roots})
	var ae *device.APIError
	if !errors.As(err, &ae) || ae.Status != 403 || ae.Code != "device_refused" {
		t.Errorf("a lease request with the inactive laptop's stolen key: %v; want 403 device_refused", err)
	}
	for _, r := range rules() {
		if r.CIDR == "127.0.0.1/32" {
			t.Errorf("the inactive laptop's lease is still there: %+v", r)
		}
	}

	// Offboarding Alice does the same to her desktop.
	live = livePsql(t, pgPort, via6, "desktop")
	start = time.Now()
	var off map[string]any
	if code := api.call("POST", "/api/v1/accounts/"+account+"/users/alice/offboard", m.Token, nil, &off); code != 200 {
		t.Fatalf("offboard alice: %d %v", code, off)
	}
	select {
	case <-live:
		t.Logf("offboarding alice closed her desktop's live psql session %v after the call was sent (report: %v)", time.Since(start), off)
	case <-time.After(10 * time.Second):
		t.Fatal("the offboarded user's desktop session still runs 10s later")
	}
	if out, err := psqlThrough(via6, "select 1"); err == nil {
		t.Errorf("psql through the offboarded user's desktop passed: %s", out)
	}
	if code := api.call("GET", "/api/v1/accounts/"+account+"/devices", m.Token, nil, &devs); code != 200 {
		t.Fatalf("devices: %d", code)
	}
	for _, d := range devs.Devices {
		if d.Status != policy.DeviceInactive {
			t.Errorf("after offboarding, device %s is %s; want inactive", d.Name, d.Status)
		}
	}
	for _, r := range rules() {
		if r.Source == policy.SourceDevice {
			t.Errorf("a lease outlived the offboarding: %+v", r)
		}
	}
	// The inactive laptop's connector, the stolen key and the offboarded
	// desktop's connector were each refused.
	if n := g.metric("gatekeeper_device_lease_requests_total", "outcome", "refused"); n < 3 {
		t.Errorf("gatekeeper_device_lease_requests_total{outcome=\"refused\"} = %v; want at least 3", n)
	}
	g.waitMetric(2, "gatekeeper_devices", "status", "inactive")
	g.waitMetric(0, "gatekeeper_devices", "status", "active")
	g.waitMetric(0, "gatekeeper_device_leases_active")
}

// TestDeviceLeaseOnRedisFleet: a lease asked of one instance's admin
// listener lets the device's address in on every instance of a fleet on
// one Redis, and marking the device inactive through another instance
// closes its live connections on all of them. The times are measured and
// logged; the wait for each is generous.
func TestDeviceLeaseOnRedisFleet(t *testing.T) {
	const from = "127.0.0.1" // where the lease request and the connections come from
	rs := redistest.Start(t)
	up := echoServer(t)
	a, b := startInstance(t, rs.URL(), up), startInstance(t, rs.URL(), up)
	master := createAccount(t, a.admin, "acct", masterPassword)
	code, body, _ := master.call("POST", "/api/v1/me/devices", map[string]string{"name": "front desk"})
	var ec struct {
		Code string `json:"enrollment_code"`
	}
	if json.Unmarshal(body, &ec); code != http.StatusCreated || ec.Code == "" {
		t.Fatalf("enrolment code: %d %s", code, body)
	}
	idFile := filepath.Join(t.TempDir(), "gatekeeper.identity")
	if out, err := runBinary(t.TempDir(), "", "connect", "enroll", "-admin-url", "https://"+a.admin+"/",
		"-insecure-skip-verify", "-code", ec.Code, "-identity", idFile); err != nil {
		t.Fatalf("enrol: %v\n%s", err, out)
	}
	id, err := device.ReadIdentity(idFile)
	if err != nil {
		t.Fatal(err)
	}
	if through(from, a.db) || through(from, b.db) {
		t.Fatal("the device's address passed before any lease")
	}
	leased := time.Now()
	l, err := device.RequestLease(context.Background(), id, "tcp4", &tls.Config{InsecureSkipVerify: true})
	if err != nil || l.Rule.CIDR != from+"/32" {
		t.Fatalf("lease: %+v %v; want %s/32", l, err, from)
	}
	var live []net.Conn
	for i, in := range []*instance{a, b} {
		took := waitFor(t, 10*time.Second, "the lease enforced on every instance", func() bool { return through(from, in.db) })
		t.Logf("instance %d: the lease let the device in %v after it was asked for (%v polling)", i, time.Since(leased), took)
		c, err := dialFrom(from, in.db)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := roundTrip(c, "hello"); err != nil {
			t.Fatal(err)
		}
		live = append(live, c)
	}

	inactive := time.Now()
	if code, body, _ := master.on(b.admin).call("PATCH", "/api/v1/accounts/acct/devices/"+id.DeviceID,
		map[string]bool{"active": false}); code != http.StatusOK {
		t.Fatalf("mark the device inactive through instance 1: %d %s", code, body)
	}
	for i, c := range live {
		c.SetReadDeadline(inactive.Add(10 * time.Second))
		buf := make([]byte, 16)
		_, err := c.Read(buf)
		if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
			t.Fatalf("instance %d: the inactive device's live connection still open 10s later (%v)", i, err)
		}
		t.Logf("instance %d: the inactive device's live connection closed %v after the call was sent", i, time.Since(inactive))
	}
	for i, in := range []*instance{a, b} {
		if through(from, in.db) {
			t.Errorf("instance %d: the inactive device's address still passes", i)
		}
	}
}
