package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

// ForThisSystem returns the Windows service manager.
func ForThisSystem() (Manager, error) { return &Windows{}, nil }

// Windows manages Windows services through the service control manager.
// Every call needs an elevated (administrator) prompt.
type Windows struct{}

var _ Manager = (*Windows)(nil)

func (spec Spec) winConfig() mgr.Config {
	return mgr.Config{
		DisplayName: "gatekeeper connect (" + spec.Name + ")",
		Description: spec.Description,
		StartType:   mgr.StartAutomatic,
		// ServiceStartName empty: LocalSystem, the account the identity
		// file's ACL names.
		ErrorControl: mgr.ErrorNormal,
	}
}

// Render describes what Install sets, as the sc.exe commands that would
// do the same.
func (m *Windows) Render(spec Spec) ([]byte, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	cmdline := windows.EscapeArg(spec.Executable)
	for _, a := range spec.Args {
		cmdline += " " + windows.EscapeArg(a)
	}
	c := spec.winConfig()
	var b strings.Builder
	fmt.Fprintf(&b, "sc.exe create %s binPath= %s start= auto DisplayName= %s\n", spec.Name, windows.EscapeArg(cmdline), windows.EscapeArg(c.DisplayName))
	fmt.Fprintf(&b, "sc.exe description %s %s\n", spec.Name, windows.EscapeArg(c.Description))
	fmt.Fprintf(&b, "sc.exe failure %s reset= 86400 actions= restart/5000/restart/10000/restart/60000\n", spec.Name)
	fmt.Fprintf(&b, "sc.exe failureflag %s 1\n", spec.Name)
	fmt.Fprintf(&b, "rem Event Log source %s (Application log), message file EventCreate.exe\n", spec.Name)
	return []byte(b.String()), nil
}

// Install creates the service (or updates it and restarts it), sets it to
// start with the machine and to restart on failure, registers its Event
// Log source, and starts it.
func (m *Windows) Install(ctx context.Context, spec Spec) error {
	if err := spec.check(); err != nil {
		return err
	}
	sm, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service manager (run as administrator): %w", err)
	}
	defer sm.Disconnect()
	s, err := sm.OpenService(spec.Name)
	if err == nil {
		// Installed already: stop it, then take the new settings.
		if err := stopAndWait(ctx, s); err != nil {
			s.Close()
			return err
		}
		c, err := s.Config()
		if err == nil {
			nc := spec.winConfig()
			c.DisplayName, c.Description, c.StartType = nc.DisplayName, nc.Description, nc.StartType
			c.BinaryPathName = windows.EscapeArg(spec.Executable)
			for _, a := range spec.Args {
				c.BinaryPathName += " " + windows.EscapeArg(a)
			}
			err = s.UpdateConfig(c)
		}
		if err != nil {
			s.Close()
			return fmt.Errorf("update service %s: %w", spec.Name, err)
		}
	} else {
		s, err = sm.CreateService(spec.Name, spec.Executable, spec.winConfig(), spec.Args...)
		if err != nil {
			return fmt.Errorf("create service %s: %w", spec.Name, err)
		}
	}
	defer s.Close()
	// Restart after a failure: in 5 s, then 10 s, then every minute, the
	// count reset after a day without one.
	recovery := []mgr.RecoveryAction{
		{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 10 * time.Second},
		{Type: mgr.ServiceRestart, Delay: time.Minute},
	}
	if err := s.SetRecoveryActions(recovery, 86400); err != nil {
		return fmt.Errorf("service %s: restart on failure: %w", spec.Name, err)
	}
	// An exit with an error code (not only a crash) counts as a failure.
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return fmt.Errorf("service %s: restart on failure: %w", spec.Name, err)
	}
	if err := eventlog.InstallAsEventCreate(spec.Name, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil &&
		!strings.Contains(err.Error(), "registry key already exists") {
		return fmt.Errorf("service %s: register the Event Log source: %w", spec.Name, err)
	}
	if err := s.Start(); err != nil {
		return fmt.Errorf("start service %s: %w", spec.Name, err)
	}
	return nil
}

// Uninstall stops the service, deletes it and its Event Log source.
func (m *Windows) Uninstall(ctx context.Context, name string) error {
	return m.with(name, func(s *mgr.Service) error {
		if err := stopAndWait(ctx, s); err != nil {
			return err
		}
		if err := s.Delete(); err != nil {
			return fmt.Errorf("delete service %s: %w", name, err)
		}
		eventlog.Remove(name) // gone already is fine
		return nil
	})
}

func (m *Windows) Start(ctx context.Context, name string) error {
	return m.with(name, func(s *mgr.Service) error {
		if err := s.Start(); err != nil {
			return fmt.Errorf("start service %s: %w", name, err)
		}
		return nil
	})
}

