package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/connector"
	"github.com/gatekeeper-dev/gatekeeper/connector/service"
	"github.com/gatekeeper-dev/gatekeeper/connector/state"
)

const connectServiceUsage = `Usage:
  gatekeeper connect service install [-name NAME] [-print] -server HOST:PORT [connect flags]
  gatekeeper connect service uninstall|start|stop|status [-name NAME]
  gatekeeper connect status [-name NAME] [-status FILE]

install makes "gatekeeper connect" with the given flags a service of this
computer: it starts with the machine, runs whoever is logged in (or
nobody), and is started again after a failure. The flags are checked first
(a typo fails now, not at the next boot) and saved in the service's own
definition; run install again to change them. A stop lets live
connections finish for -drain, as SIGTERM does.

  Windows  a service (services.msc) running C:\Program Files\NAME\gatekeeper.exe
           (install copies itself there) as LocalSystem; logs to the Event Log
           (Windows Logs > Application, source NAME) and to
           C:\ProgramData\NAME\connect.log
  macOS    a launchd daemon, /Library/LaunchDaemons/NAME.plist; logs to
           /Library/Application Support/NAME/connect.log
  Linux    a systemd unit, /etc/systemd/system/NAME.service, run as its own
           user in a read-only system; logs to the journal (journalctl -u NAME)

The service keeps its status (let through, refused and why) in its
directory (C:\ProgramData\NAME, /Library/Application Support/NAME,
/var/lib/NAME), which "gatekeeper connect status" reads.

Run install, uninstall, start and stop as administrator (Windows: an
elevated prompt; elsewhere: sudo). -print writes the service definition to
standard output instead of installing it.
`

func connectServiceCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 0 {
			fmt.Fprint(stderr, connectServiceUsage)
			return usageError{"connect service: say install, uninstall, start, stop, status or run"}
		}
		fmt.Fprint(stdout, connectServiceUsage)
		return nil
	}
	switch args[0] {
	case "install":
		return connectServiceInstall(ctx, args[1:], stdout, stderr)
	case "run":
		return connectServiceRun(ctx, args[1:], stderr)
	case "status":
		return connectStatusCmd(ctx, "connect service status", args[1:], stdout, stderr)
	case "uninstall", "start", "stop":
		return connectServiceControl(ctx, args[0], args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, connectServiceUsage)
	return usageError{fmt.Sprintf("connect service: unknown command %q", args[0])}
}

// serviceFlags registers the connect flags on fs beside its own, and
// returns a flag set holding the connect flags alone, to tell them apart.
func serviceFlags(fs *flag.FlagSet, f *connectFlags) *flag.FlagSet {
	cfs := newFlags("connect", io.Discard)
	f.register(cfs)
	cfs.VisitAll(func(fl *flag.Flag) { fs.Var(fl.Value, fl.Name, fl.Usage) })
	return cfs
}

func nameFlag(fs *flag.FlagSet) *string {
	return fs.String("name", state.DefaultName, "`name` of the service (and of its directory)")
}

// serviceStopMargin is added to -drain for the service manager's stop
// timeout: time to close the listener and write the status.
const serviceStopMargin = 10 * time.Second

