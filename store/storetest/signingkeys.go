package storetest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// testSigningKeys checks the key ring's compare-and-set: a swap from a
// stale version stores nothing, and of writers racing from one version
// exactly one wins.
func testSigningKeys(t *testing.T, s policy.Store) {
	ctx := t.Context()
	ring, err := s.SigningKeys(ctx)
	if err != nil || ring.Version != 0 || len(ring.Keys) != 0 {
		t.Fatalf("SigningKeys of an empty store = %+v, %v; want none, version 0", ring, err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	k1 := policy.SigningKey{ID: "k1", Sealed: "v1.one", PublishedAt: now, ActiveAt: now}
	k2 := policy.SigningKey{ID: "k2", Sealed: "v1.two", PublishedAt: now, ActiveAt: now.Add(time.Hour)}
	if ok, err := s.SwapSigningKeys(ctx, 0, []policy.SigningKey{k1}); err != nil || !ok {
		t.Fatalf("first SwapSigningKeys = %v, %v; want true", ok, err)
	}
	if ok, err := s.SwapSigningKeys(ctx, 0, []policy.SigningKey{k2}); err != nil || ok {
		t.Fatalf("SwapSigningKeys from a stale version = %v, %v; want false", ok, err)
	}
	ring, err = s.SigningKeys(ctx)
	if err != nil || ring.Version != 1 || !slices.EqualFunc(ring.Keys, []policy.SigningKey{k1}, sameKey) {
		t.Fatalf("SigningKeys = %+v, %v; want k1 at version 1", ring, err)
	}

	const writers = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins []int
	)
	for i := range writers {
		wg.Go(func() {
			ok, err := s.SwapSigningKeys(ctx, 1, []policy.SigningKey{k1, {ID: string(rune('a' + i)), Sealed: "v1.x", PublishedAt: now, ActiveAt: now}})
			if err != nil {
				t.Errorf("SwapSigningKeys writer %d: %v", i, err)
			}
			if ok {
				mu.Lock()
				wins = append(wins, i)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(wins) != 1 {
		t.Fatalf("racing swaps from one version: %d won (%v), want exactly one", len(wins), wins)
	}
	ring, err = s.SigningKeys(ctx)
	if err != nil || ring.Version != 2 || len(ring.Keys) != 2 || ring.Keys[1].ID != string(rune('a'+wins[0])) {
		t.Fatalf("SigningKeys after the race = %+v, %v; want the winner's ring at version 2", ring, err)
	}
}

func sameKey(a, b policy.SigningKey) bool {
	return a.ID == b.ID && a.Sealed == b.Sealed && a.PublishedAt.Equal(b.PublishedAt) && a.ActiveAt.Equal(b.ActiveAt)
}
