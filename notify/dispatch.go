package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Store is what a Dispatcher needs of a store.
type Store interface {
	OutboxAccounts(ctx context.Context) ([]string, error)
	OutboxEntries(ctx context.Context, account string) ([]policy.OutboxEntry, error)
	SaveOutbox(ctx context.Context, e policy.OutboxEntry) error
	ClaimLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
}

// Sender delivers one notification to one destination of its kind and
// says what happened ("200", "250"); an error means not delivered.
type Sender interface {
	Send(ctx context.Context, d policy.Destination, o policy.OutboxEntry) (status string, err error)
}

// LeaseName is the fleet-wide lease of the dispatcher.
const LeaseName = "notify"

// Options configure a Dispatcher. The zero value of each field works.
type Options struct {
	// Webhooks and Email deliver each kind of destination. If nil, that
	// kind's deliveries fail, are recorded, and are retried.
	Webhooks, Email Sender
	// Holder names this instance in the lease. If empty, host, process and
	// a random part.
	Holder string
	// Poll is how often the outbox is read. If zero, 500ms.
	Poll time.Duration
	// LeaseTTL is how long the lease lasts unrenewed: how long a fleet goes
	// without delivery after the holder dies. If zero, 10s.
	LeaseTTL time.Duration
	// RetryFor is how long a notification is retried. If zero, 24h.
	RetryFor time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts at one
	// destination, doubled each time. If zero, 1s and 1h.
	MinBackoff, MaxBackoff time.Duration
	// Parallel bounds the accounts delivered to at once. If zero, 8.
	Parallel int
	// Logger; if nil, nothing is logged.
	Logger *zap.Logger
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
}

// Dispatcher delivers the outbox.
type Dispatcher struct {
	store Store
	o     Options
}

// NewDispatcher returns a dispatcher of store's outbox.
func NewDispatcher(store Store, o Options) *Dispatcher {
	if o.Holder == "" {
		host, _ := os.Hostname()
		b := make([]byte, 6)
		rand.Read(b)
		o.Holder = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	if o.Poll <= 0 {
		o.Poll = 500 * time.Millisecond
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.RetryFor <= 0 {
		o.RetryFor = 24 * time.Hour
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Hour
	}
	if o.Parallel <= 0 {
		o.Parallel = 8
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Dispatcher{store: store, o: o}
}

// Run delivers, while this instance holds the lease, until ctx ends; it
// then returns nil. A failing store is logged and retried.
func (d *Dispatcher) Run(ctx context.Context) error {
	t := time.NewTicker(d.o.Poll)
	defer t.Stop()
	var warned time.Time
	for {
		// A store that is down fails every poll: say so once a minute,
		// not twice a second.
		if err := d.Once(ctx); err != nil && ctx.Err() == nil && time.Since(warned) > time.Minute {
			d.o.Logger.Warn("notification delivery", zap.Error(err))
			warned = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once takes or renews the lease and, holding it, makes every attempt
// that is due.
func (d *Dispatcher) Once(ctx context.Context) error {
	held, err := d.store.ClaimLease(ctx, LeaseName, d.o.Holder, d.o.LeaseTTL)
	if err != nil || !held {
		return err
	}
	accts, err := d.store.OutboxAccounts(ctx)
	if err != nil {
		return err
	}
	sem := make(chan struct{}, d.o.Parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, a := range accts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := d.deliverAccount(ctx, a); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// deliverAccount makes the attempts due of one account's notifications,
// oldest first. A destination whose attempt failed, or is not yet due
// again, gets none of the later ones: each destination sees an account's
// notifications in commit order.
func (d *Dispatcher) deliverAccount(ctx context.Context, account string) error {
	es, err := d.store.OutboxEntries(ctx, account)
	if err != nil {
		return err
	}
	blocked := map[string]bool{}
	for _, e := range es {
		changed := false
		for i := range e.Deliveries {
			dl := &e.Deliveries[i]
			key := dl.Destination.Key()
			if dl.Done || blocked[key] {
				continue
			}
			now := d.o.Now()
			if now.Sub(e.CreatedAt) > d.o.RetryFor {
				dl.Attempts = append(dl.Attempts, policy.Attempt{At: now, Status: "gave up: not delivered within " + d.o.RetryFor.String()})
				dl.Done, changed = true, true
				d.o.Logger.Warn("notification given up", zap.String("account", account),
					zap.String("event", e.Event), zap.String("id", e.ID), zap.String("destination", key))
				continue
			}
			if now.Before(dl.NextAt) {
				blocked[key] = true
				continue
			}
			// Only the lease holder delivers: a holder that lost it (a
			// long pause) stops here and leaves the rest to the new one.
			if held, err := d.store.ClaimLease(ctx, LeaseName, d.o.Holder, d.o.LeaseTTL); err != nil || !held {
				if changed {
					return errors.Join(err, d.store.SaveOutbox(ctx, e))
				}
				return err
			}
			status, err := d.send(ctx, dl.Destination, e)
			changed = true
			a := policy.Attempt{At: now, OK: err == nil, Status: status}
			if err != nil {
				a.Status = describe(status, err)
				dl.NextAt = now.Add(d.backoff(len(dl.Attempts) + 1))
				blocked[key] = true
				d.o.Logger.Info("notification not delivered, will retry", zap.String("account", account),
					zap.String("event", e.Event), zap.String("id", e.ID), zap.String("destination", key),
					zap.String("status", a.Status), zap.Time("next", dl.NextAt))
			} else {
				dl.Done = true
			}
			dl.Attempts = append(dl.Attempts, a)
		}
		if changed {
			if err := d.store.SaveOutbox(ctx, e); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *Dispatcher) send(ctx context.Context, dest policy.Destination, e policy.OutboxEntry) (string, error) {
	var s Sender
	switch dest.Kind {
	case policy.DestWebhook:
		s = d.o.Webhooks
	case policy.DestEmail:
		s = d.o.Email
	}
	if s == nil {
		return "", fmt.Errorf("no %s delivery is configured", dest.Kind)
	}
	return s.Send(ctx, dest, e)
}

// backoff is the wait after the nth failed attempt.
func (d *Dispatcher) backoff(n int) time.Duration {
	b := d.o.MinBackoff
	for i := 1; i < n && b < d.o.MaxBackoff; i++ {
		b *= 2
	}
	return min(b, d.o.MaxBackoff)
}

// describe says why an attempt failed without the URL, which may carry a
// receiver's token in its path or query.
func describe(status string, err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if status != "" {
		return status
	}
	return err.Error()
}
