package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const storeConfig = `store: {url: "file:./data/gatekeeper.db", snapshot: ./data/policy.snapshot}
ops: {addr: "{{ops}}"}
log: {level: info, format: json}
`

// postgres returns the port of a PostgreSQL on 127.0.0.1 that lets user
// postgres in without a password: the machine's on 5432 (started with
// pg_ctlcluster if it is down), else a private one the test starts with
// the machine's PostgreSQL binaries. Without either it skips, or fails
// under CI.
func postgres(t *testing.T) string {
	t.Helper()
	needTool(t, "psql")
	usable := func(port string) bool {
		out, err := psql(port, "select 1")
		return err == nil && strings.TrimSpace(out) == "1"
	}
	if usable("5432") {
		return "5432"
	}
	if vs, _ := os.ReadDir("/etc/postgresql"); len(vs) > 0 {
		exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", vs[0].Name(), "main", "start").Run()
		for i := 0; i < 50; i++ {
			if usable("5432") {
				return "5432"
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if port := privatePostgres(t, usable); port != "" {
		return port
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no PostgreSQL that lets user postgres in from 127.0.0.1 without a password, and none could be started (required when CI is set)")
	}
	t.Skip("no usable PostgreSQL on 127.0.0.1")
	return ""
}

// privatePostgres initialises and runs a throwaway PostgreSQL with trust
// authentication on a free loopback port, as user postgres when the test
// runs as root (the server refuses root). "" if it cannot.
func privatePostgres(t *testing.T, usable func(port string) bool) string {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		return ""
	}
	bin := filepath.Dir(bins[len(bins)-1])
	dir, err := os.MkdirTemp("", "gatekeeper-e2e-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	asPostgres := func(name string, args ...string) *exec.Cmd {
		if os.Geteuid() != 0 {
			return exec.Command(name, args...)
		}
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return ""
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		os.Chown(dir, uid, gid)
	}
	data := filepath.Join(dir, "data")
	if out, err := asPostgres(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust").CombinedOutput(); err != nil {
		t.Logf("initdb: %v\n%s", err, out)
		return ""
	}
	_, port, _ := net.SplitHostPort(freeAddr(t))
	srv := asPostgres(filepath.Join(bin, "postgres"), "-D", data, "-p", port, "-k", dir, "-c", "listen_addresses=127.0.0.1")
	out := &syncBuffer{}
	srv.Stdout, srv.Stderr = out, out
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		return ""
	}
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	t.Cleanup(func() {
		// pg_ctl waits until the server is down, so that the removal of
		// dir above does not race its last writes.
		asPostgres(filepath.Join(bin, "pg_ctl"), "stop", "-D", data, "-m", "fast", "-w", "-t", "10").Run()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			srv.Process.Kill()
			<-done
		}
	})
	for i := 0; i < 100; i++ {
		if usable(port) {
			t.Logf("started a private PostgreSQL on 127.0.0.1:%s", port)
			return port
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("private PostgreSQL did not come up:\n%s", out.String())
	return ""
}

func psql(port, sql string) (string, error) {
	conn := fmt.Sprintf("host=127.0.0.1 port=%s user=postgres dbname=postgres sslmode=disable connect_timeout=5", port)
	out, err := exec.Command("psql", conn, "-X", "-q", "-tA", "-c", sql).CombinedOutput()
	return string(out), err
}

// TestPsql carries psql through tcp listeners to the local PostgreSQL:
// allowed through one account, refused by another, and a large result
// arrives byte for byte as it does directly.
func TestPsql(t *testing.T) {
	pgPort := postgres(t)
	dir := t.TempDir()
	// psql cannot pick its source address: it connects from 127.0.0.1.
	seed(t, dir, map[string][]string{"clinic": {"127.0.0.1/32"}, "shop": {ipAllowed + "/32"}}, nil)
	open, closed := freeAddr(t), freeAddr(t)
	g := startGatekeeper(t, dir, storeConfig+fmt.Sprintf(`listeners:
  - {name: pg, addr: "%s", mode: tcp, routes: [{account: clinic, upstream: "127.0.0.1:%s"}]}
  - {name: pg-shop, addr: "%s", mode: tcp, routes: [{account: shop, upstream: "127.0.0.1:%s"}]}
`, open, pgPort, closed, pgPort))
	_, openPort, _ := net.SplitHostPort(open)
	_, closedPort, _ := net.SplitHostPort(closed)

	out, err := psql(openPort, "select 6*7")
	if err != nil || strings.TrimSpace(out) != "42" {
		t.Fatalf("psql through the allowed listener: %v\n%s", err, out)
	}
	out, err = psql(closedPort, "select 6*7")
	if err == nil {
		t.Fatalf("psql through the other account's listener succeeded: %s", out)
	}
	t.Logf("refused psql says: %s", strings.TrimSpace(out))

	const big = "copy (select i, md5(i::text), repeat('x', i % 300) from generate_series(1, 200000) i) to stdout"
	direct, err := psql(pgPort, big)
	if err != nil {
		t.Fatalf("psql directly: %v", err)
	}
	proxied, err := psql(openPort, big)
	if err != nil {
		t.Fatalf("psql through gatekeeper: %v", err)
	}
	if len(direct) < 10<<20 || sha256.Sum256([]byte(direct)) != sha256.Sum256([]byte(proxied)) {
		t.Fatalf("large result: %d bytes directly, %d through gatekeeper, or they differ", len(direct), len(proxied))
	}
	t.Logf("a %d-byte COPY arrived intact", len(proxied))
	g.waitMetric(2, "gatekeeper_connections_total", "listener", "pg", "verdict", "allowed")
	g.waitMetric(1, "gatekeeper_connections_total", "listener", "pg-shop", "verdict", "denied")
}

// TestTCPTransfer sends 64 MiB each way through a tcp listener and
// compares hashes.
func TestTCPTransfer(t *testing.T) {
	dir := t.TempDir()
	seed(t, dir, map[string][]string{"acct": {ipAllowed + "/32"}}, nil)
	addr := freeAddr(t)
	startGatekeeper(t, dir, storeConfig+fmt.Sprintf(`listeners:
  - {name: l, addr: "%s", mode: tcp, routes: [{account: acct, upstream: "%s"}]}
`, addr, echoServer(t)))
	c, err := dialFrom(ipAllowed, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	const n = 64 << 20
	sent, recv := sha256.New(), sha256.New()
	werr := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.MultiWriter(c, sent), rand.Reader, n)
		c.CloseWrite()
		werr <- err
	}()
	m, err := io.Copy(recv, c)
	if err != nil || m != n || <-werr != nil {
		t.Fatalf("moved %d of %d bytes: %v", m, n, err)
	}
	if !bytes.Equal(sent.Sum(nil), recv.Sum(nil)) {
		t.Fatal("bytes changed on the way")
	}
}

// TestCurlHTTP: http mode with curl from chosen addresses; a forged
// X-Forwarded-For from an untrusted client changes nothing.
func TestCurlHTTP(t *testing.T) {
	needTool(t, "curl")
	dir := t.TempDir()
	seed(t, dir, map[string][]string{"web": {ipAllowed + "/32"}}, nil)
	up := httpEcho(t)
	addr := freeAddr(t)
	startGatekeeper(t, dir, storeConfig+fmt.Sprintf(`tls: {self_signed: true}
listeners:
  - {name: web, addr: "%s", mode: http, routes: [{account: web, upstream: "http://%s"}]}
`, addr, up))
	curl := func(from string, args ...string) (string, error) {
		a := append([]string{"-sS", "-k", "--max-time", "10", "--interface", from}, args...)
		a = append(a, "https://"+addr+"/hello")
		out, err := exec.Command("curl", a...).CombinedOutput()
		return string(out), err
	}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"plain", nil},
		{"forged X-Forwarded-For", []string{"-H", "X-Forwarded-For: 6.6.6.6", "-H", "Forwarded: for=6.6.6.6"}},
		{"http2", []string{"--http2"}},
	} {
		out, err := curl(ipAllowed, c.args...)
		if err != nil {
			t.Fatalf("%s: curl: %v\n%s", c.name, err, out)
		}
		var s map[string]string
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("%s: %v: %s", c.name, err, out)
		}
		if s["xff"] != ipAllowed || !strings.HasPrefix(s["forwarded"], "for="+ipAllowed+";") || s["path"] != "/hello" {
			t.Errorf("%s: upstream saw %v", c.name, s)
		}
	}
	out, err := curl(ipDenied, "-v")
	if err == nil {
		t.Fatalf("denied curl succeeded: %s", out)
	}
	if strings.Contains(out, "Server certificate") || strings.Contains(out, "subject:") {
		t.Errorf("denied curl saw a certificate:\n%s", out)
	}
}

