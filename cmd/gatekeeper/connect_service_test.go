package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/admin/admintest"
	"github.com/gatekeeper-dev/gatekeeper/connector"
	"github.com/gatekeeper-dev/gatekeeper/connector/service"
	"github.com/gatekeeper-dev/gatekeeper/connector/service/servicetest"
	"github.com/gatekeeper-dev/gatekeeper/connector/state"
)

// parseInstall parses install's flags as connect service install does.
func parseInstall(t *testing.T, args []string) (connectFlags, service.Spec, error) {
	t.Helper()
	fs := newFlags("install", io.Discard)
	name := nameFlag(fs)
	var f connectFlags
	cfs := serviceFlags(fs, &f)
	if err := fs.Parse(args); err != nil {
		return f, service.Spec{}, err
	}
	spec, err := f.serviceSpec(*name, cfs, fs)
	return f, spec, err
}

// The flags saved in the service definition give the service run exactly
// the flags install was given.
func TestServiceFlagsRoundTrip(t *testing.T) {
	pinA := "sha256//" + strings.Repeat("A", 43) + "="
	pinB := "sha256//" + strings.Repeat("B", 43) + "="
	cases := [][]string{
		{"-server", "gate.test:5433"},
		{"-server", "gate.test:5433", "-sni", "10042.db.test", "-listen", "6000", "-ca", "/etc/gk/ca.pem",
			"-admin-url", "https://gate.test:8443/?a=b c", "-timeout", "3s", "-drain", "1m30s", "-log-level", "debug"},
		{"-server", "[2001:db8::1]:5433", "-pin", pinA, "-pin", pinB + ";" + pinA, "-insecure-skip-verify"},
		{"-name", "studio-db", "-server", "gate.test:5433", "-status", "/tmp/s.json", "-log-file", "/tmp/c.log"},
	}
	for _, args := range cases {
		f, spec, err := parseInstall(t, args)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if !reflect.DeepEqual(spec.Args[:3], []string{"connect", "service", "run"}) {
			t.Fatalf("saved %q", spec.Args)
		}
		fs := newFlags("run", io.Discard)
		name := nameFlag(fs)
		var g connectFlags
		serviceFlags(fs, &g)
		if err := fs.Parse(spec.Args[3:]); err != nil {
			t.Fatalf("%q: the saved flags %q do not parse: %v", args, spec.Args, err)
		}
		if !reflect.DeepEqual(f, g) || *name != spec.Name {
			t.Errorf("%q: saved %q\n got %+v\nwant %+v", args, spec.Args, g, f)
		}
		if spec.StopTimeout != f.drain+serviceStopMargin {
			t.Errorf("%q: stop timeout %s", args, spec.StopTimeout)
		}
	}
	// Only what was set is saved, so a later version's defaults apply.
	_, spec, _ := parseInstall(t, []string{"-server", "gate.test:5433"})
	if want := []string{"connect", "service", "run", "-name=gatekeeper-connect", "-server=gate.test:5433"}; !reflect.DeepEqual(spec.Args, want) {
		t.Errorf("saved %q, want %q", spec.Args, want)
	}
}

// install -print on Linux writes a unit that systemd accepts, with the
// flags checked and relative paths made absolute.
func TestConnectServiceInstallPrint(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the printed definition is a systemd unit on Linux only")
	}
	dir := t.TempDir()
	writeCertPair(t, dir, "gate", time.Now().Add(24*time.Hour), "gate.test")
	t.Chdir(dir)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"connect", "service", "install", "-print", "-server", "gate.test:5433",
		"-sni", "10042.db.test", "-ca", "gate.crt", "-admin-url", "https://gate.test:8443/", "-drain", "20s", "-listen", "5432"},
		nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("install -print: %v\n%s", err, stderr.String())
	}
	unit := stdout.Bytes()
	servicetest.VerifyUnit(t, state.DefaultName, unit)
	wantExec := " connect service run -name=gatekeeper-connect -admin-url=https://gate.test:8443/ -ca=" +
		filepath.Join(dir, "gate.crt") + " -drain=20s -listen=5432 -server=gate.test:5433 -sni=10042.db.test\n"
	for _, want := range []string{wantExec, "TimeoutStopSec=30\n", "Restart=on-failure\n", "WantedBy=multi-user.target\n"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
}

