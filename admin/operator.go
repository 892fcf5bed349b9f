package admin

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// minOperatorToken is the shortest operator token accepted from a file.
const minOperatorToken = 24

// OperatorToken reads the operator token from path. If the file does not
// exist, it creates one holding a new random token (256 bits, mode 0600,
// in a directory it creates with mode 0700) and reports created, so that
// the caller can log the path; the token itself must never be logged.
func OperatorToken(path string) (token string, created bool, err error) {
	token, err = ReadOperatorToken(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createOperatorToken(path)
	}
	return token, false, err
}

// ReadOperatorToken reads the operator token from an existing file: one
// line without spaces and without '.', at least 24 characters.
func ReadOperatorToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read operator token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if len(token) < minOperatorToken || strings.ContainsAny(token, ". \t\r\n") {
		return "", fmt.Errorf("operator token in %s: want one line of at least %d characters, without spaces or '.'", path, minOperatorToken)
	}
	return token, nil
}

func createOperatorToken(path string) (string, bool, error) {
	return createSecretFile(path, "operator token", ReadOperatorToken)
}

// createSecretFile writes a new random secret (256 bits, URL-safe base64,
// one line) to path, mode 0600, in a directory it creates with mode 0700.
// When another process made the file meanwhile, it reads theirs instead.
func createSecretFile(path, what string, read func(string) (string, error)) (string, bool, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", false, fmt.Errorf("create directory for the %s: %w", what, err)
	}
	var b [32]byte
	rand.Read(b[:])
	token := base64.RawURLEncoding.EncodeToString(b[:])
	// Written whole to a file of its own, then linked under path, which
	// fails if path exists: another instance starting at the same moment
	// either finds no file or a whole one, never one still being written.
	f, err := os.CreateTemp(dir, ".secret-*")
	if err != nil {
		return "", false, fmt.Errorf("create %s: %w", what, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.WriteString(token + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", false, fmt.Errorf("write %s: %w", what, err)
	}
	if err := os.Link(tmp, path); errors.Is(err, fs.ErrExist) {
		// Another process made one meanwhile: use it.
		t, err := read(path)
		return t, false, err
	} else if err != nil {
		return "", false, fmt.Errorf("create %s: %w", what, err)
	}
	return token, true, nil
}
