package admin

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/gatekeeper-dev/gatekeeper/internal/seal"
)

// SecretsKey reads the key that seals second-factor secrets at rest from
// path: one line of URL-safe base64 holding 32 bytes. If the file does not
// exist, it creates one with a new random key (mode 0600, in a directory it
// creates with mode 0700) and reports created, so that the caller can log
// the path; the key itself must never be logged. Every instance of a fleet
// must read the same key: a secret sealed by one is opened by another.
func SecretsKey(path string) (key []byte, created bool, err error) {
	text, err := readSecretsKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		text, created, err = createSecretFile(path, "secrets key", readSecretsKey)
	}
	if err != nil {
		return nil, false, err
	}
	key, _ = base64.RawURLEncoding.DecodeString(text) // checked by readSecretsKey or made here
	return key, created, nil
}

func readSecretsKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secrets key: %w", err)
	}
	text := strings.TrimSpace(string(b))
	if key, err := base64.RawURLEncoding.DecodeString(text); err != nil || len(key) != 32 {
		return "", fmt.Errorf("secrets key in %s: want one line of URL-safe base64 (no padding) holding 32 bytes", path)
	}
	return text, nil
}

// sealer seals small secrets (TOTP secrets, login tickets, passkey
// ceremonies) with the operator's secrets key; the format is package seal's.
type sealer struct{ s *seal.Sealer }

func newSealer(key []byte) (*sealer, error) {
	s, err := seal.New(key)
	if err != nil {
		return nil, err
	}
	return &sealer{s: s}, nil
}

func (s *sealer) seal(plain, owner string) string { return s.s.Seal(plain, owner) }

func (s *sealer) open(sealed, owner string) (string, error) { return s.s.Open(sealed, owner) }
