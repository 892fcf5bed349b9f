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

// Vet checks a new password against the rules: long enough, not absurdly
// long, and not the username or the account number.
func Vet(pw, username, account string) error {
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
	return nil
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