// httpEcho answers with what it saw of the request, as JSON.
func httpEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{
			"xff": r.Header.Get("X-Forwarded-For"), "forwarded": r.Header.Get("Forwarded"), "path": r.URL.Path,
		})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// tlsDial connects from an address and handshakes for serverName; it
// returns how many certificates the server sent.
func tlsDial(from, to, serverName string, roots *x509.CertPool) (*tls.Conn, int, error) {
	raw, err := dialFrom(from, to)
	if err != nil {
		return nil, 0, err
	}
	certs := 0
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: roots == nil, RootCAs: roots,
		VerifyConnection: func(cs tls.ConnectionState) error { certs = len(cs.PeerCertificates); return nil }}
	c := tls.Client(raw, cfg)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	err = c.Handshake()
	c.SetDeadline(time.Time{})
	if err != nil {
		raw.Close()
		return nil, certs, err
	}
	return c, certs, nil
}

// TestTLSClients: a fixed-account tls listener and one with SNI routes of
// two accounts, and IPv6 on ::1.
func TestTLSClients(t *testing.T) {
	dir := t.TempDir()
	seed(t, dir, map[string][]string{
		"alpha": {ipAllowed + "/32", "::1/128"},
		"beta":  {ipOther + "/32"},
	}, nil)
	up := echoServer(t)
	fixed, sni := freeAddr(t), freeAddr(t)
	v6 := ""
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		v6 = ln.Addr().String()
		ln.Close()
	}
	cfg := storeConfig + fmt.Sprintf(`tls: {self_signed: true}
listeners:
  - {name: fixed, addr: "%s", mode: tls, routes: [{account: alpha, upstream: "%s"}]}
  - name: sni
    addr: "%s"
    mode: tls
    routes:
      - {sni: alpha.test, account: alpha, upstream: "%s"}
      - {sni: beta.test, account: beta, upstream: "%s"}
`, fixed, up, sni, up, up)
	if v6 != "" {
		cfg += fmt.Sprintf("  - {name: v6, addr: \"%s\", mode: tls, routes: [{account: alpha, upstream: \"%s\"}]}\n", v6, up)
	}
	startGatekeeper(t, dir, cfg)
	cases := []struct {
		from, to, sni string
		ok            bool
	}{
		{ipAllowed, fixed, "localhost", true},
		{ipDenied, fixed, "localhost", false},
		{ipAllowed, sni, "alpha.test", true},
		{ipOther, sni, "beta.test", true},
		{ipAllowed, sni, "beta.test", false},
		{ipOther, sni, "alpha.test", false},
		{ipAllowed, sni, "gamma.test", false},
	}
	if v6 != "" {
		cases = append(cases, struct {
			from, to, sni string
			ok            bool
		}{"::1", v6, "localhost", true})
	}
	for _, c := range cases {
		conn, certs, err := tlsDial(c.from, c.to, c.sni, nil)
		if !c.ok {
			if err == nil {
				conn.Close()
				t.Errorf("%s to %s (%s): got through", c.from, c.to, c.sni)
			}
			if certs > 0 {
				t.Errorf("%s to %s (%s): refused, but sent %d certificates", c.from, c.to, c.sni, certs)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s to %s (%s): %v", c.from, c.to, c.sni, err)
			continue
		}
		if err := roundTrip(conn, "hi"); err != nil {
			t.Errorf("%s to %s (%s): %v", c.from, c.to, c.sni, err)
		}
		conn.Close()
	}
}

