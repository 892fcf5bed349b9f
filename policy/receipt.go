package policy

import (
	"net/netip"
	"time"
)

// OffboardReceipt is what an offboarding did and when, kept on the user's
// record (users are never deleted) so that an owner can show it later.
// The newest offboarding's receipt replaces an older one; the audit trail
// keeps every one.
type OffboardReceipt struct {
	Account     string `json:"account"`
	Username    string `json:"username"`
	DisplayName string `json:"display_name,omitempty"`
	// At is when the offboarding ran; every step below happened in its one
	// transaction, at that instant.
	At time.Time `json:"at"`
	// By names who ran it as the audit trail does ("master", a manager's
	// username, "schedule" for the last day).
	By   string `json:"by"`
	Role string `json:"role"`
	// DueAt is the access_until the schedule ran for; zero by hand.
	DueAt time.Time `json:"due_at,omitzero"`
	// LateSeconds is how long after DueAt it ran (a stopped fleet or a
	// store outage delays it, never skips it).
	LateSeconds float64 `json:"late_seconds,omitempty"`

	SessionsEnded int            `json:"sessions_ended"`
	Grants        []ReceiptRule  `json:"grants_revoked"`
	Leases        []ReceiptRule  `json:"leases_revoked"`
	Devices       []ReceiptThing `json:"devices_deactivated"`
	// ConnectionsClosed counts the live desktop connections the revocation
	// closed; absent when the proxy gave no count.
	ConnectionsClosed *int `json:"connections_closed,omitempty"`
}

// ReceiptRule is a grant or lease an offboarding revoked.
type ReceiptRule struct {
	ID        RuleID       `json:"id"`
	CIDR      netip.Prefix `json:"cidr"`
	ExpiresAt time.Time    `json:"expires_at,omitzero"`
	RevokedAt time.Time    `json:"revoked_at"`
}

// ReceiptThing is a device an offboarding made inactive.
type ReceiptThing struct {
	ID   string    `json:"id"`
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}
