// Command gatekeeper is a network gatekeeper: a TLS reverse proxy that lets
// a connection through to a database endpoint only from the addresses its
// account allows.
//
//	gatekeeper serve -config FILE
//	gatekeeper check -config FILE
//	gatekeeper account create -config FILE -account 10042 -name "Smith Studio" [-parent 10000]
//	gatekeeper connect -server HOST:PORT [-sni NAME] [-listen ADDR] [-ca FILE] [-pin sha256//…]
//	gatekeeper connect service install|uninstall|start|stop|status [-name NAME] [connect flags]
//	gatekeeper connect status [-name NAME]
//	gatekeeper connect enroll -admin-url URL -code CODE -name NAME -identity FILE [-force]
//	gatekeeper healthcheck [-url URL]
//	gatekeeper version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	// The tz database inside the binary, for the time_zone setting: every
	// instance of a fleet then knows the same zones, whatever its host has.
	_ "time/tzdata"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

const usage = `gatekeeper lets a connection reach a database endpoint only from the
addresses its account allows.

Usage:
  gatekeeper serve -config FILE        run the proxy, admin and ops listeners
  gatekeeper check -config FILE        validate a configuration file
  gatekeeper account create -config FILE -account ID [-name NAME] [-parent ID]
                                       create an account; the master password is
                                       read from stdin, or generated and printed
  gatekeeper account reset-password -config FILE -account ID
                                       set a new master password (stdin, or
                                       generated and printed) and end its sessions
  gatekeeper store reseed -config FILE [-snapshot FILE]
                                       restore the snapshot's policy into a store
                                       that lost its data (a Redis restarted empty)
  gatekeeper store backup -config FILE -out FILE [-key FILE]
                                       write an online, consistent backup of the
                                       store (everything it holds) to one file
  gatekeeper store restore -config FILE -in FILE [-key FILE] [-force]
                                       restore a backup into an empty store or one
                                       that lost its data
  gatekeeper connect -server HOST:PORT [-sni NAME] [-listen ADDR] [-ca FILE] [-pin PIN]
                                       on a desktop computer: carry an application's
                                       plain TCP connections to gatekeeper over TLS
  gatekeeper connect service install|uninstall|start|stop|status [-name NAME] [connect flags]
                                       run connect as a service of this computer
                                       (Windows service, launchd, systemd)
  gatekeeper connect status [-name NAME]
                                       what the connector last saw: let through, or
                                       refused and where to unblock
  gatekeeper connect enroll -admin-url URL -code CODE -name NAME -identity FILE
                                       enrol this computer as a device; writes its
                                       identity (private key) to FILE, mode 0600
  gatekeeper healthcheck [-url URL]    exit 0 if /healthz answers 200 (for containers)
  gatekeeper version                   print the version

Run "gatekeeper COMMAND -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gatekeeper:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a mistake on the command line; it exits 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	switch args[0] {
	case "serve":
		return serveCmd(ctx, args[1:], stderr)
	case "check":
		return checkCmd(args[1:], stdout, stderr)
	case "account":
		switch {
		case len(args) >= 2 && args[1] == "create":
			return accountCreateCmd(ctx, args[2:], stdin, stdout, stderr)
		case len(args) >= 2 && args[1] == "reset-password":
			return accountResetPasswordCmd(ctx, args[2:], stdin, stdout, stderr)
		}
		return usageError{"usage: gatekeeper account create|reset-password -config FILE -account ID …"}
	case "store":
		switch {
		case len(args) >= 2 && args[1] == "reseed":
			return storeReseedCmd(ctx, args[2:], stdout, stderr)
		case len(args) >= 2 && args[1] == "backup":
			return storeBackupCmd(ctx, args[2:], stdout, stderr)
		case len(args) >= 2 && args[1] == "restore":
			return storeRestoreCmd(ctx, args[2:], stdout, stderr)
		}
		return usageError{"usage: gatekeeper store reseed|backup|restore -config FILE …"}
	case "connect":
		return connectCmd(ctx, args[1:], stdout, stderr)
	case "healthcheck":
		return healthcheckCmd(ctx, args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "gatekeeper", buildVersion())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}
