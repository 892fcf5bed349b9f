package state

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatekeeper-dev/gatekeeper/connector"
)

func TestDirFor(t *testing.T) {
	cases := []struct {
		goos string
		env  map[string]string
		want string
	}{
		{"windows", map[string]string{"ProgramData": `D:\ProgramData`}, `D:\ProgramData\gatekeeper-connect`},
		{"windows", nil, `C:\ProgramData\gatekeeper-connect`},
		{"darwin", nil, "/Library/Application Support/gatekeeper-connect"},
		{"linux", nil, "/var/lib/gatekeeper-connect"},
		{"linux", map[string]string{"STATE_DIRECTORY": "/var/lib/private/gatekeeper-connect"}, "/var/lib/private/gatekeeper-connect"},
		// Only an absolute path from the environment counts.
		{"linux", map[string]string{"STATE_DIRECTORY": "relative"}, "/var/lib/gatekeeper-connect"},
	}
	for _, tc := range cases {
		got := dirFor(tc.goos, DefaultName, func(k string) string { return tc.env[k] })
		if got != tc.want {
			t.Errorf("dirFor(%s, %v) = %q, want %q", tc.goos, tc.env, got, tc.want)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"gatekeeper-connect", "gk2", "a", "studio_db.connect"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-x", ".x", "a b", `a\b`, "a/b", "../x", strings.Repeat("a", 65), "ä"} {
		if err := CheckName(bad); err == nil {
			t.Errorf("CheckName(%q) accepted it", bad)
		}
	}
}

func TestWriteSecret(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, IdentityFile)
	for _, content := range []string{"first key", "second key"} {
		if err := WriteSecret(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %o, want 600", fi.Mode().Perm())
		}
		if b, _ := os.ReadFile(path); string(b) != content {
			t.Errorf("content %q, want %q", b, content)
		}
		if err := CheckSecret(path); err != nil {
			t.Errorf("CheckSecret of what WriteSecret wrote: %v", err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}

	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := CheckSecret(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("CheckSecret of a group-readable file: %v", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if err := CheckSecret(link); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("CheckSecret of a symbolic link: %v", err)
	}
	if err := CheckSecret(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CheckSecret of a missing file: %v", err)
	}
}

func TestPrepareDir(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "a", DefaultName)
	if err := PrepareDir(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("not created: %v", err)
	}
	if err := PrepareDir(dir); err != nil {
		t.Errorf("again: %v", err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := PrepareDir(dir); err == nil || !strings.Contains(err.Error(), "written by others") {
		t.Errorf("world-writable directory: %v", err)
	}
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	if err := PrepareDir(file); err == nil {
		t.Error("a file was accepted as the directory")
	}
}

// fakeClock is an injected clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func readStatus(t *testing.T, p string) Status {
	t.Helper()
	s, err := ReadStatus(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func refusal() error {
	return &connector.DialError{Cause: connector.ErrNotAllowed, Server: "gate.test:5433",
		AdminURL: "https://admin.test/", Err: io.EOF}
}

func TestRecorder(t *testing.T) {
	path := filepath.Join(t.TempDir(), StatusFile)
	clock := &fakeClock{t: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)}
	rec, err := NewRecorder(RecorderOptions{Path: path, Every: 30 * time.Second, Now: clock.now},
		Status{Service: DefaultName, Server: "gate.test:5433", AdminURL: "https://admin.test/"})
	if err != nil {
		t.Fatal(err)
	}
	s := readStatus(t, path)
	if s.State != StateStarting || s.Server != "gate.test:5433" || s.PID != os.Getpid() || !s.Started.Equal(clock.t) {
		t.Fatalf("first write: %+v", s)
	}

	// A refusal is written at once, with the explanation naming the page.
	clock.add(time.Second)
	rec.Dialed(refusal())
	s = readStatus(t, path)
	if s.State != StateRefused || s.LastRefusal == nil || s.LastRefusal.Count != 1 ||
		!strings.Contains(s.LastRefusal.Message, "https://admin.test/") {
		t.Fatalf("after a refusal: %+v %+v", s, s.LastRefusal)
	}
	first := s.LastRefusal.First

	// More refusals within Every change the file no more...
	for range 5 {
		clock.add(time.Second)
		rec.Dialed(refusal())
	}
	if s = readStatus(t, path); s.LastRefusal.Count != 1 {
		t.Errorf("rewritten within Every: count %d", s.LastRefusal.Count)
	}
	// ...until Every has passed: then the count and the last time are
	// brought up to date.
	clock.add(30 * time.Second)
	rec.Dialed(refusal())
	s = readStatus(t, path)
	if s.LastRefusal.Count != 7 || !s.LastRefusal.First.Equal(first) || !s.LastRefusal.Last.Equal(clock.t) {
		t.Errorf("after Every: %+v", s.LastRefusal)
	}

	// Let through: written at once; the last refusal stays on record.
	clock.add(time.Second)
	rec.Dialed(nil)
	s = readStatus(t, path)
	if s.State != StateConnected || s.LastConnected == nil || !s.LastConnected.Equal(clock.t) || s.LastRefusal == nil {
		t.Errorf("after success: %+v", s)
	}
	// A new refusal starts a new run.
	clock.add(time.Minute)
	rec.Dialed(refusal())
	s = readStatus(t, path)
	if s.LastRefusal.Count != 1 || !s.LastRefusal.First.Equal(clock.t) {
		t.Errorf("new run of refusals: %+v", s.LastRefusal)
	}
	// Another kind of failure.
	clock.add(time.Second)
	rec.Dialed(&connector.DialError{Cause: connector.ErrRefused, Server: "gate.test:5433", Err: errors.New("refused")})
	s = readStatus(t, path)
	if s.State != StateFailing || s.LastFailure == nil || s.LastFailure.Cause != "connection refused" ||
		!strings.Contains(s.LastFailure.Message, "gatekeeper is down") {
		t.Errorf("after an outage: %+v %+v", s, s.LastFailure)
	}
	// The lease, once devices exist, tells the address the gate saw.
	rec.SetLease(&Lease{Rule: "r-1", Addr: "203.0.113.7", ExpiresAt: clock.t.Add(time.Hour)})
	s = readStatus(t, path)
	if s.Lease == nil || s.LastRefusal.SeenAddr != "203.0.113.7" {
		t.Errorf("after a lease: %+v %+v", s.Lease, s.LastRefusal)
	}
	rec.Stop()
	if s = readStatus(t, path); s.State != StateStopped {
		t.Errorf("after Stop: %s", s.State)
	}
}

func TestRecorderWriteFailure(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewRecorder(RecorderOptions{Path: filepath.Join(dir, "missing", StatusFile)}, Status{}); err == nil {
		t.Fatal("NewRecorder into a missing directory succeeded")
	}
	core, logs := observer.New(zapcore.WarnLevel)
	clock := &fakeClock{t: time.Now()}
	path := filepath.Join(dir, StatusFile)
	rec, err := NewRecorder(RecorderOptions{Path: path, Now: clock.now, Logger: zap.New(core)}, Status{})
	if err != nil {
		t.Fatal(err)
	}
	// The status file becomes a directory: writes fail, are warned about
	// once per Every, and the recorder carries on.
	os.Remove(path)
	os.Mkdir(path, 0o700)
	for range 3 {
		clock.add(time.Second)
		rec.Dialed(refusal())
		rec.Dialed(nil)
	}
	if n := logs.FilterMessageSnippet("cannot write the status file").Len(); n != 1 {
		t.Errorf("%d warnings, want 1", n)
	}
	if rec.Status().State != StateConnected {
		t.Errorf("in memory: %s", rec.Status().State)
	}
}

func TestReport(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	at := now.Add(-3 * time.Minute)
	s := Status{Service: DefaultName, Server: "gate.test:5433", ServerName: "10042.db.test", Listen: "127.0.0.1:5432",
		PID: 42, Started: now.Add(-time.Hour), Updated: at, State: StateRefused,
		LastRefusal: &Refusal{First: at.Add(-time.Minute), Last: at, Count: 4, Message: refusal().Error()}}
	var b strings.Builder
	s.Report(&b, now)
	for _, want := range []string{"gatekeeper connect: refused, to gate.test:5433 (server name 10042.db.test)",
		"applications connect to  127.0.0.1:5432", "last let through         never", "(3m0s ago)", "4 connections since",
		"address the gate saw     unknown", "Unblock it at https://admin.test/", "lease                    none"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	s.LastRefusal.SeenAddr = "203.0.113.7"
	s.Lease = &Lease{Rule: "r-1", Addr: "203.0.113.7", ExpiresAt: now.Add(time.Hour)}
	b.Reset()
	s.Report(&b, now)
	for _, want := range []string{"address the gate saw     203.0.113.7", "lease                    r-1 for 203.0.113.7"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// A newer connector's status file, with fields this one does not know,
// still reads.
func TestReadStatusCompatible(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, StatusFile)
	os.WriteFile(p, []byte(`{"server":"g:1","state":"connected","future_field":{"x":1}}`), 0o644)
	if s, err := ReadStatus(p); err != nil || s.State != StateConnected {
		t.Errorf("ReadStatus: %+v, %v", s, err)
	}
	os.WriteFile(p, []byte(`{"server":`), 0o644)
	if _, err := ReadStatus(p); err == nil {
		t.Error("truncated file read without error")
	}
	var syn *json.SyntaxError
	_, err := ReadStatus(p)
	if !errors.As(err, &syn) && !strings.Contains(err.Error(), "unexpected end") {
		t.Errorf("error does not say what is wrong: %v", err)
	}
}
