package policy

import (
	"net/netip"
	"time"
)

// Access request statuses. A pending request past its ExpiresAt is
// expired; Status then still says pending in the store, and
// AccessRequest.StatusAt says which.
const (
	RequestPending  = "pending"
	RequestApproved = "approved"
	RequestDenied   = "denied"
	RequestExpired  = "expired"
)

// RequestLifetime is how long a request waits for an answer.
const RequestLifetime = 24 * time.Hour

// AccessRequest is a user's request to have their address unblocked,
// which a master approves or denies (account setting unblock: approval).
type AccessRequest struct {
	ID      string     `json:"id"`
	Account string     `json:"account"`
	User    string     `json:"user"`
	IP      netip.Addr `json:"ip"`
	Reason  string     `json:"reason,omitempty"`
	// TTL is the grant's lifetime asked for; zero: the account's default.
	TTL       Duration  `json:"ttl,omitempty"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Set when decided.
	DecidedBy  string    `json:"decided_by,omitempty"`
	DecidedAt  time.Time `json:"decided_at,omitzero"`
	DenyReason string    `json:"deny_reason,omitempty"`
	// Rule is the grant an approval created.
	Rule RuleID `json:"rule,omitempty"`
}

// StatusAt is the request's status at now: a pending request past its
// expiry is expired.
func (r AccessRequest) StatusAt(now time.Time) string {
	if r.Status == RequestPending && !now.Before(r.ExpiresAt) {
		return RequestExpired
	}
	return r.Status
}
