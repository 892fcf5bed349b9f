package admin

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// FuzzNotificationsBody: whatever PUT .../notifications receives, it is
// refused with a 400 or gives destinations that hold together: http(s)
// URLs without credentials, known events, parseable addresses, a secret
// for every webhook.
func FuzzNotificationsBody(f *testing.F) {
	before := policy.Notifications{Webhooks: []policy.Webhook{{ID: "wh_1", URL: "https://a.example/", Secret: "whsec_1"}}}
	fuzzBody(f, func(b NotificationsChange) error {
		n, created, err := buildNotifications(before, b)
		if err != nil {
			return err
		}
		for _, w := range n.Webhooks {
			u, perr := url.Parse(w.URL)
			if perr != nil || u.User != nil || (u.Scheme != "http" && u.Scheme != "https") || w.Secret == "" {
				return errors.New("a bad webhook was accepted: " + w.URL)
			}
			if w.ID != "wh_1" && created[w.ID] != w.Secret {
				return errors.New("a new webhook's secret is not in the answer")
			}
		}
		for _, e := range n.Emails {
			if !strings.Contains(e.Address, "@") {
				return errors.New("a bad address was accepted: " + e.Address)
			}
		}
		return nil
	})
}

// FuzzAccessRequestBody: a request's reason is refused with a 400 or is
// one line of at most 200 bytes.
func FuzzAccessRequestBody(f *testing.F) {
	fuzzBody(f, func(b accessRequestBody) error {
		r, err := checkReason(b.Reason)
		if err == nil && (len(r) > maxReasonLen || strings.ContainsAny(r, "\r\n\x00")) {
			return errors.New("a bad reason was accepted: " + r)
		}
		if err == nil && b.TTL != 0 {
			_, err = grantTTL(time.Duration(b.TTL), policy.Settings{})
		}
		return err
	})
}

// FuzzDecisionBody: the bodies of approve and deny.
func FuzzDecisionBody(f *testing.F) {
	fuzzBody(f, func(b struct {
		TTL    policy.Duration `json:"ttl"`
		Reason string          `json:"reason"`
	}) error {
		_, err := checkReason(b.Reason)
		return err
	})
}