func (m *Windows) Stop(ctx context.Context, name string) error {
	return m.with(name, func(s *mgr.Service) error { return stopAndWait(ctx, s) })
}

// Status asks with the least access there is (connect, query status), so
// that a user who is not an administrator can run "connect status".
func (m *Windows) Status(ctx context.Context, name string) (State, error) {
	h, err := windows.OpenSCManager(nil, nil, windows.SC_MANAGER_CONNECT)
	if err != nil {
		return "", fmt.Errorf("connect to the service manager: %w", err)
	}
	defer windows.CloseServiceHandle(h)
	p, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return "", fmt.Errorf("service %q: %w", name, err)
	}
	sh, err := windows.OpenService(h, p, windows.SERVICE_QUERY_STATUS)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return NotInstalled, nil
	}
	if err != nil {
		return "", fmt.Errorf("open service %s: %w", name, err)
	}
	s := &mgr.Service{Name: name, Handle: sh}
	defer s.Close()
	q, err := s.Query()
	if err != nil {
		return "", fmt.Errorf("query service %s: %w", name, err)
	}
	return winState(q.State), nil
}

func winState(s svc.State) State {
	switch s {
	case svc.Stopped:
		return Stopped
	case svc.StartPending, svc.ContinuePending:
		return Starting
	case svc.StopPending, svc.PausePending:
		return Stopping
	case svc.Running:
		return Running
	}
	return State(fmt.Sprintf("state %d", s))
}

// with opens the service name and calls fn with it.
func (m *Windows) with(name string, fn func(*mgr.Service) error) error {
	sm, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service manager (run as administrator): %w", err)
	}
	defer sm.Disconnect()
	s, err := sm.OpenService(name)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return fmt.Errorf("%s: %w", name, ErrNotInstalled)
	}
	if err != nil {
		return fmt.Errorf("open service %s: %w", name, err)
	}
	defer s.Close()
	return fn(s)
}

// stopAndWait asks a running service to stop and waits until it has (the
// connector drains within the wait hint it reports), up to ctx.
func stopAndWait(ctx context.Context, s *mgr.Service) error {
	q, err := s.Query()
	if err != nil {
		return fmt.Errorf("query service %s: %w", s.Name, err)
	}
	if q.State == svc.Stopped {
		return nil
	}
	if q.State != svc.StopPending {
		if _, err := s.Control(svc.Stop); err != nil {
			return fmt.Errorf("stop service %s: %w", s.Name, err)
		}
	}
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop service %s: %w", s.Name, ctx.Err())
		case <-t.C:
		}
		q, err := s.Query()
		if err != nil {
			return fmt.Errorf("query service %s: %w", s.Name, err)
		}
		if q.State == svc.Stopped {
			return nil
		}
	}
}

// Run runs fn as the Windows service name when the service control
// manager started this process, and plainly (until ctx ends) when a person
// did. A stop or shutdown from the manager ends fn's context, the
// SIGTERM of the other systems; the manager is told to wait stopTimeout
// for the drain. fn returning on its own, or with an error, stops the
// service with exit code 1, which the recovery actions restart.
func Run(ctx context.Context, name string, stopTimeout time.Duration, fn func(context.Context) error) error {
	isService, err := svc.IsWindowsService()
	if err != nil {
		return fmt.Errorf("service %s: %w", name, err)
	}
	if !isService {
		return fn(ctx)
	}
	h := &handler{ctx: ctx, fn: fn, stopTimeout: stopTimeout}
	if err := svc.Run(name, h); err != nil {
		return fmt.Errorf("service %s: %w", name, err)
	}
	return h.err
}

type handler struct {
	ctx         context.Context
	fn          func(context.Context) error
	stopTimeout time.Duration
	err         error
}

func (h *handler) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	stop := make(chan struct{})
	type outcome struct {
		code uint32
		err  error
	}
	result := make(chan outcome, 1)
	go func(stop <-chan struct{}) {
		code, err := supervise(h.ctx, h.fn, stop)
		result <- outcome{code, err}
	}(stop)
	status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	for {
		select {
		case o := <-result:
			h.err = o.err
			return false, o.code
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				status <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				if stop != nil {
					// The connector drains for -drain; tell the manager
					// how long to wait before it gives up on us.
					status <- svc.Status{State: svc.StopPending, WaitHint: uint32((h.stopTimeout + 5*time.Second).Milliseconds())}
					close(stop)
					stop = nil
				}
			}
		}
	}
}

// OpenEventLog opens the Event Log source name (registered by Install) and
// returns a zap core writing to it and a func that closes it.
func OpenEventLog(name string) (zapcore.Core, func(), error) {
	l, err := eventlog.Open(name)
	if err != nil {
		return nil, func() {}, fmt.Errorf("open the Event Log source %s: %w", name, err)
	}
	return NewEventCore(l), func() { l.Close() }, nil
}
