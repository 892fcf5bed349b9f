package backup

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
)

// KeySize is the size of a backup key: 32 bytes, written in its file as
// 64 hex digits (`openssl rand -hex 32`, or NewKeyFile).
const KeySize = 32

// ReadKeyFile reads a backup key file: 64 hex digits, surrounding space
// ignored.
func ReadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("backup key file: %w", err)
	}
	b = bytes.TrimSpace(b)
	key := make([]byte, KeySize)
	if len(b) != 2*KeySize {
		return nil, fmt.Errorf("backup key file %s: want %d hex digits (openssl rand -hex %d), found %d characters", path, 2*KeySize, KeySize, len(b))
	}
	if _, err := hex.Decode(key, b); err != nil {
		return nil, fmt.Errorf("backup key file %s: want %d hex digits: %w", path, 2*KeySize, err)
	}
	return key, nil
}

// NewKeyFile writes a new random key to path (mode 0600); it refuses to
// replace an existing file, which may be the only key of older backups.
func NewKeyFile(path string) error {
	key := make([]byte, KeySize)
	rand.Read(key)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup key file: %w", err)
	}
	if _, err := f.Write([]byte(hex.EncodeToString(key) + "\n")); err != nil {
		f.Close()
		return fmt.Errorf("write backup key file: %w", err)
	}
	return f.Close()
}
