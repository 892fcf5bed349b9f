package policy

import (
	"slices"
	"testing"
)

func TestOutboxOrder(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"9", "10", -1},
		{"10", "10", 0},
		{"1712345678901-3", "1712345678901-12", -1},
		{"1712345678902-0", "1712345678901-12", 1},
	} {
		if got := OutboxOrder(tc.a, tc.b); got != tc.want {
			t.Errorf("OutboxOrder(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestEventOfActions pins the audit actions admin writes to the events
// they are notified as.
func TestEventOfActions(t *testing.T) {
	for action, want := range map[string]string{
		"firewall.mode": EventFirewallModeChanged, "rule.add": EventRuleAdded, "rule.delete": EventRuleDeleted,
		"grant.create": EventGrantCreated, "device.enroll": EventDeviceEnrolled, "device.inactive": EventDeviceInactive,
		"user.create": EventUserCreated, "user.offboard": EventUserOffboarded,
		"access_request.create": EventAccessRequestCreated, "access_request.decide": EventAccessRequestDecided,
		"notifications.update": EventNotificationsChanged, "review.overdue": EventAccessReviewOverdue,
		"login.success": "", "grant.renew": "", "review.finish": "",
	} {
		if got := EventOf(action); got != want {
			t.Errorf("EventOf(%s) = %q, want %q", action, got, want)
		}
	}
}

func TestLockedOutLoginIsAnEvent(t *testing.T) {
	locked := AuditEntry{Action: "login.failure", After: []byte(`{"result":"failure","locked_for":"1m0s"}`)}
	if got := EventFor(locked); got != EventLoginLockedOut {
		t.Errorf("a lockout: %q", got)
	}
	if got := EventFor(AuditEntry{Action: "login.failure", After: []byte(`{"result":"failure"}`)}); got != "" {
		t.Errorf("a failure without lockout: %q", got)
	}
	if !slices.Contains(Events(), EventLoginLockedOut) {
		t.Error("login.locked_out is not among the events one may subscribe to")
	}
}

func TestNotificationsChangedCannotBeUnsubscribed(t *testing.T) {
	n := Notifications{Webhooks: []Webhook{{ID: "w", Events: []string{EventRuleAdded}}}}
	if got := DestinationsFor(Notifications{}, n, EventNotificationsChanged); len(got) != 1 {
		t.Errorf("notifications.changed reached %d destinations, want 1", len(got))
	}
	if got := DestinationsFor(Notifications{}, n, EventFirewallModeChanged); len(got) != 0 {
		t.Errorf("an unsubscribed event reached %v", got)
	}
	if _, ok := NewOutboxEntry(AuditEntry{Action: "login.success"}, n, n); ok {
		t.Error("an action that is not notified made an outbox entry")
	}
}

func TestUnblockSetting(t *testing.T) {
	st, ok := LookupSetting("unblock")
	if !ok {
		t.Fatal("no unblock setting")
	}
	var s Settings
	if v := st.Value(s); v != UnblockSelf {
		t.Errorf("default %v", v)
	}
	if err := st.ParseJSON(&s, []byte(`"approval"`)); err != nil || s.Unblock != UnblockApproval || st.Text(s) != "approval" {
		t.Fatalf("approval: %v %+v", err, s)
	}
	if err := st.ParseJSON(&s, []byte(`"maybe"`)); err == nil || s.Unblock != UnblockApproval {
		t.Errorf("maybe: %v %+v", err, s)
	}
	if err := st.ParseJSON(&s, []byte(`true`)); err == nil {
		t.Error("a boolean was accepted")
	}
	if err := st.ParseJSON(&s, []byte(`null`)); err != nil || s.Unblock != "" {
		t.Errorf("null: %v %+v", err, s)
	}
	if err := st.ParseJSON(&s, st.FormJSON("approval")); err != nil || s.Unblock != UnblockApproval {
		t.Errorf("form: %v", err)
	}
}
