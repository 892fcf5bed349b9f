// Package seal seals small secrets at rest with the operator's secrets key
// (admin.secrets_key_file): second-factor secrets, login tickets, signing
// keys. One place for the format, so that every sealed value in the store
// opens the same way.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Sealer seals with AES-256-GCM. The additional data names whose secret it
// is, so that a sealed value copied onto another owner does not open.
type Sealer struct{ aead cipher.AEAD }

// prefix marks the format, so that a later one can be told apart.
const prefix = "v1."

// New makes a Sealer from a 32-byte key.
func New(key []byte) (*Sealer, error) {
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
	return &Sealer{aead: aead}, nil
}

// Seal seals plain for owner.
func (s *Sealer) Seal(plain, owner string) string {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	rand.Read(nonce)
	out := s.aead.Seal(nonce, nonce, []byte(plain), []byte(owner))
	return prefix + base64.RawURLEncoding.EncodeToString(out)
}

// Open opens what Seal sealed for owner.
func (s *Sealer) Open(sealed, owner string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(sealed, prefix))
	if err != nil || !strings.HasPrefix(sealed, prefix) || len(raw) < s.aead.NonceSize() {
		return "", errors.New("open sealed secret: malformed")
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(owner))
	if err != nil {
		return "", errors.New("open sealed secret: wrong secrets key, or not this person's")
	}
	return string(plain), nil
}
