package admin

import (
	"context"
	"sync"
	"time"
)

// Limit bounds failed attempts for one key (a client address, or a login).
// Each key has a bucket of Burst failures that refills one every Every
// (but not while locked out). When it is empty, the key is locked out,
// first for Lockout, and each further failure before the bucket refills
// doubles the wait, up to MaxLockout. A full bucket forgets the key's
// history. Zero fields take the defaults of
// the limit they belong to (see LoginLimits).
type Limit struct {
	Burst      int
	Every      time.Duration
	Lockout    time.Duration
	MaxLockout time.Duration
}

// LoginLimits limit failed logins and password changes. The zero value
// takes every default.
type LoginLimits struct {
	// PerIP limits failures from one client address (IPv6: its /64).
	// Defaults: Burst 20, Every 6s (10 a minute), Lockout 1m, MaxLockout 15m,
	// enough for an office behind one NAT where people mistype.
	PerIP Limit
	// PerLogin limits failures for one login (account, and username for a
	// user) from anywhere. Defaults: Burst 5, Every 1m, Lockout 1m,
	// MaxLockout 15m: an online guess of a 12-character password is
	// hopeless at a few tries an hour.
	PerLogin Limit
	// MaxKeys bounds the memory of each limiter; when it is full, keys that
	// are not locked out are forgotten first. Default 100000.
	MaxKeys int
}

func (l LoginLimits) withDefaults() LoginLimits {
	l.PerIP = l.PerIP.withDefaults(Limit{Burst: 20, Every: 6 * time.Second, Lockout: time.Minute, MaxLockout: 15 * time.Minute})
	l.PerLogin = l.PerLogin.withDefaults(Limit{Burst: 5, Every: time.Minute, Lockout: time.Minute, MaxLockout: 15 * time.Minute})
	if l.MaxKeys <= 0 {
		l.MaxKeys = 100000
	}
	return l
}

func (l Limit) withDefaults(d Limit) Limit {
	if l.Burst <= 0 {
		l.Burst = d.Burst
	}
	if l.Every <= 0 {
		l.Every = d.Every
	}
	if l.Lockout <= 0 {
		l.Lockout = d.Lockout
	}
	if l.MaxLockout <= 0 {
		l.MaxLockout = d.MaxLockout
	}
	l.MaxLockout = max(l.MaxLockout, l.Lockout)
	return l
}

// limiter counts failures per key. Successes are not counted, so a busy
// office is never locked out by its own correct logins.
type limiter struct {
	lim     Limit
	maxKeys int

	mu   sync.Mutex
	keys map[string]*bucket
}

type bucket struct {
	tokens      float64
	last        time.Time
	strikes     int // lockouts since the bucket was last full
	lockedUntil time.Time
	// inflight counts attempts let through begin whose outcome is not
	// known yet; wake is closed when one ends.
	inflight int
	wake     chan struct{}
}

func newLimiter(l Limit, maxKeys int) *limiter {
	return &limiter{lim: l, maxKeys: maxKeys, keys: make(map[string]*bucket)}
}

// refill brings b up to now and reports whether it is full again. Nothing
// comes back during a lockout, so a failure right after one doubles it.
func (l *limiter) refill(b *bucket, now time.Time) bool {
	from := b.last
	if b.lockedUntil.After(from) {
		from = b.lockedUntil
	}
	if el := now.Sub(from); el > 0 {
		b.tokens = min(float64(l.lim.Burst), b.tokens+float64(el)/float64(l.lim.Every))
		b.last = now
	}
	return b.tokens >= float64(l.lim.Burst) && !now.Before(b.lockedUntil)
}

// wait returns how long key must wait before its next attempt; zero if
// it may try now.
func (l *limiter) wait(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.keys[key]
	if b == nil {
		return 0
	}
	if now.Before(b.lockedUntil) {
		return b.lockedUntil.Sub(now)
	}
	return 0
}

// begin admits one attempt of key, to be followed by fail or forget and
// then by the returned end. It returns how long key is locked out instead,
// if it is. Attempts in flight count against the budget: when as many are
// in flight as failures remain before a lockout, the next one waits until
// one ends (or ctx does). Otherwise a burst of concurrent attempts would
// all pass the check before the first failure is counted: 200 parallel
// guesses at a login limited to 5 failures had 203 passwords checked.
func (l *limiter) begin(ctx context.Context, key string, now func() time.Time) (end func(), wait time.Duration, err error) {
	for {
		l.mu.Lock()
		t := now()
		b := l.keys[key]
		if b == nil {
			l.makeRoom(t)
			b = &bucket{tokens: float64(l.lim.Burst), last: t}
			l.keys[key] = b
		}
		if t.Before(b.lockedUntil) {
			l.mu.Unlock()
			return nil, b.lockedUntil.Sub(t), nil
		}
		l.refill(b, t)
		if b.tokens-float64(b.inflight) >= 1 {
			b.inflight++
			l.mu.Unlock()
			return func() { l.end(b) }, 0, nil
		}
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		wake := b.wake
		l.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// end ends an attempt begin admitted and wakes those waiting for it.
func (l *limiter) end(b *bucket) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b.inflight--
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
}

// fail counts a failure of key and returns the lockout it caused, if any.
func (l *limiter) fail(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.keys[key]
	if b == nil {
		l.makeRoom(now)
		b = &bucket{tokens: float64(l.lim.Burst), last: now}
		l.keys[key] = b
	}
	if l.refill(b, now) {
		b.strikes = 0
	}
	b.tokens--
	if b.tokens >= 1 {
		return 0
	}
	b.tokens = max(b.tokens, 0)
	d := l.lim.Lockout << min(b.strikes, 30)
	if d <= 0 || d > l.lim.MaxLockout {
		d = l.lim.MaxLockout
	}
	b.strikes++
	b.lockedUntil = now.Add(d)
	return d
}

// forget drops key's history, after a success.
func (l *limiter) forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.keys, key)
}

// makeRoom keeps the map below maxKeys: first it drops keys whose bucket has
// refilled, then, if still full, any key not locked out, then any key.
// Called with mu held.
func (l *limiter) makeRoom(now time.Time) {
	if len(l.keys) < l.maxKeys {
		return
	}
	for k, b := range l.keys {
		if l.refill(b, now) && b.inflight == 0 {
			delete(l.keys, k)
		}
	}
	for pass := 0; len(l.keys) >= l.maxKeys && pass < 2; pass++ {
		for k, b := range l.keys {
			if len(l.keys) < l.maxKeys*9/10 {
				break
			}
			if pass == 1 || !now.Before(b.lockedUntil) {
				delete(l.keys, k)
			}
		}
	}
}