// headerV1 and headerV2 are PROXY protocol headers built by hand.
func headerV1(src string) []byte { return []byte("PROXY TCP4 " + src + " 127.0.0.1 40000 5432\r\n") }

func headerV2(src string) []byte {
	var b bytes.Buffer
	b.WriteString("\r\n\r\n\x00\r\nQUIT\n\x21\x11")
	binary.Write(&b, binary.BigEndian, uint16(12))
	s := netip.MustParseAddr(src).As4()
	b.Write(s[:])
	b.Write([]byte{127, 0, 0, 1, 0x9c, 0x40, 0x15, 0x38})
	return b.Bytes()
}

// TestProxyProtocol: headers from the trusted balancer (127.0.0.1) name
// the client; the same header from anyone else is refused.
func TestProxyProtocol(t *testing.T) {
	dir := t.TempDir()
	seed(t, dir, map[string][]string{"acct": {ipAllowed + "/32"}}, nil)
	addr := freeAddr(t)
	g := startGatekeeper(t, dir, storeConfig+fmt.Sprintf(`listeners:
  - name: lb
    addr: "%s"
    mode: tcp
    proxy_protocol: {trusted: ["127.0.0.1/32"]}
    routes: [{account: acct, upstream: "%s"}]
`, addr, echoServer(t)))
	cases := []struct {
		name, from string
		header     []byte
		ok         bool
	}{
		{"v1 from the balancer", "127.0.0.1", headerV1(ipAllowed), true},
		{"v2 from the balancer", "127.0.0.1", headerV2(ipAllowed), true},
		{"v1 naming a denied client", "127.0.0.1", headerV1(ipDenied), false},
		{"no header from the balancer", "127.0.0.1", nil, false},
		{"v1 from a client", ipAllowed, headerV1(ipAllowed), false},
		{"v2 from a client", ipAllowed, headerV2(ipAllowed), false},
		{"no header from an allowed client", ipAllowed, nil, true},
	}
	for _, c := range cases {
		conn, err := dialFrom(c.from, addr)
		if err != nil {
			if c.ok {
				t.Fatalf("%s: %v", c.name, err)
			}
			continue
		}
		conn.Write(c.header)
		err = roundTrip(conn, "payload")
		conn.Close()
		if c.ok && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if !c.ok && err == nil {
			t.Errorf("%s: got through", c.name)
		}
	}
	g.waitMetric(3, "gatekeeper_connection_errors_total", "listener", "lb", "reason", "proxy_header")
}

