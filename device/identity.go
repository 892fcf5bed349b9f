package device

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Identity is what a device keeps in its identity file: who it is, where
// to ask for leases, and its private key. The file is written with mode
// 0600 and never leaves the device.
type Identity struct {
	// AdminURL is the admin listener's base URL, https://HOST[:PORT]/.
	AdminURL string
	Account  string
	DeviceID string
	Key      ed25519.PrivateKey
}

// identityFile is the file's JSON form; the key is PKCS #8 DER.
type identityFile struct {
	Version    int    `json:"version"`
	AdminURL   string `json:"admin_url"`
	Account    string `json:"account"`
	DeviceID   string `json:"device_id"`
	PrivateKey []byte `json:"private_key"`
}

// ErrExists is returned by Reserve for a file that is already
// there.
var ErrExists = errors.New("identity file already exists")

// Reserve makes sure path can be written before a device is enrolled: it
// creates it, empty and mode 0600, or, with overwrite, leaves an existing
// file as it is (Write replaces it later). Without overwrite an existing
// file is ErrExists. undo removes what Reserve created, for when
// enrolment fails.
func Reserve(path string, overwrite bool) (undo func(), err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case errors.Is(err, os.ErrExist) && overwrite:
		return func() {}, nil
	case errors.Is(err, os.ErrExist):
		return nil, fmt.Errorf("%s: %w (use -force to replace it)", path, ErrExists)
	case err != nil:
		return nil, fmt.Errorf("create identity file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("create identity file: %w", err)
	}
	return func() { os.Remove(path) }, nil
}

// Write writes id to path, replacing it atomically with a file of mode
// 0600.
func (id Identity) Write(path string) error {
	der, err := x509.MarshalPKCS8PrivateKey(id.Key)
	if err != nil {
		return fmt.Errorf("encode device key: %w", err)
	}
	b, err := json.MarshalIndent(identityFile{Version: 1, AdminURL: id.AdminURL, Account: id.Account,
		DeviceID: id.DeviceID, PrivateKey: der}, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".identity-*")
	if err != nil {
		return fmt.Errorf("write identity file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, nothing is there
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write identity file: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write identity file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write identity file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write identity file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write identity file: %w", err)
	}
	return nil
}

// ReadIdentity reads an identity file and checks it whole.
func ReadIdentity(path string) (Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Identity{}, fmt.Errorf("read identity file: %w", err)
	}
	return ParseIdentity(b)
}

// ParseIdentity parses an identity file's contents.
func ParseIdentity(b []byte) (Identity, error) {
	var f identityFile
	if err := json.Unmarshal(b, &f); err != nil {
		return Identity{}, fmt.Errorf("identity file: not valid JSON: %w", err)
	}
	if f.Version != 1 {
		return Identity{}, fmt.Errorf("identity file: version %d, want 1", f.Version)
	}
	if _, err := AdminBase(f.AdminURL); err != nil {
		return Identity{}, fmt.Errorf("identity file: admin_url: %w", err)
	}
	if !policy.ValidAccountID(f.Account) {
		return Identity{}, errors.New("identity file: account is not an account number")
	}
	if !policy.ValidDeviceID(f.DeviceID) {
		return Identity{}, errors.New("identity file: device_id is not a device ID")
	}
	k, err := x509.ParsePKCS8PrivateKey(f.PrivateKey)
	if err != nil {
		return Identity{}, fmt.Errorf("identity file: private_key: %w", err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return Identity{}, errors.New("identity file: private_key is not an Ed25519 key")
	}
	return Identity{AdminURL: f.AdminURL, Account: f.Account, DeviceID: f.DeviceID, Key: key}, nil
}

// AdminBase checks an admin URL and returns it as a base to join API
// paths to: https only (a device's requests carry its signature), no
// query, user or fragment.
func AdminBase(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q: want https://HOST[:PORT]/", s)
	}
	u.Path = ""
	u.RawPath = ""
	return u, nil
}