// Mistakes fail at install, not at the next boot. (-print keeps a test
// that wrongly passed the checks from installing anything.)
func TestConnectServiceInstallRejects(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name  string
		args  []string
		usage bool
		err   string
	}{
		{"check", []string{"-server", "g:1", "-check"}, true, "-check"},
		{"bad name", []string{"-name", "a b", "-server", "g:1"}, true, "-name"},
		{"no server", []string{"-sni", "x"}, true, "-server is required"},
		{"bad server", []string{"-server", "gate.test"}, true, "not host:port"},
		{"bad listen", []string{"-server", "g:1", "-listen", "a:b:c"}, true, "-listen"},
		{"bad pin", []string{"-server", "g:1", "-pin", "sha256//nope"}, true, "-pin"},
		{"missing ca", []string{"-server", "g:1", "-ca", filepath.Join(dir, "none.pem")}, false, "no such file"},
		{"bad level", []string{"-server", "g:1", "-log-level", "loud"}, true, "-log-level"},
		{"unknown flag", []string{"-server", "g:1", "-bogus"}, true, "bogus"},
		{"argument", []string{"-server", "g:1", "extra"}, true, "unexpected argument"},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"connect", "service", "install", "-print"}, tc.args...), nil, &stdout, &stderr)
		var ue usageError
		if err == nil || !strings.Contains(err.Error(), tc.err) || errors.As(err, &ue) != tc.usage {
			t.Errorf("%s: %v (usage error %v), want %q (usage %v)", tc.name, err, errors.As(err, &ue), tc.err, tc.usage)
		}
		if stdout.Len() > 0 {
			t.Errorf("%s: printed a definition:\n%s", tc.name, stdout.String())
		}
	}
	var stderr bytes.Buffer
	if err := run(context.Background(), []string{"connect", "service", "reinstall"}, nil, io.Discard, &stderr); err == nil {
		t.Error("unknown service command accepted")
	}
}

// dialClosed connects to the connector at addr and reports what came back
// before the connection ended.
func dialExchange(t *testing.T, addr, send string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, send)
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	return string(got)
}

// A refusal by the gate lands in the status file at once, and connect
// status reports it with the page to unblock at; a success after it too.
func TestConnectStatusReportsRefusal(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeCertPair(t, dir, "gate", time.Now().Add(24*time.Hour), "db.gatekeeper.test")
	g := startStandInGate(t, certFile, keyFile, startEcho(t))
	g.allowed.Store(false)
	statusFile := filepath.Join(dir, "status.json")
	addr, log := runConnect(t, "-server", g.addr, "-ca", certFile, "-sni", "db.gatekeeper.test",
		"-admin-url", "https://admin.test/", "-status", statusFile)

	status := func() string {
		t.Helper()
		var stdout bytes.Buffer
		if err := run(context.Background(), []string{"connect", "status", "-status", statusFile}, nil, &stdout, io.Discard); err != nil {
			t.Fatalf("connect status: %v", err)
		}
		return stdout.String()
	}
	if got := status(); !strings.Contains(got, "gatekeeper connect: starting, to "+g.addr) {
		t.Errorf("before any connection:\n%s", got)
	}
	if got := dialExchange(t, addr, "hello"); got != "" {
		t.Fatalf("refused connection answered %q", got)
	}
	got := status()
	for _, want := range []string{"refused", "last refused", "address the gate saw     unknown",
		"Unblock it at https://admin.test/", "last let through         never"} {
		if !strings.Contains(got, want) {
			t.Errorf("after a refusal, status lacks %q:\n%s\nlog:\n%s", want, got, log)
		}
	}
	g.allowed.Store(true)
	if got := dialExchange(t, addr, "hello"); got != "hello" {
		t.Fatalf("echo: %q\n%s", got, log)
	}
	got = status()
	if !strings.Contains(got, "gatekeeper connect: connected") || !strings.Contains(got, "last refused") {
		t.Errorf("after a success:\n%s", got)
	}
}

// What the service runs: on Linux, the state directory systemd gives it
// (STATE_DIRECTORY) gets the status file; the log goes to -log-file; the
// refusal goes to the log naming the page, and the end of the run is
// recorded.
func TestConnectServiceRun(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("STATE_DIRECTORY is systemd's")
	}
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	t.Setenv("STATE_DIRECTORY", stateDir)
	certFile, keyFile, _ := writeCertPair(t, dir, "gate", time.Now().Add(24*time.Hour), "db.gatekeeper.test")
	g := startStandInGate(t, certFile, keyFile, startEcho(t))
	g.allowed.Store(false)
	logFile := filepath.Join(dir, "connect.log")
	statusFile := filepath.Join(stateDir, state.StatusFile)
	// Cleanups run last first: this one after runCommand's has stopped
	// the service.
	t.Cleanup(func() {
		if s, _ := state.ReadStatus(statusFile); s.State != state.StateStopped {
			t.Errorf("status after the stop: %s", s.State)
		}
		b, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"service starting", "probably not allowed", "https://admin.test/", "stopped"} {
			if !bytes.Contains(b, []byte(want)) {
				t.Errorf("log lacks %q:\n%s", want, b)
			}
		}
	})
	addr, _ := runCommand(t, []string{"connect", "service", "run"}, "-name", "gk-test", "-server", g.addr,
		"-ca", certFile, "-sni", "db.gatekeeper.test", "-admin-url", "https://admin.test/", "-log-file", logFile)
	dialExchange(t, addr, "hello")
	s, err := state.ReadStatus(statusFile)
	if err != nil {
		t.Fatal(err)
	}
	if s.Service != "gk-test" || s.State != state.StateRefused || s.LastRefusal == nil ||
		!strings.Contains(s.LastRefusal.Message, "https://admin.test/") {
		t.Errorf("status: %+v %+v", s, s.LastRefusal)
	}
}

