package admin

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
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

// sealer seals small secrets (TOTP secrets) with AES-256-GCM. The
// additional data names whose secret it is, so that a sealed value copied
// onto another person does not open.
type sealer struct{ aead cipher.AEAD }

// sealedPrefix marks the format, so that a later one can be told apart.
const sealedPrefix = "v1."

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("secrets key: want 32 bytes, have %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(plain, owner string) string {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	rand.Read(nonce)
	out := s.aead.Seal(nonce, nonce, []byte(plain), []byte(owner))
	return sealedPrefix + base64.RawURLEncoding.EncodeToString(out)
}

func (s *sealer) open(sealed, owner string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(sealed, sealedPrefix))
	if err != nil || !strings.HasPrefix(sealed, sealedPrefix) || len(raw) < s.aead.NonceSize() {
		return "", errors.New("open sealed secret: malformed")
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(owner))
	if err != nil {
		return "", errors.New("open sealed secret: wrong secrets key, or not this person's")
	}
	return string(plain), nil
}
