//go:build !windows

package service

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"go.uber.org/zap/zapcore"
)

// ForThisSystem returns the Manager of this system: systemd on Linux,
// launchd on macOS.
func ForThisSystem() (Manager, error) {
	switch runtime.GOOS {
	case "linux":
		return &Systemd{}, nil
	case "darwin":
		return &Launchd{}, nil
	}
	return nil, fmt.Errorf("no service manager for %s: run gatekeeper connect from the system's own startup mechanism", runtime.GOOS)
}

// Run runs fn until ctx ends. On Windows it talks to the service control
// manager; elsewhere the service manager sends SIGTERM, which ends ctx.
func Run(ctx context.Context, name string, stopTimeout time.Duration, fn func(context.Context) error) error {
	return fn(ctx)
}

// OpenEventLog returns nil (only Windows has an Event Log): log to the
// journal or a file.
func OpenEventLog(name string) (zapcore.Core, func(), error) { return nil, func() {}, nil }
