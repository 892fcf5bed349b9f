package proxy

import (
	"slices"
	"testing"
)

// The revoker is woken only for changed accounts that hold admitted
// connections here.
func TestRegistryHolding(t *testing.T) {
	var r registry
	r.init()
	c := &conn{route: &route{account: "a"}}
	r.track(c)
	r.admit(c)
	if got := r.holding([]string{"x", "a", "y"}); !slices.Equal(got, []string{"a"}) {
		t.Errorf("holding = %v, want [a]", got)
	}
	r.forget(c, true)
	if got := r.holding([]string{"a"}); len(got) != 0 {
		t.Errorf("holding after the connection went = %v, want none", got)
	}
}
