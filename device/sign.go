package device

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// AuthScheme is the Authorization scheme of a device's signed request:
//
//	Authorization: Gatekeeper-Device ACCOUNT.DEVICE.UNIXNANO.SIGNATURE
//
// SIGNATURE is the unpadded base64url Ed25519 signature of signedMessage.
const AuthScheme = "Gatekeeper-Device"

// Signed is a device's signature as a request carries it.
type Signed struct {
	Account  string
	DeviceID string
	// Time is when the device signed.
	Time time.Time
	sig  []byte
}

// Sign returns the Authorization value for a request of id.
func Sign(id Identity, method, path string, body []byte, t time.Time) string {
	ns := strconv.FormatInt(t.UnixNano(), 10)
	sig := ed25519.Sign(id.Key, signedMessage(method, path, id.Account, id.DeviceID, ns, body))
	return AuthScheme + " " + id.Account + "." + id.DeviceID + "." + ns + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// signedMessage is what a signature covers: the request's method and path,
// who signs, when, and the body. The Host is left out so that a proxy in
// front of the admin listener may rewrite it; the account, the device and
// the time already make a signature good for one request only.
func signedMessage(method, path, account, deviceID, ns string, body []byte) []byte {
	h := sha256.Sum256(body)
	return []byte("gatekeeper-device-v1\n" + method + "\n" + path + "\n" + account + "\n" + deviceID + "\n" + ns + "\n" +
		hex.EncodeToString(h[:]))
}

// IsDeviceAuth reports whether an Authorization value is a device's, so
// that the server can refuse it wherever a device may not go.
func IsDeviceAuth(authorization string) bool {
	scheme, _, _ := strings.Cut(authorization, " ")
	return strings.EqualFold(scheme, AuthScheme)
}

// ErrBadAuth is an Authorization value that is not a well-formed device
// signature.
var ErrBadAuth = errors.New("not a well-formed device signature")

// ParseAuth reads an Authorization value of AuthScheme.
func ParseAuth(authorization string) (Signed, error) {
	scheme, rest, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, AuthScheme) || len(rest) > 300 {
		return Signed{}, ErrBadAuth
	}
	parts := strings.Split(strings.TrimSpace(rest), ".")
	if len(parts) != 4 || !policy.ValidAccountID(parts[0]) || !policy.ValidDeviceID(parts[1]) {
		return Signed{}, ErrBadAuth
	}
	ns, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || ns <= 0 || strconv.FormatInt(ns, 10) != parts[2] {
		return Signed{}, ErrBadAuth
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Signed{}, ErrBadAuth
	}
	return Signed{Account: parts[0], DeviceID: parts[1], Time: time.Unix(0, ns).UTC(), sig: sig}, nil
}

// Verify reports whether s is pub's signature of the request.
func (s Signed) Verify(pub ed25519.PublicKey, method, path string, body []byte) bool {
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	ns := strconv.FormatInt(s.Time.UnixNano(), 10)
	return ed25519.Verify(pub, signedMessage(method, path, s.Account, s.DeviceID, ns, body), s.sig)
}
