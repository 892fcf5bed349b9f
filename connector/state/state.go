// Package state keeps what gatekeeper connect stores on this computer:
// where its files live on each system (Dir), the device identity file that
// only the machine's administrators and the service may read (WriteSecret,
// CheckSecret), and the status file that "gatekeeper connect status"
// reports from (Status, Recorder).
//
// It does not make or use the identity itself (the devices feature does):
// it only gives it a place and protects it.
//
// Why an ACL and not DPAPI on Windows: the service runs as LocalSystem, and
// a secret protected with DPAPI's machine scope can be decrypted by any
// process on the machine, so the file would need an ACL anyway; DPAPI's
// user scope would tie the secret to whichever account enrolled, which the
// service is not. A protected DACL granting SYSTEM and Administrators only
// is the same rule as mode 0600 on Unix, inspectable with icacls, and what
// CheckSecret verifies before the secret is used.
package state

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
)

// DefaultName is the service name, and the name of its directory, unless
// told otherwise.
const DefaultName = "gatekeeper-connect"

// File names in Dir.
const (
	IdentityFile = "identity"            // the device's key (devices feature)
	StatusFile   = "connect-status.json" // what the running connector last saw
	LogFile      = "connect.log"         // the service's log, where the system has no journal
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// CheckName reports whether name can name a service and its directory on
// every system.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("service name %q: want letters, digits, '.', '_' or '-', at most 64, starting with a letter or digit", name)
	}
	return nil
}

// Dir is the connector's per-machine directory for the service name:
//
//	Windows: %ProgramData%\NAME (C:\ProgramData\gatekeeper-connect)
//	macOS:   /Library/Application Support/NAME
//	Linux:   $STATE_DIRECTORY (systemd's StateDirectory=), else /var/lib/NAME
func Dir(name string) string { return DirOn(runtime.GOOS, name) }

// DirOn is Dir as it is on the system goos (for writing another system's
// service definition).
func DirOn(goos, name string) string { return dirFor(goos, name, os.Getenv) }

func dirFor(goos, name string, getenv func(string) string) string {
	switch goos {
	case "windows":
		base := getenv("ProgramData")
		if base == "" {
			base = `C:\ProgramData`
		}
		return base + `\` + name
	case "darwin":
		return "/Library/Application Support/" + name
	}
	// systemd sets STATE_DIRECTORY to the service's own directory, which
	// with DynamicUser= lives under /var/lib/private.
	if d := getenv("STATE_DIRECTORY"); d != "" && filepath.IsAbs(d) {
		return d
	}
	return "/var/lib/" + name
}

// IdentityPath is where the device identity of the service name lives.
func IdentityPath(name string) string { return filepath.Join(Dir(name), IdentityFile) }

// DefaultLogFile is where the service logs on systems without a journal
// (Windows, macOS), or "" where the service manager keeps the log (Linux:
// journald).
func DefaultLogFile(name string) string {
	if runtime.GOOS == "linux" {
		return ""
	}
	return filepath.Join(Dir(name), LogFile)
}
