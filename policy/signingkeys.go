package policy

import (
	"context"
	"time"
)

// SigningKeys is the part of a store that holds the fleet's key ring for
// the assertions an http listener sends its applications (package
// assertion). Every instance reads the same ring, so that all publish the
// same keys and any can sign; a version makes a change a compare-and-set,
// so that two instances rotating at once never leave two current keys.
type SigningKeys interface {
	// SigningKeys returns the stored ring; a zero KeyRing (version 0)
	// when none was stored.
	SigningKeys(ctx context.Context) (KeyRing, error)
	// SwapSigningKeys replaces the ring with keys, as version old+1, if
	// the stored ring is still version old (0: none stored). It answers
	// false, storing nothing, when another writer got there first.
	SwapSigningKeys(ctx context.Context, old int64, keys []SigningKey) (bool, error)
}

// KeyRing is the stored key ring with its version.
type KeyRing struct {
	Keys    []SigningKey
	Version int64
}

// SigningKey is one key of the ring. Its private half is sealed with the
// operator's secrets key; the store never holds it in the clear.
type SigningKey struct {
	ID string `json:"id"`
	// Sealed is the private key (PKCS #8), sealed (package seal) for
	// "assertion-key/"+ID.
	Sealed string `json:"sealed"`
	// PublishedAt is when the key joined the ring and was published.
	PublishedAt time.Time `json:"published_at"`
	// ActiveAt is when it becomes the key that signs.
	ActiveAt time.Time `json:"active_at"`
}
