// Package service installs and runs "gatekeeper connect" as the system's
// own kind of service, so that it starts with the machine, survives
// log-offs and restarts after a failure: a Windows service (through the
// service control manager), a launchd daemon on macOS, a systemd unit on
// Linux. The three take the same Spec and answer the same Manager calls.
//
// It also provides what a service needs to be heard: a log file that
// rotates itself (RotatingFile) and, on Windows, a zap core that writes
// warnings and errors to the Event Log (EventCore).
//
// It does not decide what the connector does: Spec.Args are the connect
// flags, checked by the command before it installs them.
package service

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gatekeeper-dev/gatekeeper/connector/state"
)

// Spec describes the service to install.
type Spec struct {
	// Name is the service's name (state.DefaultName unless told otherwise):
	// the Windows service, the launchd label, the systemd unit.
	Name string
	// Description is a line for the service manager's listing.
	Description string
	// Executable is the absolute path of the gatekeeper binary to run.
	Executable string
	// Args follow the executable: "connect service run -name=…" and the
	// connect flags. They are saved in the service's own configuration
	// (the Windows service's command line, the unit's ExecStart=, the
	// property list's ProgramArguments), where an administrator can read
	// them.
	Args []string
	// StopTimeout is how long a stop may take before the service manager
	// kills the process: the connector's -drain and a margin. If zero,
	// DefaultStopTimeout.
	StopTimeout time.Duration
	// PrivilegedPort lets the Linux service listen on a port below 1024.
	PrivilegedPort bool
}

// DefaultStopTimeout bounds a stop when Spec.StopTimeout is zero.
const DefaultStopTimeout = 15 * time.Second

// DefaultDescription is Spec.Description when it is empty.
const DefaultDescription = "gatekeeper connect: carries this computer's database connections to gatekeeper over TLS"

// check validates spec and fills in its defaults.
func (s *Spec) check() error {
	if err := state.CheckName(s.Name); err != nil {
		return err
	}
	if s.Description == "" {
		s.Description = DefaultDescription
	}
	if s.StopTimeout <= 0 {
		s.StopTimeout = DefaultStopTimeout
	}
	if !filepath.IsAbs(s.Executable) && !strings.HasPrefix(s.Executable, "/") {
		return fmt.Errorf("executable %q: not an absolute path", s.Executable)
	}
	for _, a := range append([]string{s.Executable, s.Description}, s.Args...) {
		if strings.ContainsFunc(a, unicode.IsControl) {
			return fmt.Errorf("argument %q: control characters (a line break?) cannot be saved in a service definition", a)
		}
		if !utf8.ValidString(a) || strings.ContainsFunc(a, notXMLChar) {
			return fmt.Errorf("argument %q: not text (invalid UTF-8, or a character a property list cannot hold)", a)
		}
	}
	return nil
}

// notXMLChar reports a character XML 1.0 (a launchd property list) cannot
// carry; control characters are refused before.
func notXMLChar(r rune) bool {
	return (r >= 0xD800 && r <= 0xDFFF) || r == 0xFFFE || r == 0xFFFF || r > 0x10FFFF
}

// State is a service's state as the service manager reports it.
type State string

// States. Each manager maps its own words onto these.
const (
	NotInstalled State = "not installed"
	Stopped      State = "stopped"
	Starting     State = "starting"
	Running      State = "running"
	Stopping     State = "stopping"
	Failed       State = "failed"
)

// Manager installs and controls services on this system.
type Manager interface {
	// Install registers spec to start with the machine and starts it; an
	// installed service of the same name is updated and restarted.
	Install(ctx context.Context, spec Spec) error
	// Uninstall stops and removes the service.
	Uninstall(ctx context.Context, name string) error
	Start(ctx context.Context, name string) error
	// Stop asks the service to stop (the connector drains first) and
	// waits for it, up to ctx.
	Stop(ctx context.Context, name string) error
	Status(ctx context.Context, name string) (State, error)
	// Render returns what Install would write (a unit, a property
	// list, the Windows service's settings), for a person to read or to
	// install by hand.
	Render(spec Spec) ([]byte, error)
}

// ErrNotInstalled is returned for a service that does not exist.
var ErrNotInstalled = errors.New("service not installed")