func connectServiceInstall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("connect service install", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), connectServiceUsage+"\nFlags (install's own, then those of gatekeeper connect):\n")
		fs.PrintDefaults()
	}
	name := nameFlag(fs)
	printOnly := fs.Bool("print", false, "write the service definition to standard output instead of installing it")
	var f connectFlags
	cfs := serviceFlags(fs, &f)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := state.CheckName(*name); err != nil {
		return usageError{"connect service install: -name: " + err.Error()}
	}
	if _, err := f.options(); err != nil {
		return err
	}
	// The service starts elsewhere (C:\Windows\System32, /): paths it is
	// given must not depend on where install ran.
	for _, p := range []*string{&f.caFile, &f.logFile, &f.statusFile} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return fmt.Errorf("connect service install: %s: %w", *p, err)
			}
			*p = abs
		}
	}
	spec, err := f.serviceSpec(*name, cfs, fs)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return fmt.Errorf("connect service install: find this program: %w", err)
	}
	if spec.Executable, err = service.PlaceBinary(exe, *name, !*printOnly); err != nil && !*printOnly {
		return fmt.Errorf("connect service install: %w", err)
	} else if err != nil {
		spec.Executable = exe
		fmt.Fprintln(stderr, "warning:", err)
	}
	m, err := service.ForThisSystem()
	if err != nil {
		return fmt.Errorf("connect service install: %w", err)
	}
	if *printOnly {
		b, err := m.Render(spec)
		if err != nil {
			return fmt.Errorf("connect service install: %w", err)
		}
		_, err = stdout.Write(b)
		return err
	}
	if runtime.GOOS != "linux" { // systemd makes its StateDirectory itself
		if err := state.PrepareDir(state.Dir(*name)); err != nil {
			return fmt.Errorf("connect service install: %w", asAdmin(err))
		}
	}
	if err := m.Install(ctx, spec); err != nil {
		return fmt.Errorf("connect service install: %w", asAdmin(err))
	}
	listen, _ := f.listenAddr()
	fmt.Fprintf(stdout, "installed and started the service %s: it starts with this computer and restarts after a failure.\n"+
		"Point the application at %s. \"gatekeeper connect status\" says whether gatekeeper lets this computer through.\n", *name, listen)
	return nil
}

// serviceSpec is the service that runs these flags: "connect service run"
// with every connect flag that was set, as -name=value, in the flag
// package's (sorted) order, so that the same command line installs the
// same definition.
func (f *connectFlags) serviceSpec(name string, connectFS, fs *flag.FlagSet) (service.Spec, error) {
	args := []string{"connect", "service", "run", "-name=" + name}
	fs.Visit(func(fl *flag.Flag) {
		if connectFS.Lookup(fl.Name) != nil {
			args = append(args, "-"+fl.Name+"="+fl.Value.String())
		}
	})
	listen, err := f.listenAddr()
	if err != nil {
		return service.Spec{}, err
	}
	privileged := false
	if _, port, err := net.SplitHostPort(listen); err == nil {
		n, _ := strconv.Atoi(port)
		privileged = n > 0 && n < 1024
	}
	return service.Spec{Name: name, Args: args, StopTimeout: f.drain + serviceStopMargin, PrivilegedPort: privileged}, nil
}

