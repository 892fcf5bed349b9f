package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// follower runs Follow in the background and queues what it delivers.
type follower struct {
	changes chan policy.Change
	done    chan struct{} // closed when Follow has returned, err set
	err     error
	stop    context.CancelFunc
}

// follow starts following from cursor until the test ends.
func follow(t *testing.T, s policy.Store, cursor string) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	f := &follower{changes: make(chan policy.Change, 1024), done: make(chan struct{}), stop: cancel}
	go f.run(ctx, s, cursor)
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.done:
		case <-time.After(waitChange):
			t.Errorf("Follow did not return within %v of its context ending", waitChange)
		}
	})
	return f
}

func (f *follower) run(ctx context.Context, s policy.Store, cursor string) {
	defer close(f.done)
	f.err = s.Follow(ctx, cursor, func(batch []policy.Change) {
		for _, c := range batch {
			select {
			case f.changes <- c:
			case <-ctx.Done():
				return
			}
		}
	})
}

// next returns the next change, failing the test if none comes in time or
// Follow gives up.
func (f *follower) next(t *testing.T) policy.Change {
	t.Helper()
	select {
	case c := <-f.changes:
		return c
	case <-f.done:
		t.Fatalf("Follow returned while a change was expected: %v", f.err)
	case <-time.After(waitChange):
		t.Fatalf("no change within %v", waitChange)
	}
	return policy.Change{}
}

// quiet fails the test if a change arrives or Follow returns soon.
func (f *follower) quiet(t *testing.T) {
	t.Helper()
	select {
	case c := <-f.changes:
		t.Fatalf("unexpected change %+v", c)
	case <-f.done:
		t.Fatalf("Follow returned unexpectedly: %v", f.err)
	case <-time.After(quiet):
	}
}
