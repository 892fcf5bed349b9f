package assertion_test

import (
	"strconv"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/assertion"
)

// BenchmarkAssert/cached is the per-request cost once a user's token is
// cached; /sign is the cost when it must be signed (a new user or route,
// or every TTL/2); /verify is an application's check.
func BenchmarkAssert(b *testing.B) {
	c := newClock()
	s := newSigner(b, boltStore(b), c, testKey(1))
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Assert(b.Context(), "10042", "alice", aud); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sign", func(b *testing.B) {
		users := make([]string, 4096)
		for i := range users {
			users[i] = "user" + strconv.Itoa(i)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c.Add(31e9) // past TTL/2: every call signs
			if _, err := s.Assert(b.Context(), "10042", users[i%len(users)], aud); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("verify", func(b *testing.B) {
		tok, _ := s.Assert(b.Context(), "10042", "alice", aud)
		keys := s.Keys()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := assertion.Verify(tok, keys, aud, c.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
