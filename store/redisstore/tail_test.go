package redisstore

import (
	"errors"
	"fmt"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// On a single node, Follow reads the changes and their accounts' policies
// in one script (tailScript): every change comes Loaded, its policy as
// the store holds it at the change or later, and the cursor moves on as
// with XREAD. A burst of changes keeps the
// reader tailing without a wait in XREAD between batches.
func TestTailCarriesPolicies(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t, srv)
	ctx := t.Context()
	create(t, s, "keep")
	cur, err := s.positions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := startFollow(t, s, cur.String())

	const burst = 40
	for n := range burst {
		if err := addRule(ctx, s, "keep", n); err != nil {
			t.Fatal(err)
		}
	}
	var first, last policy.Change
	rules := 0
	for n := range burst {
		c := f.next(t)
		if c.Account != "keep" || !c.Loaded || c.Policy == nil {
			t.Fatalf("change %+v: want keep's, loaded with its policy", c)
		}
		if c.Policy.Account.ID != "keep" {
			t.Fatalf("the policy of %s came with a change of keep", c.Policy.Account.ID)
		}
		// Read at the change or later: never fewer rules than it made,
		// nor than an earlier change carried.
		if len(c.Policy.Rules) < max(n+1, rules) {
			t.Fatalf("change %d carried %d rules, an earlier one %d", n+1, len(c.Policy.Rules), rules)
		}
		rules = len(c.Policy.Rules)
		if first.Cursor == "" {
			first = c
		}
		last = c
	}
	if rules != burst {
		t.Fatalf("the last change of keep carried %d rules, want %d", rules, burst)
	}
	if first.Cursor == last.Cursor || first.Cursor == cur.String() {
		t.Fatal("the cursor did not move")
	}
	want, err := s.LoadAccountPolicies(ctx, []string{"keep"})
	if err != nil {
		t.Fatal(err)
	}
	if len(want[0].Rules) != len(last.Policy.Rules) {
		t.Fatalf("LoadAccountPolicies reads %d rules, the feed carried %d", len(want[0].Rules), len(last.Policy.Rules))
	}
	if s.noTail.Load() {
		t.Fatal("the tail script was turned off")
	}
}

// A node that refuses the tail script (here one that calls a command the
// node does not know) turns it off with a warning: the changes still
// come, read by XREAD and loaded by the engine, and none is lost.
func TestTailRefusedFallsBack(t *testing.T) {
	srv := redistest.Start(t)
	admin := openStore(t, srv)
	ctx := t.Context()
	create(t, admin, "a")
	s := openStore(t, srv)
	s.tailLua = `return redis.call('NOSUCHCOMMAND')`
	cur, err := s.positions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := startFollow(t, s, cur.String())
	for n := range 5 {
		if err := addRule(ctx, admin, "a", n); err != nil {
			t.Fatal(err)
		}
		c := f.next(t)
		if c.Account != "a" || c.Loaded {
			t.Fatalf("change %d: %+v, want a's, not loaded", n, c)
		}
	}
	if !s.noTail.Load() {
		t.Fatal("the refused script is still on")
	}
}

// tailReply refuses what tailScript never answers, leaving the reader's
// positions as they were, and says which account an entry left out.
func TestTailReplyRefusesMalformed(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t, srv)
	r := &feedReader{s: s, shards: make([]int, shards), pos: make([]position, shards)}
	for i := range shards {
		r.shards[i] = i
		r.pos[i] = position{id: "0-0"}
	}
	empty := func() []any {
		v := make([]any, shards+1)
		for i := range v {
			v[i] = []any{}
		}
		return v
	}
	entry := func(id, acct string, seq int) []any {
		return []any{id, []any{"a", acct, "s", fmt.Sprint(seq), "t", "1700000000000"}}
	}
	sh := shardOf("x")
	cases := map[string]func() []any{
		"short": func() []any { return []any{} },
		"entries not a list": func() []any {
			v := empty()
			v[0] = "x"
			return v
		},
		"odd fields": func() []any {
			v := empty()
			v[sh] = []any{[]any{"1-1", []any{"a"}}}
			return v
		},
		"account left out": func() []any {
			v := empty()
			v[sh] = []any{entry("1-1", "x", 1)}
			return v
		},
		"policy not a list": func() []any {
			v := empty()
			v[sh] = []any{entry("1-1", "x", 1)}
			v[shards] = []any{"x"}
			return v
		},
		"policy undecodable": func() []any {
			v := empty()
			v[sh] = []any{entry("1-1", "x", 1)}
			v[shards] = []any{[]any{"x", "{not json", "", "", ""}}
			return v
		},
		"sequence skipped": func() []any {
			v := empty()
			v[sh] = []any{entry("1-1", "x", 2)}
			v[shards] = []any{[]any{"x"}}
			return v
		},
	}
	for name, reply := range cases {
		if _, err := r.tailReply(reply()); !errors.Is(err, policy.ErrFeedGap) {
			t.Errorf("%s: %v, want a feed gap", name, err)
		}
		for i, p := range r.pos {
			if p.id != "0-0" || p.seq != 0 {
				t.Fatalf("%s: shard %d moved to %+v", name, i, p)
			}
		}
	}
	v := empty()
	v[sh] = []any{entry("1-1", "x", 1)}
	v[shards] = []any{[]any{"x"}}
	b, err := r.tailReply(v)
	if err != nil || len(b.entries) != 1 || b.policies["x"] != nil {
		t.Fatalf("a well-formed reply: %+v, %v", b, err)
	}
	if _, ok := b.policies["x"]; !ok {
		t.Fatal("the account gone is not in the reply's policies")
	}
}

// Should the tail script find nothing where XREAD said a change came, the
// reader would go between the two at full speed: the first tail of a
// wake-up that finds nothing turns the script off instead. (Called here
// at the feed's end, where nothing is to be found.)
func TestTailFindingNothingTurnsItOff(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t, srv)
	ctx := t.Context()
	create(t, s, "a")
	cur, err := s.positions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := &feedReader{s: s, shards: make([]int, shards), pos: cur[:]}
	for i := range shards {
		r.shards[i] = i
	}
	_, conn, err := s.feedConn(ctx, 0, &r.remote)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	handed := 0
	stop, err := r.tail(ctx, conn, func(feedBatch) bool { handed++; return true })
	if stop || err != nil || handed != 0 {
		t.Fatalf("tail at the feed's end: stop %v, %v, %d batches", stop, err, handed)
	}
	if !s.noTail.Load() {
		t.Fatal("a tail that found nothing after XREAD's wake-up left the script on")
	}
}
