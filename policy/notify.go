package policy

import (
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Notification event types (SPEC "Notifications and access requests").
const (
	EventFirewallModeChanged   = "firewall.mode_changed"
	EventRuleAdded             = "rule.added"
	EventRuleDeleted           = "rule.deleted"
	EventGrantCreated          = "grant.created"
	EventDeviceEnrolled        = "device.enrolled"
	EventDeviceInactive        = "device.inactive"
	EventUserCreated           = "user.created"
	EventUserOffboarded        = "user.offboarded"
	EventLoginLockedOut        = "login.locked_out"
	EventAccessRequestCreated  = "access_request.created"
	EventAccessRequestDecided  = "access_request.decided"
	EventNotificationsChanged  = "notifications.changed"
	EventPasswordReset         = "password.reset"
	EventNotificationsTest     = "notifications.test"
	EventAccessReviewOverdue   = "access_review.overdue"
	AuditNotificationsChanged  = "notifications.update"
	AuditNotificationsTest     = "notifications.test"
	auditFirewallMode          = "firewall.mode"
	auditRuleAdd, auditRuleDel = "rule.add", "rule.delete"
)

// eventOfAction maps the audit actions that are notified to their event
// type. It is the one place that decides what is notified: a store writes
// an outbox entry for every audit entry whose action is here, in the same
// transaction, so a change and its notification land together or not at
// all.
var eventOfAction = map[string]string{
	auditFirewallMode:         EventFirewallModeChanged,
	auditRuleAdd:              EventRuleAdded,
	auditRuleDel:              EventRuleDeleted,
	"grant.create":            EventGrantCreated,
	"device.enroll":           EventDeviceEnrolled,
	"device.inactive":         EventDeviceInactive,
	"user.create":             EventUserCreated,
	"user.offboard":           EventUserOffboarded,
	"access_request.create":   EventAccessRequestCreated,
	"access_request.decide":   EventAccessRequestDecided,
	AuditNotificationsChanged: EventNotificationsChanged,
	"password.reset":          EventPasswordReset,
	AuditNotificationsTest:    EventNotificationsTest,
	AuditReviewOverdue:        EventAccessReviewOverdue,
}

// AuditReviewOverdue is the audit action of an access review that became
// overdue, written once per due date.
const AuditReviewOverdue = "review.overdue"

// EventOf returns the notification event an audit action reports, "" when
// the action is not notified.
func EventOf(action string) string { return eventOfAction[action] }

// EventFor returns the notification event of audit entry e: EventOf its
// action, except that a failed login that locked the login out (its After
// names locked_for) is login.locked_out.
func EventFor(e AuditEntry) string {
	if e.Action == "login.failure" {
		var after map[string]json.RawMessage
		if json.Unmarshal(e.After, &after) == nil && after["locked_for"] != nil {
			return EventLoginLockedOut
		}
	}
	return EventOf(e.Action)
}

// Events lists the event types a destination may subscribe to, sorted.
func Events() []string {
	out := []string{EventLoginLockedOut}
	for _, e := range eventOfAction {
		if e != EventNotificationsTest {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Notifications are an account's notification destinations.
type Notifications struct {
	Webhooks []Webhook `json:"webhooks,omitempty"`
	Emails   []Email   `json:"emails,omitempty"`
}

// Webhook is one webhook destination. Secret signs every delivery; it is
// shown once, when the webhook is created.
type Webhook struct {
	ID     string   `json:"id"`
	URL    string   `json:"url"`
	Secret string   `json:"secret"`
	Events []string `json:"events,omitempty"` // empty: every event
}

// Email is one email recipient.
type Email struct {
	Address string   `json:"address"`
	Events  []string `json:"events,omitempty"` // empty: every event
}

// Len is the number of destinations.
func (n Notifications) Len() int { return len(n.Webhooks) + len(n.Emails) }

// Destination kinds.
const (
	DestWebhook = "webhook"
	DestEmail   = "email"
)

// Destination is where one notification goes, as it was when the change
// was made: a notification of a change to the destinations reaches the old
// ones too, which may be gone by the time it is delivered.
type Destination struct {
	Kind    string `json:"kind"`
	ID      string `json:"id,omitempty"` // a webhook's
	URL     string `json:"url,omitempty"`
	Secret  string `json:"secret,omitempty"`
	Address string `json:"address,omitempty"`
}

// Key names the destination in delivery status: "webhook/ID" or
// "email/ADDRESS".
func (d Destination) Key() string {
	if d.Kind == DestWebhook {
		return DestWebhook + "/" + d.ID
	}
	return DestEmail + "/" + strings.ToLower(d.Address)
}

func subscribed(events []string, event string) bool {
	// notifications.changed cannot be unsubscribed: silencing the
	// notifications is exactly what it reports. A test goes everywhere.
	if len(events) == 0 || event == EventNotificationsChanged || event == EventNotificationsTest {
		return true
	}
	return slices.Contains(events, event)
}

// DestinationsFor returns where a notification of event goes: every
// destination of now subscribed to it and, for notifications.changed, also
// every destination of before, each once.
func DestinationsFor(before, now Notifications, event string) []Destination {
	var out []Destination
	seen := map[string]bool{}
	add := func(n Notifications) {
		for _, w := range n.Webhooks {
			d := Destination{Kind: DestWebhook, ID: w.ID, URL: w.URL, Secret: w.Secret}
			if subscribed(w.Events, event) && !seen[d.Key()] {
				seen[d.Key()] = true
				out = append(out, d)
			}
		}
		for _, e := range n.Emails {
			d := Destination{Kind: DestEmail, Address: e.Address}
			if subscribed(e.Events, event) && !seen[d.Key()] {
				seen[d.Key()] = true
				out = append(out, d)
			}
		}
	}
	add(now)
	if event == EventNotificationsChanged {
		add(before)
	}
	return out
}

// NewOutboxEntry returns the outbox entry a store writes with audit entry
// e, which holds its ID: ok is false when e's action is not notified or
// the account has no destination for it. before and now are the account's
// destinations when the transaction began and as it commits.
func NewOutboxEntry(e AuditEntry, before, now Notifications) (OutboxEntry, bool) {
	event := EventFor(e)
	if event == "" {
		return OutboxEntry{}, false
	}
	dests := DestinationsFor(before, now, event)
	if len(dests) == 0 {
		return OutboxEntry{}, false
	}
	o := OutboxEntry{ID: e.ID, Account: e.Account, Event: event, Entry: e, CreatedAt: e.Time}
	for _, d := range dests {
		o.Deliveries = append(o.Deliveries, Delivery{Destination: d})
	}
	return o, true
}

// OutboxEntry is a notification waiting to be delivered: the audit entry
// it reports and, per destination, what delivery has done so far.
type OutboxEntry struct {
	// ID is the audit entry's ID; receivers drop repeats by it.
	ID         string     `json:"id"`
	Account    string     `json:"account"`
	Event      string     `json:"event"`
	Entry      AuditEntry `json:"entry"`
	CreatedAt  time.Time  `json:"created_at"`
	Deliveries []Delivery `json:"deliveries"`
}

// Done reports whether every destination is done with.
func (o OutboxEntry) Done() bool {
	for _, d := range o.Deliveries {
		if !d.Done {
			return false
		}
	}
	return true
}

// Delivery is the state of one notification at one destination.
type Delivery struct {
	Destination Destination `json:"destination"`
	// Attempts are every attempt so far, oldest first.
	Attempts []Attempt `json:"attempts,omitempty"`
	// NextAt is when the next attempt is due; zero: at once.
	NextAt time.Time `json:"next_at,omitzero"`
	// Done is true once delivered, or given up after the retry period.
	Done bool `json:"done,omitempty"`
}

// Attempt is one delivery attempt.
type Attempt struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"`
	// Status says what happened ("200", "connection refused", "gave up"),
	// never a secret.
	Status string `json:"status"`
	// Entry is the outbox entry the attempt delivered.
	Entry string `json:"entry,omitempty"`
	// Event is its type.
	Event string `json:"event,omitempty"`
}

// OutboxOrder compares two outbox entry IDs of one account in the order
// their changes were committed: IDs are a backend's audit IDs, which are
// numbers ("17") or Redis stream IDs ("1712345678901-3").
func OutboxOrder(a, b string) int {
	am, as := splitID(a)
	bm, bs := splitID(b)
	if c := cmpNum(am, bm); c != 0 {
		return c
	}
	return cmpNum(as, bs)
}

func splitID(id string) (string, string) {
	m, s, _ := strings.Cut(id, "-")
	return m, s
}

// cmpNum compares decimal numbers without leading zeros as text.
func cmpNum(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}
