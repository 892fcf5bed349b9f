package device

import (
	"strings"
	"testing"
)

var codeCases = []struct {
	code string
	ok   bool
}{
	{"10042.ABCD-EFGH-JKLM-NPQR", true},
	{"10042.abcd-efgh-jklm-npqr", true},
	{" 10042.ABCDEFGHJKLMNPQR ", true},
	{"10042.ABCD EFGH JKLM NPQR", true},
	{"10042.ABCD-EFGH-JKLM-NPQ", false},   // short
	{"10042.ABCD-EFGH-JKLM-NPQRS", false}, // long
	{"10042.ABCD-EFGH-JKLM-NPQ0", false},  // 0 is not in the alphabet
	{"10042.ABCD-EFGH-JKLM-NPQ1", false},
	{"-bad.ABCD-EFGH-JKLM-NPQR", false},
	{"ABCD-EFGH-JKLM-NPQR", false},
	{"", false},
	{"10042.", false},
	{"10042.ABCD-EFGH-JKLM-NPQR.x", false},
}

func TestParseCode(t *testing.T) {
	for _, c := range codeCases {
		acct, hash, err := ParseCode(c.code)
		if (err == nil) != c.ok {
			t.Errorf("%q: err %v, want ok=%v", c.code, err, c.ok)
		}
		if c.ok && (acct != "10042" || len(hash) != 64) {
			t.Errorf("%q: account %q hash %q", c.code, acct, hash)
		}
	}
	_, h1, _ := ParseCode("10042.ABCD-EFGH-JKLM-NPQR")
	_, h2, _ := ParseCode("10043.ABCD-EFGH-JKLM-NPQR")
	if h1 == h2 {
		t.Error("the same secret hashes alike for two accounts")
	}
}

func TestNewCode(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		code, hash := NewCode("10042")
		acct, h, err := ParseCode(code)
		if err != nil || acct != "10042" || h != hash || seen[code] {
			t.Fatalf("%q: %q %q %v (repeat %v)", code, acct, h, err, seen[code])
		}
		seen[code] = true
		if strings.Count(code, "-") != 3 {
			t.Fatalf("%q: want four groups", code)
		}
	}
	if id := NewID(); len(id) != 20 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		t.Fatalf("ID %q", id)
	}
}

func FuzzParseCode(f *testing.F) {
	for _, c := range codeCases {
		f.Add(c.code)
	}
	f.Fuzz(func(t *testing.T, code string) {
		acct, hash, err := ParseCode(code)
		if err != nil {
			return
		}
		// Whatever is accepted names a valid account and is a canonical
		// code: written out again, it parses to the same hash.
		acct2, hash2, err := ParseCode(acct + "." + strings.ToUpper(strings.ReplaceAll(strings.ReplaceAll(strings.SplitN(strings.TrimSpace(code), ".", 2)[1], "-", ""), " ", "")))
		if err != nil || acct2 != acct || hash2 != hash {
			t.Fatalf("%q: not canonical (%v)", code, err)
		}
	})
}
