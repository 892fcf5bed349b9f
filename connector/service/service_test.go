package service

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatekeeper-dev/gatekeeper/connector"
	"github.com/gatekeeper-dev/gatekeeper/connector/service/servicetest"
)

// trickyArgs are flag values a service definition must carry intact.
var trickyArgs = []string{"connect", "service", "run", "-name=gatekeeper-connect", "-server=gate.example.com:5433",
	"-ca=/etc/gatekeeper connect/ca.pem", `-sni=a"b\c`, "-admin-url=https://gate.example.com/?a=1&b=100%", "-x=$HOME", ";", "<&>"}

func testSpec(t *testing.T) Spec {
	t.Helper()
	exe, err := os.Executable() // exists and is executable, as systemd-analyze wants
	if err != nil {
		t.Fatal(err)
	}
	return Spec{Name: "gatekeeper-connect", Executable: exe, Args: trickyArgs, StopTimeout: 25 * time.Second}
}

func TestSpecCheck(t *testing.T) {
	good := testSpec(t)
	cases := []struct {
		name   string
		change func(*Spec)
		err    string
	}{
		{"bad name", func(s *Spec) { s.Name = "a b" }, "service name"},
		{"relative executable", func(s *Spec) { s.Executable = "gatekeeper" }, "absolute"},
		{"line break in an argument", func(s *Spec) { s.Args = []string{"-sni=a\nExecStartPre=/bin/sh"} }, "control characters"},
		{"line break in the description", func(s *Spec) { s.Description = "x\n[Service]" }, "control characters"},
	}
	for _, tc := range cases {
		s := good
		tc.change(&s)
		for _, m := range []Manager{&Systemd{}, &Launchd{}} {
			if _, err := m.Render(s); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %T.Render: %v, want %q", tc.name, m, err, tc.err)
			}
		}
	}
}

