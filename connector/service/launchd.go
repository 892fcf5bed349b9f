package service

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gatekeeper-dev/gatekeeper/connector/state"
)

// Launchd manages launchd daemons (macOS): a property list in
// /Library/LaunchDaemons, loaded into the system domain so that it runs at
// boot, as root, whoever is logged in.
type Launchd struct {
	// Dir is where property lists are written. If empty,
	// /Library/LaunchDaemons.
	Dir string
	// Run runs launchctl. If nil, Exec.
	Run Runner
}

var _ Manager = (*Launchd)(nil)

func (m *Launchd) dir() string {
	if m.Dir == "" {
		return "/Library/LaunchDaemons"
	}
	return m.Dir
}

func (m *Launchd) run(ctx context.Context, args ...string) ([]byte, error) {
	if m.Run == nil {
		return Exec(ctx, "launchctl", args...)
	}
	return m.Run(ctx, "launchctl", args...)
}

func (m *Launchd) plistPath(name string) string { return filepath.Join(m.dir(), name+".plist") }

// Render returns the property list. The label is the service name. It
// runs at load (boot), is started again when it exits with a failure
// (KeepAlive/SuccessfulExit false: a stop that drained and exited 0
// stays stopped), gets SIGTERM and ExitTimeOut seconds to drain, and
// sends what the logger cannot (a crash) to a file beside the log.
func (m *Launchd) Render(spec Spec) ([]byte, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	b.WriteString("<!-- Written by \"gatekeeper connect service install\"; run it again to change the flags. -->\n")
	b.WriteString(`<plist version="1.0">` + "\n<dict>\n")
	key := func(k string) { fmt.Fprintf(&b, "\t<key>%s</key>\n", k) }
	str := func(indent, s string) {
		b.WriteString(indent + "<string>")
		xml.EscapeText(&b, []byte(s))
		b.WriteString("</string>\n")
	}
	key("Label")
	str("\t", spec.Name)
	key("ProgramArguments")
	b.WriteString("\t<array>\n")
	for _, a := range append([]string{spec.Executable}, spec.Args...) {
		str("\t\t", a)
	}
	b.WriteString("\t</array>\n")
	key("RunAtLoad")
	b.WriteString("\t<true/>\n")
	key("KeepAlive")
	b.WriteString("\t<dict>\n\t\t<key>SuccessfulExit</key>\n\t\t<false/>\n\t</dict>\n")
	key("ThrottleInterval")
	b.WriteString("\t<integer>5</integer>\n")
	key("ExitTimeOut")
	fmt.Fprintf(&b, "\t<integer>%d</integer>\n", int(spec.StopTimeout.Seconds()+0.999))
	// No ProcessType: "Background" would throttle the CPU and I/O of a
	// program whose every byte an application is waiting for.
	key("StandardErrorPath")
	str("\t", state.DirOn("darwin", spec.Name)+"/crash.log")
	b.WriteString("</dict>\n</plist>\n")
	return b.Bytes(), nil
}

// Install writes the property list and loads it into the system domain
// (which starts it); a loaded one of the same name is unloaded first.
func (m *Launchd) Install(ctx context.Context, spec Spec) error {
	plist, err := m.Render(spec)
	if err != nil {
		return err
	}
	path := m.plistPath(spec.Name)
	if exists(path) {
		m.run(ctx, "bootout", "system/"+spec.Name) // not loaded is fine
	}
	if err := writeFile(path, plist); err != nil {
		return err
	}
	for _, args := range [][]string{{"enable", "system/" + spec.Name}, {"bootstrap", "system", path}} {
		if _, err := m.run(ctx, args...); err != nil {
			return fmt.Errorf("install %s: %w", spec.Name, err)
		}
	}
	return nil
}

// Uninstall unloads the daemon (launchd sends SIGTERM and waits
// ExitTimeOut) and removes its property list.
func (m *Launchd) Uninstall(ctx context.Context, name string) error {
	path := m.plistPath(name)
	if !exists(path) {
		return fmt.Errorf("%s: %w (no %s)", name, ErrNotInstalled, path)
	}
	m.run(ctx, "bootout", "system/"+name) // already unloaded is fine
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("uninstall %s: %w", name, err)
	}
	return nil
}

func (m *Launchd) Start(ctx context.Context, name string) error {
	if !exists(m.plistPath(name)) {
		return fmt.Errorf("%s: %w", name, ErrNotInstalled)
	}
	if _, err := m.run(ctx, "kickstart", "system/"+name); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	return nil
}

// Stop sends SIGTERM: the connector drains and exits 0, which KeepAlive
// leaves stopped until the next start or boot.
func (m *Launchd) Stop(ctx context.Context, name string) error {
	if !exists(m.plistPath(name)) {
		return fmt.Errorf("%s: %w", name, ErrNotInstalled)
	}
	if _, err := m.run(ctx, "kill", "SIGTERM", "system/"+name); err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	return nil
}

// Status reads "state = …" from launchctl print.
func (m *Launchd) Status(ctx context.Context, name string) (State, error) {
	if !exists(m.plistPath(name)) {
		return NotInstalled, nil
	}
	out, err := m.run(ctx, "print", "system/"+name)
	if err != nil {
		return Stopped, nil // installed, not loaded
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "state = "); ok {
			switch v {
			case "running":
				return Running, nil
			case "not running", "waiting":
				return Stopped, nil
			}
			return State(v), nil
		}
	}
	return Stopped, nil
}
