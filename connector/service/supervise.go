package service

import (
	"context"
	"errors"
)

// supervise runs fn, the service's work, as a service manager needs it
// run: closing stop (the manager's stop or shutdown) ends fn's context,
// and the exit code says whether the end was wanted. 0 when fn returned
// nil after a stop; 1 otherwise (an error, or fn ending by itself), which
// the manager's recovery actions answer with a restart.
func supervise(ctx context.Context, fn func(context.Context) error, stop <-chan struct{}) (exitCode uint32, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go runServiceFn(ctx, fn, done)
	stopped := false
	for {
		select {
		case err := <-done:
			if !stopped { // a stop that came with the end counts
				select {
				case <-stop:
					stopped = true
				default:
				}
			}
			switch {
			case err != nil:
				return 1, err
			case !stopped:
				return 1, errors.New("the connector stopped by itself")
			}
			return 0, nil
		case <-stop:
			stop, stopped = nil, true
			cancel()
		}
	}
}

// runServiceFn is the service's work, named for stack dumps.
func runServiceFn(ctx context.Context, fn func(context.Context) error, done chan<- error) {
	done <- fn(ctx)
}
