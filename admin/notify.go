package admin

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Bounds of an account's notification destinations.
const (
	maxWebhooks = 10
	maxEmails   = 20
	maxURLLen   = 2048
)

// NotificationsView is an account's notification destinations as the API
// shows them: webhooks without their secret, and each destination's last
// delivery attempt.
type NotificationsView struct {
	Webhooks []WebhookView `json:"webhooks"`
	Emails   []EmailView   `json:"emails"`
	// Events are the event types a destination may subscribe to.
	Events []string `json:"events"`
}

// WebhookView is one webhook. Secret is set only in the answer that
// created it: it is shown once.
type WebhookView struct {
	ID     string          `json:"id"`
	URL    string          `json:"url"`
	Events []string        `json:"events"`
	Secret string          `json:"secret,omitempty"`
	Last   *policy.Attempt `json:"last_delivery,omitempty"`
	Queue
}

// Queue is what waits for one destination: how many notifications, and
// when the next attempt is due (zero: at once, or none waits).
type Queue struct {
	Waiting     int       `json:"waiting"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
}

// EmailView is one email recipient.
type EmailView struct {
	Address string          `json:"address"`
	Events  []string        `json:"events"`
	Last    *policy.Attempt `json:"last_delivery,omitempty"`
	Queue
}

// NotificationsChange is the whole new set of destinations. A webhook
// with the ID of an existing one keeps its secret; one without an ID is
// new and gets a secret.
type NotificationsChange struct {
	Webhooks []WebhookChange `json:"webhooks"`
	Emails   []EmailChange   `json:"emails"`
	// Confirm is needed to remove the last destination.
	Confirm bool `json:"confirm"`
}

// WebhookChange is one webhook of a NotificationsChange.
type WebhookChange struct {
	ID     string   `json:"id"`
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

// EmailChange is one email recipient of a NotificationsChange.
type EmailChange struct {
	Address string   `json:"address"`
	Events  []string `json:"events"`
}

// Change returns the change that keeps v as it is, to edit.
func (v NotificationsView) Change() NotificationsChange {
	var ch NotificationsChange
	for _, w := range v.Webhooks {
		ch.Webhooks = append(ch.Webhooks, WebhookChange{ID: w.ID, URL: w.URL, Events: w.Events})
	}
	for _, e := range v.Emails {
		ch.Emails = append(ch.Emails, EmailChange{Address: e.Address, Events: e.Events})
	}
	return ch
}

// deliveryStatusStore is what the status of destinations is read from; a
// store without it shows none.
type deliveryStatusStore interface {
	DeliveryStatus(ctx context.Context, account string) (map[string]policy.Attempt, error)
	OutboxEntries(ctx context.Context, account string) ([]policy.OutboxEntry, error)
}

// OutboxEntries implements deliveryStatusStore within the deadline.
func (b bounded) OutboxEntries(ctx context.Context, account string) (es []policy.OutboxEntry, err error) {
	ds, ok := b.st.(deliveryStatusStore)
	if !ok {
		return nil, nil
	}
	err = b.call(ctx, "read outbox", func(ctx context.Context) error {
		es, err = ds.OutboxEntries(ctx, account)
		return err
	})
	return es, err
}

// queues counts what waits for each destination, by Destination.Key.
func queues(es []policy.OutboxEntry) map[string]Queue {
	out := map[string]Queue{}
	for _, e := range es {
		for _, d := range e.Deliveries {
			if d.Done {
				continue
			}
			q := out[d.Destination.Key()]
			if q.Waiting == 0 {
				q.NextAttempt = d.NextAt // the oldest waiting goes first
			}
			q.Waiting++
			out[d.Destination.Key()] = q
		}
	}
	return out
}

// DeliveryStatus implements deliveryStatusStore within the deadline.
func (b bounded) DeliveryStatus(ctx context.Context, account string) (st map[string]policy.Attempt, err error) {
	ds, ok := b.st.(deliveryStatusStore)
	if !ok {
		return nil, nil
	}
	err = b.call(ctx, "read delivery status", func(ctx context.Context) error {
		st, err = ds.DeliveryStatus(ctx, account)
		return err
	})
	return st, err
}

// notificationsView shows n; status and queue, if not nil, add each
// destination's last attempt and what waits for it.
func notificationsView(n policy.Notifications, status map[string]policy.Attempt, queue map[string]Queue) NotificationsView {
	v := NotificationsView{Webhooks: []WebhookView{}, Emails: []EmailView{}, Events: policy.Events()}
	last := func(d policy.Destination) *policy.Attempt {
		if a, ok := status[d.Key()]; ok {
			return &a
		}
		return nil
	}
	for _, w := range n.Webhooks {
		d := policy.Destination{Kind: policy.DestWebhook, ID: w.ID}
		v.Webhooks = append(v.Webhooks, WebhookView{ID: w.ID, URL: w.URL, Events: orEmpty(w.Events),
			Last: last(d), Queue: queue[d.Key()]})
	}
	for _, e := range n.Emails {
		d := policy.Destination{Kind: policy.DestEmail, Address: e.Address}
		v.Emails = append(v.Emails, EmailView{Address: e.Address, Events: orEmpty(e.Events),
			Last: last(d), Queue: queue[d.Key()]})
	}
	return v
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Notifications returns account's notification destinations and how the
// last delivery to each went.
func (s *Service) Notifications(ctx context.Context, a Actor, account string) (NotificationsView, error) {
	acct, err := s.asMaster(ctx, a, account)
	if err != nil {
		return NotificationsView{}, err
	}
	var status map[string]policy.Attempt
	var queue map[string]Queue
	if ds, ok := s.store.(deliveryStatusStore); ok {
		if status, err = ds.DeliveryStatus(ctx, account); err != nil {
			return NotificationsView{}, err
		}
		es, err := ds.OutboxEntries(ctx, account)
		if err != nil {
			return NotificationsView{}, err
		}
		queue = queues(es)
	}
	return notificationsView(acct.Notifications, status, queue), nil
}

// SetNotifications replaces account's destinations with ch. The change is
// audited as notifications.update, which the store notifies to the old
// and the new destinations alike, so silencing cannot go unnoticed;
// removing the last destination needs ch.Confirm. A change that changes
// nothing is not audited.
func (s *Service) SetNotifications(ctx context.Context, a Actor, account string, ch NotificationsChange) (NotificationsView, error) {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return NotificationsView{}, err
	}
	if len(ch.Webhooks) > maxWebhooks || len(ch.Emails) > maxEmails {
		return NotificationsView{}, badRequest(CodeInvalidNotifications, "at most %d webhooks and %d email recipients", maxWebhooks, maxEmails)
	}
	var res NotificationsView
	err := s.store.Update(ctx, account, func(tx policy.Tx) error {
		acct, err := tx.Account()
		if err != nil {
			return err
		}
		before := acct.Notifications
		next, created, err := buildNotifications(before, ch)
		if err != nil {
			return err
		}
		if before.Len() > 0 && next.Len() == 0 && !ch.Confirm {
			return badRequest(CodeConfirmationRequired,
				`removing the last destination silences every notification of this account; send "confirm": true to do it`)
		}
		bv, nv := notificationsView(before, nil, nil), notificationsView(next, nil, nil)
		res = nv
		res.Webhooks = slices.Clone(nv.Webhooks) // the secrets go to the answer, never the audit
		for i := range res.Webhooks {
			res.Webhooks[i].Secret = created[res.Webhooks[i].ID]
		}
		if equalJSON(bv, nv) {
			return errNoChange
		}
		acct.Notifications = next
		if err := tx.PutAccount(acct); err != nil {
			return err
		}
		return tx.Audit(s.audit(a, account, policy.AuditNotificationsChanged, "account/"+account,
			destinationsAudit(bv), destinationsAudit(nv)))
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return NotificationsView{}, err
	}
	s.log.Info("notification destinations set", zap.String("account", account), zap.String("actor", a.name(account)),
		zap.Int("webhooks", len(res.Webhooks)), zap.Int("emails", len(res.Emails)))
	return res, nil
}

// TestNotifications sends a notifications.test event to every
// destination of account, through the outbox like any other.
func (s *Service) TestNotifications(ctx context.Context, a Actor, account string) error {
	acct, err := s.asMaster(ctx, a, account)
	if err != nil {
		return err
	}
	if acct.Notifications.Len() == 0 {
		return badRequest(CodeInvalidNotifications, "the account has no destination to test")
	}
	return s.store.Update(ctx, account, func(tx policy.Tx) error {
		return tx.Audit(s.audit(a, account, policy.AuditNotificationsTest, "account/"+account, nil, nil))
	})
}

// destinationsAudit is what the audit trail keeps of a set of
// destinations: never a secret, never a status.
func destinationsAudit(v NotificationsView) any {
	type hook struct {
		ID     string   `json:"id"`
		URL    string   `json:"url"`
		Events []string `json:"events"`
	}
	type mail struct {
		Address string   `json:"address"`
		Events  []string `json:"events"`
	}
	hs, ms := []hook{}, []mail{}
	for _, w := range v.Webhooks {
		hs = append(hs, hook{w.ID, w.URL, w.Events})
	}
	for _, e := range v.Emails {
		ms = append(ms, mail{e.Address, e.Events})
	}
	return map[string]any{"webhooks": hs, "emails": ms}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// buildNotifications checks ch and returns the destinations it sets,
// with the secrets of the webhooks it creates, by ID.
func buildNotifications(before policy.Notifications, ch NotificationsChange) (policy.Notifications, map[string]string, error) {
	var next policy.Notifications
	created := map[string]string{}
	seen := map[string]bool{}
	for i, w := range ch.Webhooks {
		if err := checkWebhookURL(w.URL); err != nil {
			return next, nil, badRequest(CodeInvalidNotifications, "webhooks[%d].url: %s", i, err.Error())
		}
		events, err := checkEvents(w.Events)
		if err != nil {
			return next, nil, badRequest(CodeInvalidNotifications, "webhooks[%d].events: %s", i, err.Error())
		}
		hook := policy.Webhook{ID: w.ID, URL: w.URL, Events: events}
		if w.ID == "" {
			hook.ID, hook.Secret = newWebhookID(), newWebhookSecret()
			created[hook.ID] = hook.Secret
		} else {
			j := slices.IndexFunc(before.Webhooks, func(o policy.Webhook) bool { return o.ID == w.ID })
			if j < 0 {
				return next, nil, badRequest(CodeInvalidNotifications, "webhooks[%d].id: no webhook %q; leave the id out to add one", i, trimName(w.ID))
			}
			hook.Secret = before.Webhooks[j].Secret
		}
		if seen["w"+hook.ID] {
			return next, nil, badRequest(CodeInvalidNotifications, "webhooks[%d].id: %q twice", i, trimName(w.ID))
		}
		seen["w"+hook.ID] = true
		next.Webhooks = append(next.Webhooks, hook)
	}
	for i, e := range ch.Emails {
		addr, err := mail.ParseAddress(e.Address)
		if err != nil || addr.Name != "" || addr.Address != strings.TrimSpace(e.Address) {
			return next, nil, badRequest(CodeInvalidNotifications, "emails[%d].address: not an email address like owner@example.com", i)
		}
		events, err := checkEvents(e.Events)
		if err != nil {
			return next, nil, badRequest(CodeInvalidNotifications, "emails[%d].events: %s", i, err.Error())
		}
		key := "e" + strings.ToLower(addr.Address)
		if seen[key] {
			return next, nil, badRequest(CodeInvalidNotifications, "emails[%d].address: listed twice", i)
		}
		seen[key] = true
		next.Emails = append(next.Emails, policy.Email{Address: addr.Address, Events: events})
	}
	return next, created, nil
}

// checkWebhookURL accepts an absolute http(s) URL without credentials:
// what is dialled is checked again at dial time.
func checkWebhookURL(s string) error {
	if len(s) > maxURLLen {
		return errors.New("longer than 2048 bytes")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Hostname() == "" {
		return errors.New("must be an http or https URL like https://hooks.example.com/gatekeeper")
	}
	if u.User != nil {
		return errors.New("must not hold a user name or password; the signature authenticates the sender")
	}
	return nil
}

// checkEvents accepts known event types, each once; none means all.
func checkEvents(es []string) ([]string, error) {
	known := policy.Events()
	var out []string
	for _, e := range es {
		if !slices.Contains(known, e) {
			return nil, errors.New("unknown event " + quoteName(e) + " (known: " + strings.Join(known, ", ") + ")")
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return out, nil
}

func quoteName(s string) string {
	b, _ := json.Marshal(trimName(s))
	return string(b)
}

func newWebhookID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "wh_" + base64.RawURLEncoding.EncodeToString(b)
}

func newWebhookSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "whsec_" + base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) notifications(w http.ResponseWriter, r *http.Request, c *call) error {
	v, err := s.svc.Notifications(r.Context(), c.actor, r.PathValue("acct"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) setNotifications(w http.ResponseWriter, r *http.Request, c *call) error {
	var b NotificationsChange
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	v, err := s.svc.SetNotifications(r.Context(), c.actor, r.PathValue("acct"), b)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) testNotifications(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := s.svc.TestNotifications(r.Context(), c.actor, r.PathValue("acct")); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"event": policy.EventNotificationsTest})
	return nil
}