func TestSystemdQuote(t *testing.T) {
	cases := []struct{ in, want string }{
		{"-server=g:1", "-server=g:1"},
		{"a b", `"a b"`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{"100%", "100%%"},
		{"$HOME", "$$HOME"},
		{";", `";"`},
		{"", `""`},
		{"it's", `"it's"`},
	}
	for _, tc := range cases {
		if got := systemdQuote(tc.in); got != tc.want {
			t.Errorf("systemdQuote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// systemd's own checker accepts the unit: syntax, quoting, every key
// known, the executable there.
func TestSystemdUnitVerifies(t *testing.T) {
	spec := testSpec(t)
	for _, privileged := range []bool{false, true} {
		spec.PrivilegedPort = privileged
		unit, err := (&Systemd{}).Render(spec)
		if err != nil {
			t.Fatal(err)
		}
		servicetest.VerifyUnit(t, spec.Name, unit)
		for _, want := range []string{"TimeoutStopSec=25\n", "Restart=on-failure\n", "StateDirectory=gatekeeper-connect\n",
			"DynamicUser=yes\n", "WantedBy=multi-user.target\n", `"-ca=/etc/gatekeeper connect/ca.pem"`, `"-sni=a\"b\\c"`, "100%%", "$$HOME"} {
			if !bytes.Contains(unit, []byte(want)) {
				t.Errorf("unit lacks %q:\n%s", want, unit)
			}
		}
		if got := bytes.Contains(unit, []byte("AmbientCapabilities=CAP_NET_BIND_SERVICE")); got != privileged {
			t.Errorf("privileged port %v: CAP_NET_BIND_SERVICE granted %v", privileged, got)
		}
	}
}

// recorder is a Runner that records the commands and answers from a table.
type recorder struct {
	mu      sync.Mutex
	cmds    []string
	answers map[string]string // command line → output
	fail    map[string]bool
}

func (r *recorder) run(_ context.Context, name string, args ...string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	line := name + " " + strings.Join(args, " ")
	r.cmds = append(r.cmds, line)
	var err error
	if r.fail[line] {
		err = errors.New("exit status 3")
	}
	return []byte(r.answers[line]), err
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.cmds
	r.cmds = nil
	return c
}

func TestSystemdLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rec := &recorder{answers: map[string]string{"systemctl is-active gatekeeper-connect.service": "active\n"}}
	m := &Systemd{Dir: dir, Run: rec.run}
	spec := testSpec(t)
	if st, err := m.Status(ctx, spec.Name); st != NotInstalled || err != nil {
		t.Errorf("status before install: %q, %v", st, err)
	}
	if err := m.Start(ctx, spec.Name); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("start before install: %v", err)
	}
	if err := m.Install(ctx, spec); err != nil {
		t.Fatal(err)
	}
	want := []string{"systemctl daemon-reload", "systemctl enable gatekeeper-connect.service", "systemctl restart gatekeeper-connect.service"}
	if got := rec.take(); !slices.Equal(got, want) {
		t.Errorf("install ran %q, want %q", got, want)
	}
	path := filepath.Join(dir, "gatekeeper-connect.service")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	servicetest.VerifyUnit(t, spec.Name, b)
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("unit mode %o", fi.Mode().Perm())
	}
	if st, err := m.Status(ctx, spec.Name); st != Running || err != nil {
		t.Errorf("status: %q, %v", st, err)
	}
	rec.answers["systemctl is-active gatekeeper-connect.service"] = "failed\n"
	rec.fail = map[string]bool{"systemctl is-active gatekeeper-connect.service": true}
	if st, err := m.Status(ctx, spec.Name); st != Failed || err != nil {
		t.Errorf("status of a failed unit: %q, %v", st, err)
	}
	rec.take()
	if err := m.Stop(ctx, spec.Name); err != nil {
		t.Fatal(err)
	}
	if err := m.Uninstall(ctx, spec.Name); err != nil {
		t.Fatal(err)
	}
	want = []string{"systemctl stop gatekeeper-connect.service", "systemctl disable --now gatekeeper-connect.service", "systemctl daemon-reload"}
	if got := rec.take(); !slices.Equal(got, want) {
		t.Errorf("stop and uninstall ran %q, want %q", got, want)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unit left behind: %v", err)
	}
	if err := m.Uninstall(ctx, spec.Name); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("uninstall twice: %v", err)
	}
}

// plist is the part of a property list the test reads back.
type plistDict struct {
	Items []struct {
		XMLName xml.Name
		Text    string   `xml:",chardata"`
		Strings []string `xml:"string"`
	} `xml:",any"`
}

func TestLaunchdPlist(t *testing.T) {
	spec := testSpec(t)
	b, err := (&Launchd{}).Render(spec)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Dict plistDict `xml:"dict"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("not well-formed XML: %v\n%s", err, b)
	}
	got := map[string]int{}
	var key string
	for _, it := range doc.Dict.Items {
		switch it.XMLName.Local {
		case "key":
			key = it.Text
			got[key]++
		case "array":
			if key == "ProgramArguments" {
				if want := append([]string{spec.Executable}, spec.Args...); !slices.Equal(it.Strings, want) {
					t.Errorf("ProgramArguments = %q, want %q", it.Strings, want)
				}
			}
		case "string":
			if key == "Label" && it.Text != spec.Name {
				t.Errorf("Label = %q", it.Text)
			}
		}
	}
	for _, k := range []string{"Label", "ProgramArguments", "RunAtLoad", "KeepAlive", "ExitTimeOut", "StandardErrorPath"} {
		if got[k] != 1 {
			t.Errorf("key %s appears %d times", k, got[k])
		}
	}
	for _, want := range []string{"<key>SuccessfulExit</key>\n\t\t<false/>", "<integer>25</integer>",
		"/Library/Application Support/gatekeeper-connect/crash.log"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("plist lacks %q:\n%s", want, b)
		}
	}
	if plutil, err := exec.LookPath("plutil"); err == nil { // on a Mac
		path := filepath.Join(t.TempDir(), "x.plist")
		os.WriteFile(path, b, 0o644)
		if out, err := exec.Command(plutil, "-lint", path).CombinedOutput(); err != nil {
			t.Errorf("plutil -lint: %v\n%s", err, out)
		}
	}
}

func TestLaunchdLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rec := &recorder{answers: map[string]string{"launchctl print system/gatekeeper-connect": "system/gatekeeper-connect = {\n\tactive count = 1\n\tstate = running\n}\n"}}
	m := &Launchd{Dir: dir, Run: rec.run}
	spec := testSpec(t)
	if err := m.Install(ctx, spec); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gatekeeper-connect.plist")
	want := []string{"launchctl enable system/gatekeeper-connect", "launchctl bootstrap system " + path}
	if got := rec.take(); !slices.Equal(got, want) {
		t.Errorf("install ran %q, want %q", got, want)
	}
	// Installing again unloads the old definition first.
	if err := m.Install(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if got := rec.take(); len(got) != 3 || got[0] != "launchctl bootout system/gatekeeper-connect" {
		t.Errorf("reinstall ran %q", got)
	}
	if st, err := m.Status(ctx, spec.Name); st != Running || err != nil {
		t.Errorf("status: %q, %v", st, err)
	}
	rec.take()
	if err := m.Stop(ctx, spec.Name); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, spec.Name); err != nil {
		t.Fatal(err)
	}
	if err := m.Uninstall(ctx, spec.Name); err != nil {
		t.Fatal(err)
	}
	want = []string{"launchctl kill SIGTERM system/gatekeeper-connect", "launchctl kickstart system/gatekeeper-connect", "launchctl bootout system/gatekeeper-connect"}
	if got := rec.take(); !slices.Equal(got, want) {
		t.Errorf("ran %q, want %q", got, want)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("plist left behind: %v", err)
	}
	if st, _ := m.Status(ctx, spec.Name); st != NotInstalled {
		t.Errorf("status after uninstall: %q", st)
	}
}

func TestRotatingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "connect.log")
	r, err := OpenRotating(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	var written []string
	for i := range 20 {
		line := fmt.Sprintf("entry %02d %s\n", i, strings.Repeat("x", 20)) // 30 bytes
		written = append(written, line)
		if n, err := r.Write([]byte(line)); err != nil || n != len(line) {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	// One entry bigger than the limit gets a file of its own.
	big := strings.Repeat("y", 150) + "\n"
	r.Write([]byte(big))
	written = append(written, big)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Write([]byte("late\n")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"connect.log", "connect.log.1", "connect.log.2"}; !slices.Equal(names, want) {
		t.Fatalf("files %q, want %q", names, want)
	}
	// Oldest first, the files hold the latest entries whole and in order.
	var kept string
	for _, n := range []string{"connect.log.2", "connect.log.1", "connect.log"} {
		b, _ := os.ReadFile(filepath.Join(dir, n))
		if len(b) > 100 && string(b) != big {
			t.Errorf("%s: %d bytes, over the limit", n, len(b))
		}
		kept += string(b)
	}
	all := strings.Join(written, "")
	if !strings.HasSuffix(all, kept) || !strings.HasPrefix(kept, "entry ") {
		t.Errorf("kept is not the whole latest entries:\n%s", kept)
	}
	// Reopening appends.
	r, err = OpenRotating(path, 1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	r.Write([]byte("again\n"))
	r.Close()
	if b, _ := os.ReadFile(path); string(b) != big+"again\n" {
		t.Errorf("after reopening: %q", b)
	}
}

func TestEventCore(t *testing.T) {
	ev := &servicetest.Events{}
	log := zap.New(NewEventCore(ev)).With(zap.String("service", "gatekeeper-connect"))
	refused := &connector.DialError{Cause: connector.ErrNotAllowed, Server: "gate.test:5433", AdminURL: "https://admin.test/", Err: io.EOF}
	log.Debug("connection closed")
	log.Info("accepting plain TCP connections")
	log.Warn("listening beyond this computer")
	log.Error(refused.Error(), zap.NamedError("cause", connector.ErrNotAllowed))
	log.Error("nothing accepts connections at gate.test:5433", zap.NamedError("cause", connector.ErrRefused))
	got := ev.List()
	if len(got) != 3 {
		t.Fatalf("%d entries, want 3 (warnings and errors only): %+v", len(got), got)
	}
	want := []struct {
		kind string
		id   uint32
		text string
	}{
		{"warning", EventWarning, "listening beyond this computer"},
		{"error", EventNotAllowed, "Unblock it at https://admin.test/"},
		{"error", EventError, "nothing accepts connections"},
	}
	for i, w := range want {
		e := got[i]
		if e.Kind != w.kind || e.ID != w.id || !strings.Contains(e.Msg, w.text) || !strings.Contains(e.Msg, `"service": "gatekeeper-connect"`) {
			t.Errorf("entry %d = %+v, want %s %d with %q and the fields", i, e, w.kind, w.id, w.text)
		}
	}
	if !NewEventCore(ev).Enabled(zapcore.WarnLevel) || NewEventCore(ev).Enabled(zapcore.InfoLevel) {
		t.Error("EventCore levels: want warnings and above")
	}
}
