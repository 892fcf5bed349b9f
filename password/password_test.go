package password

import (
	"errors"
	"strings"
	"testing"
)

var cheap = Params{Memory: 64, Time: 1, Threads: 1, KeyLen: 32}

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse battery", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q", h)
	}
	h2, _ := Hash("correct horse battery", cheap)
	if h == h2 {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	for _, c := range []struct {
		pw   string
		want bool
	}{
		{"correct horse battery", true},
		{"correct horse batterY", false},
		{"", false},
		{strings.Repeat("x", MaxLength+1), false},
	} {
		if got := Verify(h, c.pw); got != c.want {
			t.Errorf("Verify(%q) = %v", c.pw, got)
		}
	}
}

func TestMalformedHashes(t *testing.T) {
	good, _ := Hash("correct horse battery", cheap)
	parts := strings.Split(good, "$")
	for _, h := range []string{
		"",
		"plain",
		"$argon2i$v=19$m=64,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=18$m=64,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=99999999,t=1,p=1$" + parts[4] + "$" + parts[5], // would cost 95 GiB
		"$argon2id$v=19$m=64,t=1000,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=0$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=1$!!!$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=1$" + parts[4] + "$AAAA",
		good + "$extra",
	} {
		if Verify(h, "correct horse battery") {
			t.Errorf("Verify accepted %q", h)
		}
		if !NeedsRehash(h, cheap) {
			t.Errorf("NeedsRehash(%q) = false", h)
		}
	}
}

func TestNeedsRehash(t *testing.T) {
	h, _ := Hash("correct horse battery", cheap)
	if NeedsRehash(h, cheap) {
		t.Error("same params need a rehash")
	}
	if !NeedsRehash(h, Params{Memory: 128, Time: 1, Threads: 1, KeyLen: 32}) {
		t.Error("more memory does not need a rehash")
	}
	if !NeedsRehash(h, Params{Memory: 64, Time: 2, Threads: 1, KeyLen: 32}) {
		t.Error("more passes do not need a rehash")
	}
}

func TestVet(t *testing.T) {
	for _, c := range []struct {
		pw, user, acct string
		want           error
	}{
		{"long enough pw", "alice", "10042", nil},
		{"short", "", "", ErrTooShort},
		{"ééééééééééé", "", "", ErrTooShort}, // 11 runes, 22 bytes
		{"éééééééééééé", "", "", nil},
		{strings.Repeat("x", MaxLength+1), "", "", ErrTooLong},
		{"jane.smith.01", "jane.smith.01", "10042", ErrGuessable},
		{" Jane.Smith.01 ", "jane.smith.01", "10042", ErrGuessable},
		{"100420000000", "", "100420000000", ErrGuessable},
	} {
		if err := Vet(c.pw, c.user, c.acct); !errors.Is(err, c.want) {
			t.Errorf("Vet(%q, %q, %q) = %v, want %v", c.pw, c.user, c.acct, err, c.want)
		}
	}
}

// TestVetStrength: the estimate refuses what an attacker tries first, and
// says why without repeating the password.
func TestVetStrength(t *testing.T) {
	for _, c := range []struct {
		pw, why string
	}{
		{"aaaaaaaaaaaa", "repeats"},
		{"password1234", "common word"},
		{"asdfghjkl;'1", "row of keys"},
		{"abcdefghijkl", "sequence"},
		{"Smith Studio", "studio name"},
		{"alicealice10042", "username"},
	} {
		err := Vet(c.pw, "alice", "10042", "Smith Studio")
		var we *WeakError
		if !errors.As(err, &we) || !strings.Contains(err.Error(), c.why) || strings.Contains(err.Error(), c.pw) {
			t.Errorf("Vet(%q) = %v, want a weak password because of %q", c.pw, err, c.why)
		}
	}
	// The known words make the difference: without them this one passes.
	if err := Vet("Smith Studio", "", ""); err != nil {
		t.Fatalf("without known words: %v", err)
	}
	// Long passwords are estimated on their start, quickly.
	if err := Vet(strings.Repeat("ab", MaxLength/2), "", ""); err == nil {
		t.Fatal("a long repetition passed")
	}
}

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		pw := Generate()
		if len(pw) != 20 || strings.ContainsAny(pw, "01ilIoO") || Vet(pw, "", "") != nil {
			t.Fatalf("Generate() = %q", pw)
		}
		if seen[pw] {
			t.Fatalf("repeated %q", pw)
		}
		seen[pw] = true
	}
}

func BenchmarkVerifyDefault(b *testing.B) {
	h, _ := Hash("correct horse battery", Default)
	for b.Loop() {
		Verify(h, "correct horse battery")
	}
}
