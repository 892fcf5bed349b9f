package redisstore

import "testing"

// FuzzParseCursor: a cursor comes back from a snapshot file or a caller;
// whatever the text, parsing never panics, and what parses prints back to
// a cursor that parses the same.
func FuzzParseCursor(f *testing.F) {
	var c cursor
	f.Add(c.String())
	c[3] = position{id: "1700000000000-7", seq: 42}
	f.Add(c.String())
	for _, s := range []string{"", "r1:", "r1:0-0/0", "b00t:17", "r1:" + "0-0/0,0-0/0,0-0/0,0-0/0,0-0/0,0-0/0,0-0/0,0-0/0,0-0/0,0-0/0,0-0/0,0-0/0,0-0/0,0-0/0,0-0/0,0-0/-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCursor(s)
		if err != nil {
			return
		}
		again, err := parseCursor(c.String())
		if err != nil || again != c {
			t.Fatalf("parseCursor(%q) = %v, printed %q, parsed again %v, %v", s, c, c.String(), again, err)
		}
	})
}
