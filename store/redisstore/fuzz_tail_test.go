package redisstore

import (
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// FuzzTailReply: whatever tailScript's answer looks like (built here from
// the fuzz input as nested lists of strings), taking it apart never
// panics; a refused answer leaves the reader's positions as they were,
// and an accepted one names the policy of every account its entries
// name, with their sequence numbers in step.
func FuzzTailReply(f *testing.F) {
	var ok strings.Builder
	ok.WriteString(fmt.Sprintf("L%c", byte(shards+1)))
	for i := range shards {
		if i == 3 {
			ok.WriteString("L\x01" + "L\x02" + "S\x031-1" + "L\x06" + "S\x01a" + "S\x01x" + "S\x01s" + "S\x011" + "S\x01t" + "S\x0217")
			continue
		}
		ok.WriteString("L\x00")
	}
	ok.WriteString("L\x01L\x01S\x01x")
	f.Add([]byte(ok.String()))
	f.Add([]byte("L\x00"))
	f.Add([]byte(strings.Replace(ok.String(), "L\x01L\x01S\x01x", "L\x01L\x05S\x01xS\x0f{\"id\":\"x\"}S\x00S\x00S\x00", 1)))
	s := &Store{log: zap.NewNop()}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, _ := fuzzValue(&b, 0)
		list, isList := v.([]any)
		if !isList {
			return
		}
		r := &feedReader{s: s, shards: make([]int, shards), pos: make([]position, shards)}
		for i := range shards {
			r.shards[i] = i
			r.pos[i] = position{id: "0-0"}
		}
		batch, err := r.tailReply(list)
		if err != nil {
			for i, p := range r.pos {
				if p.id != "0-0" || p.seq != 0 {
					t.Fatalf("a refused reply moved shard %d to %+v: %v", i, p, err)
				}
			}
			return
		}
		next := make([]int64, shards)
		for _, e := range batch.entries {
			if _, ok := batch.policies[e.account]; !ok {
				t.Fatalf("entry of %q accepted without its policy", e.account)
			}
			if e.seq != next[e.shard]+1 {
				t.Fatalf("shard %d: change %d after %d", e.shard, e.seq, next[e.shard])
			}
			next[e.shard] = e.seq
		}
	})
}

// fuzzValue reads one value of a reply from b: "L" and a count byte for
// a list of that many values, "S" and a length byte for a string, any
// other byte a string of itself.
func fuzzValue(b *[]byte, depth int) (any, bool) {
	if len(*b) == 0 || depth > 6 {
		return nil, false
	}
	c := (*b)[0]
	*b = (*b)[1:]
	switch {
	case c == 'L' && len(*b) > 0:
		n := int((*b)[0]) % 32
		*b = (*b)[1:]
		list := make([]any, 0, n)
		for range n {
			v, ok := fuzzValue(b, depth+1)
			if !ok {
				break
			}
			list = append(list, v)
		}
		return list, true
	case c == 'S' && len(*b) > 0:
		n := min(int((*b)[0]), len(*b)-1)
		s := string((*b)[1 : 1+n])
		*b = (*b)[1+n:]
		return s, true
	}
	return string(c), true
}
