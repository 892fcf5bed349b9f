package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// runServer starts a Server whose Run the test stops itself; done is
// closed when Run returned (without error: the test fails otherwise).
func runServer(t *testing.T, opts Options) (srv *Server, stop context.CancelFunc, done <-chan struct{}) {
	t.Helper()
	opts.Logger = zaptest.NewLogger(t)
	srv, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		if err := srv.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-finished })
	return srv, cancel, finished
}

// TestDrain: on shutdown the listener stops accepting at once, a live
// connection may finish within the drain timeout, and one that does not is
// closed when it runs out.
func TestDrain(t *testing.T) {
	p := newPolicy(t)
	p.account("acct", policy.ModeOn, ipAllowed+"/32")
	up := newUpstream(t, echo)
	const drain = 600 * time.Millisecond
	for _, finishes := range []bool{true, false} {
		lc := tcpListener("l", up.addr())
		lc.Timeouts.Drain = drain
		if finishes {
			lc.Timeouts.Drain = time.Minute // Run must not wait for it
		}
		srv, stop, done := runServer(t, Options{Listeners: []Listener{lc}, Engine: p.engine})
		addr := srv.Addr("l").String()
		c := dial(t, ipAllowed, addr)
		if err := roundTrip(t, c, "before"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		stop()
		waitFor(t, "the listener to close", func() bool {
			nc, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				nc.Close()
			}
			return err != nil
		})
		if err := roundTrip(t, c, "while draining"); err != nil {
			t.Fatalf("live connection broken while draining: %v", err)
		}
		if finishes {
			c.CloseWrite()
			io.ReadAll(c)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return once the last connection ended")
			}
			continue
		}
		closedWithin(t, c, start, drain+time.Second)
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatal("Run did not return after the drain timeout")
		}
		if took := time.Since(start); took < drain {
			t.Errorf("closed after %v, before the drain timeout %v", took, drain)
		}
	}
}

// TestReload swaps routes without touching live connections and moves a
// listener to another address.
func TestReload(t *testing.T) {
	p := newPolicy(t)
	p.account("one", policy.ModeOn, ipAllowed+"/32")
	p.account("two", policy.ModeOn, ipOther+"/32")
	upOne, upTwo := newUpstream(t, echo), newUpstream(t, echo)
	lc := tcpListener("l", "", Route{Account: "one", Upstream: upOne.addr()})
	srv, _, _ := runServer(t, Options{Listeners: []Listener{lc}, Engine: p.engine})
	addr := srv.Addr("l").String()
	live := dial(t, ipAllowed, addr)
	if err := roundTrip(t, live, "one"); err != nil {
		t.Fatal(err)
	}

	// Same address, another account and upstream.
	lc.Addr = addr
	lc.Routes = []Route{{Account: "two", Upstream: upTwo.addr()}}
	if err := srv.Reload(context.Background(), []Listener{lc}); err != nil {
		t.Fatal(err)
	}
	if c, err := tryDial(t, ipAllowed, addr); err == nil {
		expectClosed(t, c, 2*time.Second) // one's client is not two's
	}
	c := dial(t, ipOther, addr)
	if err := roundTrip(t, c, "two"); err != nil {
		t.Fatal(err)
	}
	if upTwo.accepted.Load() != 1 {
		t.Errorf("the new route's upstream got %d connections", upTwo.accepted.Load())
	}
	if err := roundTrip(t, live, "still one"); err != nil {
		t.Fatalf("live connection after reload: %v", err)
	}

	// Another address: the old one stops accepting, live connections stay.
	lc.Addr = "127.0.0.5:0"
	if err := srv.Reload(context.Background(), []Listener{lc}); err != nil {
		t.Fatal(err)
	}
	naddr := srv.Addr("l").String()
	if naddr == addr {
		t.Fatal("listener did not move")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("old address still accepts")
	}
	if err := roundTrip(t, dial(t, ipOther, naddr), "moved"); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(t, live, "still there"); err != nil {
		t.Fatalf("live connection after the move: %v", err)
	}

	// A bad configuration changes nothing.
	bad := lc
	bad.Routes = []Route{{Account: "two", Upstream: "no port"}}
	if err := srv.Reload(context.Background(), []Listener{bad}); err == nil {
		t.Fatal("reload of a bad configuration succeeded")
	}
	if err := roundTrip(t, dial(t, ipOther, naddr), "unchanged"); err != nil {
		t.Fatal(err)
	}

	// Removed: stops accepting.
	if err := srv.Reload(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if srv.Addr("l") != nil {
		t.Error("removed listener still listed")
	}
	if _, err := net.DialTimeout("tcp", naddr, time.Second); err == nil {
		t.Error("removed listener still accepts")
	}
	if err := roundTrip(t, live, "last"); err != nil {
		t.Fatalf("live connection after removal: %v", err)
	}
}

func TestReloadNotRunning(t *testing.T) {
	p := newPolicy(t)
	srv, stop, done := runServer(t, Options{Listeners: []Listener{tcpListener("l", "127.0.0.1:9")}, Engine: p.engine})
	stop()
	<-done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Reload(ctx, nil); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Reload after Run returned: %v", err)
	}
}
