package service

import (
	"context"
	"errors"
	"testing"
)

// The exit code the Windows service reports, which decides whether the
// service manager restarts it.
func TestSupervise(t *testing.T) {
	boom := errors.New("listen: address in use")
	cases := []struct {
		name    string
		stop    bool
		fn      func(ctx context.Context) error
		code    uint32
		wantErr bool
	}{
		{"stopped, drained", true, func(ctx context.Context) error { <-ctx.Done(); return nil }, 0, false},
		{"stopped, failed while draining", true, func(ctx context.Context) error { <-ctx.Done(); return boom }, 1, true},
		{"failed", false, func(ctx context.Context) error { return boom }, 1, true},
		{"ended by itself", false, func(ctx context.Context) error { return nil }, 1, true},
	}
	for _, tc := range cases {
		stop := make(chan struct{})
		if tc.stop {
			close(stop)
		}
		code, err := supervise(context.Background(), tc.fn, stop)
		if code != tc.code || (err != nil) != tc.wantErr {
			t.Errorf("%s: exit code %d, %v; want %d, error %v", tc.name, code, err, tc.code, tc.wantErr)
		}
	}
}
