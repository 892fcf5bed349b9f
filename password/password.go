// Package password hashes, verifies, generates and vets passwords.
//
// Hashes are argon2id in the PHC string format
// ($argon2id$v=19$m=65536,t=2,p=2$salt$hash), so that parameters can be
// raised later without invalidating stored hashes: Verify reads them from
// the hash, and NeedsRehash says when a hash is weaker than today's.
// The package never logs and never keeps a password.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn"
	"github.com/trustelem/zxcvbn/match"
	"golang.org/x/crypto/argon2"
)

// Params are argon2id's cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	KeyLen  uint32
}

// Default is OWASP's argon2id profile (19 MiB, 2 passes, 1 lane): tens of
// milliseconds a hash here, slow for an attacker with a stolen store and
// cheap enough that logins (which are rate limited) cannot starve the
// proxy of CPU. 64 MiB made a hash cost 250 ms on this 2-core machine.
var Default = Params{Memory: 19 * 1024, Time: 2, Threads: 1, KeyLen: 32}

// MinLength is the shortest password accepted.
const MinLength = 12

// MaxLength bounds what is hashed, so a huge body cannot buy CPU time.
const MaxLength = 1024

// Errors from Vet.
var (
	ErrTooShort     = fmt.Errorf("password must be at least %d characters", MinLength)
	ErrTooLong      = fmt.Errorf("password must be at most %d bytes", MaxLength)
	ErrGuessable    = errors.New("password must not be the username or the account number")
	ErrMalformedPHC = errors.New("malformed password hash")
)

// MinScore is the strength estimate (zxcvbn's score, 0 to 4) a new
// password needs: 3 is about 10^8 guesses or more, "safely unguessable"
// against an online attacker and a fair wall against a stolen argon2id
// hash.
const MinScore = 3

// maxEstimated bounds the characters the estimate reads: its matching
// grows faster than the length, and a password weak in its first 64
// characters is weak.
const maxEstimated = 64

// WeakError is a password the strength estimate refuses. Its message says
// what makes it weak, never any part of the password.
type WeakError struct{ Reasons []string }

func (e *WeakError) Error() string {
	return "this password is too easy to guess: " + strings.Join(e.Reasons, "; ") +
		". A few unrelated words, or a password manager's, make a strong one"
}

// Vet checks a new password against the rules: long enough, not absurdly
// long, not the username or the account number, and strong enough by a
// zxcvbn estimate (github.com/trustelem/zxcvbn: a pure-Go port kept
// up with the original's dictionaries and scoring, with no cgo and no
// JavaScript engine) in which the username, the account number and the
// known words (the studio's name) count as the first words an attacker
// tries.
func Vet(pw, username, account string, known ...string) error {
	if len(pw) > MaxLength {
		return ErrTooLong
	}
	if utf8.RuneCountInString(pw) < MinLength {
		return ErrTooShort
	}
	low := strings.ToLower(strings.TrimSpace(pw))
	for _, s := range []string{username, account} {
		if s != "" && low == strings.ToLower(s) {
			return ErrGuessable
		}
	}
	inputs := []string{}
	for _, w := range append([]string{username, account}, known...) {
		// A name counts whole and word by word ("Smith Dental Studio").
		for _, f := range append(strings.FieldsFunc(w, func(r rune) bool { return r == ' ' || r == '.' || r == '-' || r == '_' }), w) {
			if f = strings.ToLower(strings.TrimSpace(f)); len(f) >= 3 {
				inputs = append(inputs, f)
			}
		}
	}
	est := pw
	if utf8.RuneCountInString(est) > maxEstimated {
		est = string([]rune(est)[:maxEstimated])
	}
	res := zxcvbn.PasswordStrength(est, inputs)
	if res.Score >= MinScore {
		return nil
	}
	return &WeakError{Reasons: weakReasons(res.Sequence)}
}

// weakReasons says, in words, which patterns the estimate found: the
// kinds, never the characters.
func weakReasons(seq []*match.Match) []string {
	var out []string
	add := func(r string) {
		for _, x := range out {
			if x == r {
				return
			}
		}
		out = append(out, r)
	}
	for _, m := range seq {
		switch {
		case m.Pattern == "dictionary" && m.DictionaryName == "user_inputs":
			add("it contains the username, the account number or the studio name")
		case m.Pattern == "dictionary":
			add("it is built on a common word, name or password")
		case m.Pattern == "spatial":
			add("it contains a row of keys, like qwerty")
		case m.Pattern == "repeat":
			add("it repeats characters or words")
		case m.Pattern == "sequence":
			add("it contains a sequence, like abc or 1234")
		case m.Pattern == "date" || m.Pattern == "regex":
			add("it contains a date or a year")
		}
	}
	if len(out) == 0 {
		add("it is too short for the characters it uses")
	}
	return out
}

// Hash returns the PHC-encoded argon2id hash of pw with a random salt.
func Hash(pw string, p Params) (string, error) {
	if len(pw) > MaxLength {
		return "", ErrTooLong
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// Verify reports whether pw matches hash, in time independent of where
// they differ.
func Verify(hash, pw string) bool {
	p, salt, key, err := decode(hash)
	if err != nil || len(pw) > MaxLength {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}

// NeedsRehash reports whether hash was made with weaker parameters than p.
func NeedsRehash(hash string, p Params) bool {
	h, _, _, err := decode(hash)
	return err != nil || h.Memory < p.Memory || h.Time < p.Time
}

// Dummy is a valid hash of a random password. Verifying against it when
// the account or user does not exist makes a failed login cost the same
// whatever was wrong.
func Dummy(p Params) string {
	h, err := Hash(Generate(), p)
	if err != nil {
		panic(err) // only rand failing, which Go treats as fatal anyway
	}
	return h
}

func decode(s string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return p, nil, nil, ErrMalformedPHC
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, ErrMalformedPHC
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, ErrMalformedPHC
	}
	if p.Memory > 1<<22 || p.Time > 64 || p.Threads == 0 {
		return p, nil, nil, ErrMalformedPHC // refuse a hash that would cost absurd resources
	}
	if salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil {
		return p, nil, nil, ErrMalformedPHC
	}
	if key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, ErrMalformedPHC
	}
	return p, salt, key, nil
}

// Generate returns a random password of 20 characters from an alphabet
// without look-alikes, about 115 bits.
func Generate() string {
	const alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	out := make([]byte, 0, 20)
	var buf [32]byte
	for len(out) < cap(out) {
		rand.Read(buf[:])
		for _, c := range buf {
			// Rejection keeps every character equally likely.
			if int(c) < 256-256%len(alphabet) && len(out) < cap(out) {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(out)
}
