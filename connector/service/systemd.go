package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Runner runs a command of the service manager (systemctl, launchctl) and
// returns its combined output.
type Runner func(ctx context.Context, name string, args ...string) ([]byte, error)

// Exec is the Runner that runs commands for real.
func Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Systemd manages systemd units (Linux).
type Systemd struct {
	// Dir is where units are written. If empty, /etc/systemd/system.
	Dir string
	// Run runs systemctl. If nil, Exec.
	Run Runner
}

var _ Manager = (*Systemd)(nil)

func (m *Systemd) dir() string {
	if m.Dir == "" {
		return "/etc/systemd/system"
	}
	return m.Dir
}

func (m *Systemd) run(ctx context.Context, args ...string) ([]byte, error) {
	if m.Run == nil {
		return Exec(ctx, "systemctl", args...)
	}
	return m.Run(ctx, "systemctl", args...)
}

func (m *Systemd) unitPath(name string) string { return filepath.Join(m.dir(), name+".service") }

// Render returns the unit. The service runs as a user systemd makes for it
// (DynamicUser=), in a read-only system with its own state directory
// (/var/lib/NAME, mode 0700: the device identity goes there), restarts on
// failure, and on stop gets SIGTERM and StopTimeout to drain.
func (m *Systemd) Render(spec Spec) ([]byte, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# Written by \"gatekeeper connect service install\"; run it again to change")
	w("# the flags, \"gatekeeper connect service uninstall\" to remove it.")
	w("[Unit]")
	w("Description=%s", spec.Description)
	w("Documentation=https://github.com/gatekeeper-dev/gatekeeper#installing-the-connector-on-the-studios-pcs")
	w("Wants=network-online.target")
	w("After=network-online.target")
	w("")
	w("[Service]")
	w("Type=exec")
	cmd := []string{systemdQuote(spec.Executable)}
	for _, a := range spec.Args {
		cmd = append(cmd, systemdQuote(a))
	}
	w("ExecStart=%s", strings.Join(cmd, " "))
	w("# SIGTERM: stop accepting, let live connections run for -drain, then exit.")
	w("KillSignal=SIGTERM")
	w("TimeoutStopSec=%d", int(spec.StopTimeout.Seconds()+0.999))
	w("Restart=on-failure")
	w("RestartSec=5s")
	w("DynamicUser=yes")
	w("StateDirectory=%s", spec.Name)
	w("StateDirectoryMode=0700")
	w("UMask=0077")
	if spec.PrivilegedPort {
		w("CapabilityBoundingSet=CAP_NET_BIND_SERVICE")
		w("AmbientCapabilities=CAP_NET_BIND_SERVICE")
	} else {
		w("CapabilityBoundingSet=")
	}
	for _, l := range []string{
		"NoNewPrivileges=yes",
		"ProtectSystem=strict",
		"ProtectHome=read-only",
		"PrivateTmp=yes",
		"PrivateDevices=yes",
		"ProtectKernelTunables=yes",
		"ProtectKernelModules=yes",
		"ProtectKernelLogs=yes",
		"ProtectControlGroups=yes",
		"ProtectClock=yes",
		"ProtectHostname=yes",
		"ProtectProc=invisible",
		"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
		"RestrictNamespaces=yes",
		"RestrictRealtime=yes",
		"RestrictSUIDSGID=yes",
		"LockPersonality=yes",
		"MemoryDenyWriteExecute=yes",
		"SystemCallArchitectures=native",
		"SystemCallFilter=@system-service",
		"SystemCallFilter=~@privileged",
	} {
		w("%s", l)
	}
	w("")
	w("[Install]")
	w("WantedBy=multi-user.target")
	return b.Bytes(), nil
}

// systemdQuote quotes one word of ExecStart=. systemd splits the line at
// white space, honours double quotes with C escapes, and expands %
// specifiers and $ variables, so those are doubled; a word that is a lone
// ";" would separate commands, so it is quoted too.
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && s != ";" && !strings.ContainsAny(s, " \t\"'\\") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// Install writes the unit, enables it (start at boot) and (re)starts it.
func (m *Systemd) Install(ctx context.Context, spec Spec) error {
	unit, err := m.Render(spec)
	if err != nil {
		return err
	}
	path := m.unitPath(spec.Name)
	if err := writeFile(path, unit); err != nil {
		return err
	}
	for _, args := range [][]string{{"daemon-reload"}, {"enable", spec.Name + ".service"}, {"restart", spec.Name + ".service"}} {
		if _, err := m.run(ctx, args...); err != nil {
			return fmt.Errorf("install %s: %w", spec.Name, err)
		}
	}
	return nil
}

// Uninstall disables and stops the unit, and removes its file.
func (m *Systemd) Uninstall(ctx context.Context, name string) error {
	path := m.unitPath(name)
	if !exists(path) {
		return fmt.Errorf("%s: %w (no %s)", name, ErrNotInstalled, path)
	}
	if _, err := m.run(ctx, "disable", "--now", name+".service"); err != nil {
		return fmt.Errorf("uninstall %s: %w", name, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("uninstall %s: %w", name, err)
	}
	if _, err := m.run(ctx, "daemon-reload"); err != nil {
		return fmt.Errorf("uninstall %s: %w", name, err)
	}
	return nil
}

func (m *Systemd) Start(ctx context.Context, name string) error {
	return m.control(ctx, "start", name)
}

func (m *Systemd) Stop(ctx context.Context, name string) error {
	return m.control(ctx, "stop", name)
}

func (m *Systemd) control(ctx context.Context, verb, name string) error {
	if !exists(m.unitPath(name)) {
		return fmt.Errorf("%s: %w", name, ErrNotInstalled)
	}
	if _, err := m.run(ctx, verb, name+".service"); err != nil {
		return fmt.Errorf("%s %s: %w", verb, name, err)
	}
	return nil
}

// Status asks systemctl is-active, which answers in words and exits
// non-zero for anything but active.
func (m *Systemd) Status(ctx context.Context, name string) (State, error) {
	if !exists(m.unitPath(name)) {
		return NotInstalled, nil
	}
	out, err := m.run(ctx, "is-active", name+".service")
	word, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	switch word {
	case "active", "reloading":
		return Running, nil
	case "inactive":
		return Stopped, nil
	case "activating":
		return Starting, nil
	case "deactivating":
		return Stopping, nil
	case "failed":
		return Failed, nil
	}
	if err != nil {
		return "", fmt.Errorf("status of %s: %w", name, err)
	}
	return State(word), nil
}

// writeFile writes a service definition, readable by all (the service
// manager reads it; it holds no secret), replacing any old one whole.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// exists reports whether a service definition is at path.
func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
