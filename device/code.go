package device

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// An enrolment code is the account number, a dot, and 16 characters from
// codeAlphabet in groups of four: "10042.K7Q4-M9XD-2PLT-HW3C". The account
// lets the server find the code without a global index; the 80 random bits
// make guessing hopeless even before the rate limit.
const (
	codeAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789" // no 0/O, 1/I
	codeLen      = 16
)

// NewCode returns a fresh code for account and its hash, which is all the
// server keeps.
func NewCode(account string) (code, hash string) {
	var b [codeLen]byte
	rand.Read(b[:])
	var sb strings.Builder
	sb.WriteString(account)
	sb.WriteByte('.')
	secret := make([]byte, codeLen)
	for i, x := range b {
		secret[i] = codeAlphabet[int(x)%len(codeAlphabet)] // 256 is a multiple of 32: no bias
		if i > 0 && i%4 == 0 {
			sb.WriteByte('-')
		}
		sb.WriteByte(secret[i])
	}
	return sb.String(), codeHash(account, string(secret))
}

// ErrBadCode is a code that is not of the form NewCode makes.
var ErrBadCode = errors.New("not an enrolment code")

// ParseCode returns the account a code is for and the code's hash. Case,
// dashes and spaces in the random part do not matter.
func ParseCode(code string) (account, hash string, err error) {
	account, secret, ok := strings.Cut(strings.TrimSpace(code), ".")
	if !ok || !policy.ValidAccountID(account) || len(secret) > 2*codeLen {
		return "", "", ErrBadCode
	}
	s := make([]byte, 0, codeLen)
	for i := 0; i < len(secret); i++ {
		c := secret[i]
		switch {
		case c == '-' || c == ' ':
			continue
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		}
		if strings.IndexByte(codeAlphabet, c) < 0 {
			return "", "", ErrBadCode
		}
		s = append(s, c)
	}
	if len(s) != codeLen {
		return "", "", ErrBadCode
	}
	return account, codeHash(account, string(s)), nil
}

func codeHash(account, secret string) string {
	h := sha256.Sum256([]byte("gatekeeper enrolment\x00" + account + "\x00" + secret))
	return hex.EncodeToString(h[:])
}

// NewID returns a random device ID: 20 characters of [a-z2-7], 100 bits.
func NewID() string {
	const alpha = "abcdefghijklmnopqrstuvwxyz234567"
	var b [20]byte
	rand.Read(b[:])
	for i, x := range b {
		b[i] = alpha[int(x)%len(alpha)]
	}
	return string(b[:])
}