// connectServiceRun is what the service manager runs: connect with the
// saved flags, logging to the log file (and on Windows the Event Log),
// keeping the status file, until the manager stops it.
func connectServiceRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("connect service run", stderr)
	name := nameFlag(fs)
	var f connectFlags
	serviceFlags(fs, &f)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := state.CheckName(*name); err != nil {
		return usageError{"connect service run: -name: " + err.Error()}
	}
	// The service's device key must be the machine's administrators' and
	// the service's alone, as ssh insists of a private key.
	if f.identity != "" {
		if err := state.CheckSecret(f.identity); err != nil {
			return fmt.Errorf("connect service run: -identity: %w", err)
		}
	}
	opts, err := f.options()
	if err != nil {
		return err
	}
	// The service's directory holds its log and status by default. If it
	// cannot be made safe (a link planted in its place, say), nothing is
	// written there, and the error is logged below.
	dir := state.Dir(*name)
	dirErr := state.PrepareDir(dir)
	if f.logFile == "" && dirErr == nil {
		f.logFile = state.DefaultLogFile(*name)
	}
	if f.statusFile == "" && dirErr == nil {
		f.statusFile = filepath.Join(dir, state.StatusFile)
	}
	events, closeEvents, evErr := service.OpenEventLog(*name)
	defer closeEvents()
	// A service that cannot log or keep its status still carries
	// connections: it says so where it can, and runs.
	log, closeLog, err := newConnectLogger(f.level, f.logFile, stderr, events)
	if err != nil && f.logFile != "" {
		fileErr := err
		if log, closeLog, err = newConnectLogger(f.level, "", stderr, events); err == nil {
			log.Error("cannot write the log file; logging to the Event Log (Windows) and standard error only", zap.Error(fileErr))
		}
	}
	if err != nil {
		return err
	}
	defer closeLog()
	if evErr != nil {
		log.Warn("not logging to the Event Log", zap.Error(evErr))
	}
	if dirErr != nil {
		log.Error("the service's directory is not usable; running without its log file and status", zap.Error(dirErr))
	}
	var rec *state.Recorder
	if f.statusFile != "" {
		if rec, err = f.recorder(*name, log); err != nil {
			log.Error("cannot keep the status file; connect status will not know what happens", zap.Error(err))
		} else {
			opts.Dialed = rec.Dialed
			f.recordLeases(rec, deviceID(f.identity))
		}
	}
	opts.Logger = log
	c, err := connector.New(opts)
	if err != nil {
		return usageError{"connect: " + err.Error()}
	}
	f.warnInsecure(log)
	log.Info("service starting", zap.String("service", *name), zap.String("version", buildVersion()),
		zap.String("status", f.statusFile))
	err = service.Run(ctx, *name, f.drain+serviceStopMargin, func(ctx context.Context) error {
		return serveConnect(ctx, c, f, rec, log)
	})
	if err != nil {
		log.Error("service stopped with an error", zap.Error(err))
	}
	return err
}

func connectServiceControl(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("connect service "+verb, stderr)
	name := nameFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	m, err := service.ForThisSystem()
	if err != nil {
		return fmt.Errorf("connect service %s: %w", verb, err)
	}
	switch verb {
	case "uninstall":
		err = m.Uninstall(ctx, *name)
	case "start":
		err = m.Start(ctx, *name)
	case "stop":
		err = m.Stop(ctx, *name)
	}
	if err != nil {
		return fmt.Errorf("connect service %s: %w", verb, asAdmin(err))
	}
	done := map[string]string{"uninstall": "uninstalled", "start": "started", "stop": "stopped"}[verb]
	fmt.Fprintf(stdout, "%s the service %s\n", done, *name)
	return nil
}

// asAdmin adds what to do to a permission error: service commands change
// the machine.
func asAdmin(err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w (run it as administrator: an elevated prompt on Windows, sudo elsewhere)", err)
	}
	return err
}

// connectStatusCmd reports the service's state and what the connector
// last saw: let through, or refused and where to unblock.
func connectStatusCmd(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	flags := newFlags(cmd, stderr)
	name := nameFlag(flags)
	path := flags.String("status", "", "status `file` to read (default the service's, in its directory)")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	if err := state.CheckName(*name); err != nil {
		return usageError{cmd + ": -name: " + err.Error()}
	}
	running := true
	if m, err := service.ForThisSystem(); err == nil && *path == "" {
		st, err := m.Status(ctx, *name)
		if err != nil {
			fmt.Fprintf(stdout, "service %s: cannot tell (%v)\n", *name, err)
		} else {
			fmt.Fprintf(stdout, "service %s: %s\n", *name, st)
			running = st == service.Running
		}
	}
	if *path == "" {
		*path = filepath.Join(state.Dir(*name), state.StatusFile)
	}
	s, err := state.ReadStatus(*path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(stdout, "no status in %s yet: the service writes it when it starts\n", *path)
		return nil
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: %w", cmd, asAdmin(err))
	case err != nil:
		return fmt.Errorf("%s: %w", cmd, err)
	}
	s.Report(stdout, time.Now())
	if !running && s.State != state.StateStopped {
		fmt.Fprintln(stdout, "  (the service is not running: this is what it saw before it ended)")
	}
	return nil
}