// TestSIGTERMDrains: after SIGTERM no new connection is accepted, a live
// one finishes its work, and gatekeeper exits when it is done.
func TestSIGTERMDrains(t *testing.T) {
	dir := t.TempDir()
	seed(t, dir, map[string][]string{"acct": {ipAllowed + "/32"}}, nil)
	addr := freeAddr(t)
	g := startGatekeeper(t, dir, storeConfig+fmt.Sprintf(`listeners:
  - {name: l, addr: "%s", mode: tcp, timeouts: {drain: 20s}, routes: [{account: acct, upstream: "%s"}]}
`, addr, echoServer(t)))
	c, err := dialFrom(ipAllowed, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, "before"); err != nil {
		t.Fatal(err)
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	g.waitLog("draining live ones", 0)
	if nc, err := dialFrom(ipAllowed, addr); err == nil {
		nc.Close()
		t.Error("a new connection was accepted after SIGTERM")
	}
	if err := roundTrip(c, "while draining"); err != nil {
		t.Fatalf("live connection broken by SIGTERM: %v", err)
	}
	select {
	case <-g.exited:
		t.Fatal("gatekeeper exited with a connection still live")
	default:
	}
	start := time.Now()
	c.CloseWrite()
	io.ReadAll(c)
	select {
	case <-g.exited:
		t.Logf("exited %v after the last connection ended: %v", time.Since(start), g.err)
		if g.err != nil {
			t.Errorf("exit: %v", g.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gatekeeper still running 10s after its last connection ended")
	}
}

// TestSIGHUP swaps the certificate and a route while a connection stays.
func TestSIGHUP(t *testing.T) {
	dir := t.TempDir()
	seed(t, dir, map[string][]string{"one": {ipAllowed + "/32"}, "two": {ipOther + "/32"}}, nil)
	certA := writeCert(t, dir, "server", "db.test")
	up := echoServer(t)
	addr := freeAddr(t)
	config := func(account string) string {
		return storeConfig + fmt.Sprintf(`tls:
  certificates: [{cert: server.crt, key: server.key}]
listeners:
  - {name: l, addr: "%s", mode: tls, routes: [{account: %s, upstream: "%s"}]}
`, addr, account, up)
	}
	g := startGatekeeper(t, dir, config("one"))
	poolOf := func(c *x509.Certificate) *x509.CertPool { p := x509.NewCertPool(); p.AddCert(c); return p }
	live, _, err := tlsDial(ipAllowed, addr, "db.test", poolOf(certA))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if err := roundTrip(live, "before"); err != nil {
		t.Fatal(err)
	}

	certB := writeCert(t, dir, "server", "db.test")
	g.writeConfig(config("two"))
	g.cmd.Process.Signal(syscall.SIGHUP)
	g.waitLog("reload done", 0)

	if c, _, err := tlsDial(ipOther, addr, "db.test", poolOf(certA)); err == nil {
		c.Close()
		t.Error("the old certificate is still served after SIGHUP")
	}
	c, _, err := tlsDial(ipOther, addr, "db.test", poolOf(certB))
	if err != nil {
		t.Fatalf("new certificate and route: %v", err)
	}
	if err := roundTrip(c, "new"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if c, _, err := tlsDial(ipAllowed, addr, "db.test", nil); err == nil {
		c.Close()
		t.Error("account one's client still gets in after the route moved to two")
	}
	if err := roundTrip(live, "after"); err != nil {
		t.Fatalf("live connection across SIGHUP: %v", err)
	}
}