// The Event Log hears a refusal as event 10, naming the admin page: the
// connector's own log call through the logger the service builds, with
// a recorder standing in for the Windows Event Log.
func TestRefusalGoesToEventLog(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeCertPair(t, dir, "gate", time.Now().Add(24*time.Hour), "db.gatekeeper.test")
	g := startStandInGate(t, certFile, keyFile, startEcho(t))
	g.allowed.Store(false)
	events := &servicetest.Events{}
	log, closeLog, err := newConnectLogger("info", "", io.Discard, service.NewEventCore(events))
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog()
	c, err := connector.New(connector.Options{Server: g.addr, ServerName: "db.gatekeeper.test",
		AdminURL: "https://admin.test/", RootCAs: mustLoadCAs(t, certFile), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx, ln) }()
	dialExchange(t, ln.Addr().String(), "hello")
	dialExchange(t, ln.Addr().String(), "hello") // the same failure again: not logged twice
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	got := events.List()
	if len(got) != 1 || got[0].ID != service.EventNotAllowed || got[0].Kind != "error" ||
		!strings.Contains(got[0].Msg, "Unblock it at https://admin.test/") {
		t.Errorf("events: %+v", got)
	}
}

func mustLoadCAs(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	pool, err := loadCAs(path)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// Before any install: status says so, and where the file will be.
func TestConnectStatusNotInstalled(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", t.TempDir())
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"connect", "status", "-name", "gk-test-absent"}, nil, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"service gk-test-absent: not installed", "no status in", state.StatusFile} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, stdout.String())
		}
	}
	if err := run(context.Background(), []string{"connect", "service"}, nil, io.Discard, io.Discard); err == nil {
		t.Error("connect service without a command succeeded")
	}
}

// A service directory that others may write is not used for the status
// (nothing is written where another user could have planted a link), and
// the service still carries connections and says why.
func TestConnectServiceRunUnsafeDirectory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("STATE_DIRECTORY is systemd's")
	}
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	os.Mkdir(stateDir, 0o777)
	os.Chmod(stateDir, 0o777) // past the umask
	t.Setenv("STATE_DIRECTORY", stateDir)
	certFile, keyFile, _ := writeCertPair(t, dir, "gate", time.Now().Add(24*time.Hour), "db.gatekeeper.test")
	g := startStandInGate(t, certFile, keyFile, startEcho(t))
	logFile := filepath.Join(dir, "connect.log")
	addr, _ := runCommand(t, []string{"connect", "service", "run"}, "-server", g.addr,
		"-ca", certFile, "-sni", "db.gatekeeper.test", "-log-file", logFile)
	if got := dialExchange(t, addr, "hello"); got != "hello" {
		t.Fatalf("echo through the service: %q", got)
	}
	if entries, _ := os.ReadDir(stateDir); len(entries) > 0 {
		t.Errorf("wrote into the unsafe directory: %v", entries)
	}
	if b, _ := os.ReadFile(logFile); !bytes.Contains(b, []byte("not usable")) || !bytes.Contains(b, []byte("written by others")) {
		t.Errorf("log does not say why:\n%s", b)
	}
}

// TestConnectServiceRunIdentityReadable: the service refuses to start
// with a device identity that others can read.
func TestConnectServiceRunIdentityReadable(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("on Windows the check is of the access list, which the service's directory sets")
	}
	dir := t.TempDir()
	api := admintest.Start(t, "10042")
	idFile := filepath.Join(dir, "identity")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"connect", "enroll", "-admin-url", api.Server.URL + "/", "-insecure-skip-verify",
		"-identity", idFile, "-code", api.Code(t)}, strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("enrol: %v\n%s", err, out.String())
	}
	os.Chmod(idFile, 0o644)
	// Cancelled: a service that started anyway stops at once, and the
	// test fails rather than waits.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := run(ctx, []string{"connect", "service", "run", "-name", "gk-identity-test", "-server", "127.0.0.1:1",
		"-identity", idFile}, strings.NewReader(""), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "read or written by others") {
		t.Fatalf("service run with a readable identity: %v; want it refused", err)
	}
}
