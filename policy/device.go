package policy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"time"
)

// DeviceStatus is where a device stands.
type DeviceStatus string

const (
	// DevicePending waits for a master's approval (account setting
	// device_approval); it gets no lease.
	DevicePending DeviceStatus = "pending"
	// DeviceActive may ask for leases.
	DeviceActive DeviceStatus = "active"
	// DeviceInactive is gone for good: its leases are revoked and it gets
	// no new one. A master or its owner may make it active again.
	DeviceInactive DeviceStatus = "inactive"
)

// SourceDevice is a lease: a grant made for a device's address, owned by
// the device's owner, with DeviceID set.
const SourceDevice = "device"

// Device is a computer (or phone) a user enrolled. Its credential is an
// Ed25519 key pair made on the device; only the public key is here, so
// nothing in the store lets anyone act as a device.
type Device struct {
	// ID is random, unique within the account, and names the device in
	// its signed requests.
	ID      string `json:"id"`
	Account string `json:"account"`
	// Owner is the username of the user who enrolled it ("master" for a
	// master of the account).
	Owner    string       `json:"owner"`
	Name     string       `json:"name"`
	Platform string       `json:"platform,omitempty"`
	Status   DeviceStatus `json:"status"`
	// PublicKey is the device's Ed25519 public key, 32 bytes.
	PublicKey  ed25519.PublicKey `json:"public_key"`
	EnrolledAt time.Time         `json:"enrolled_at"`
	// LastSeenAt and LastIP are from its last accepted lease request.
	LastSeenAt time.Time  `json:"last_seen_at,omitzero"`
	LastIP     netip.Addr `json:"last_ip,omitzero"`
	// LastRequest is the signing time of the last request accepted from
	// the device: a request must be signed later than this, so a copy of
	// one is refused.
	LastRequest time.Time `json:"last_request,omitzero"`
}

// Active reports whether the device may ask for leases.
func (d Device) Active() bool { return d.Status == DeviceActive }

var deviceIDPattern = regexp.MustCompile(`^[a-z0-9]{16,32}$`)

// ValidDeviceID reports whether id is a well-formed device ID.
func ValidDeviceID(id string) bool { return deviceIDPattern.MatchString(id) }

// ParseDevicePublicKey reads a device's public key: a DER
// SubjectPublicKeyInfo (what x509.MarshalPKIXPublicKey writes) holding an
// Ed25519 key. Any other kind of key is refused.
func ParseDevicePublicKey(der []byte) (ed25519.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("public key: not an Ed25519 key")
	}
	return pub, nil
}

// Enrollment is an outstanding one-time enrolment code: only its hash is
// kept, bound to the user who asked for it.
type Enrollment struct {
	// CodeHash is the SHA-256 of the code, hex.
	CodeHash string `json:"code_hash"`
	Account  string `json:"account"`
	// Owner is who asked for it and will own the device.
	Owner     string    `json:"owner"`
	Name      string    `json:"name,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Expired reports whether e can no longer be used at now.
func (e Enrollment) Expired(now time.Time) bool { return !now.Before(e.ExpiresAt) }

// MayConnect reports whether u may reach the desktop application: an
// active user with desktop access who need not reset their password.
func (u User) MayConnect() bool { return u.Active && u.DesktopAccess && !u.MustResetPassword }

// DeviceStanding is what the gate makes of a device key. The zero value
// is an unknown key, so that a missing entry fails closed.
type DeviceStanding uint8

const (
	// DeviceUnknown: no device of the account has the key.
	DeviceUnknown DeviceStanding = iota
	// DeviceKnown: an active device whose owner may connect.
	DeviceKnown
	// DeviceNotActive: a pending or inactive device.
	DeviceNotActive
	// DeviceOwnerBarred: an active device whose owner may not connect
	// (deactivated, no desktop access, must reset their password, or gone).
	DeviceOwnerBarred
)

// String returns the standing's metric label.
func (s DeviceStanding) String() string {
	switch s {
	case DeviceKnown:
		return "known"
	case DeviceNotActive:
		return "device_not_active"
	case DeviceOwnerBarred:
		return "owner_not_allowed"
	}
	return "unknown_device"
}

// DeviceKey is a device as the gate sees it: its public key and standing.
type DeviceKey struct {
	Key      [ed25519.PublicKeySize]byte
	Standing DeviceStanding
}

// DeviceKeys returns the keys of devs with their standing, given the
// account's users, sorted by key. This is the one place that decides
// which device the gate admits when the account requires a known device.
// A key of the wrong size is left out (it stays unknown).
func DeviceKeys(devs []Device, users []User) []DeviceKey {
	if len(devs) == 0 {
		return nil
	}
	mayConnect := make(map[string]bool, len(users))
	for _, u := range users {
		mayConnect[u.Username] = u.MayConnect()
	}
	out := make([]DeviceKey, 0, len(devs))
	for _, d := range devs {
		if len(d.PublicKey) != ed25519.PublicKeySize {
			continue
		}
		k := DeviceKey{Key: [ed25519.PublicKeySize]byte(d.PublicKey), Standing: DeviceKnown}
		switch {
		case !d.Active():
			k.Standing = DeviceNotActive
		case d.Owner != RoleMaster && !mayConnect[d.Owner]:
			k.Standing = DeviceOwnerBarred
		}
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b DeviceKey) int { return bytes.Compare(a.Key[:], b.Key[:]) })
	return out
}
