package web

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// The master's notification settings and access-request inbox, and the
// employee's "Request access" page.

const (
	sectionNotifications = "notifications"
	sectionRequests      = "access-requests"
)

type notificationsData struct {
	View admin.NotificationsView
	// Events are the event types, each with whether it is always sent.
	// Secret is a new webhook's, shown in the answer that created it only.
	Secret, SecretURL string
}

// eventChoice is one event's checkbox.
type eventChoice struct {
	Name    string
	Checked bool
}

// Choices are the checkboxes of a destination that gets events (none:
// every event).
func (d notificationsData) Choices(events []string) []eventChoice {
	var out []eventChoice
	for _, e := range d.View.Events {
		if e == policy.EventNotificationsChanged {
			continue // always sent: silencing must not go unnoticed
		}
		out = append(out, eventChoice{Name: e, Checked: slices.Contains(events, e)})
	}
	return out
}

func (p *Pages) notificationsPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.showNotifications(w, r, c, notificationsData{})
}

func (p *Pages) showNotifications(w http.ResponseWriter, r *http.Request, c *call, d notificationsData) error {
	pg, err := p.masterPage(r, c, sectionNotifications, "Notifications")
	if err != nil {
		return err
	}
	if d.View, err = p.svc.Notifications(r.Context(), c.actor, pg.Account.ID); err != nil {
		return err
	}
	pg.Data = d
	p.render(w, r, http.StatusOK, "notifications", pg)
	return nil
}

// changeNotifications applies edit to the destinations as they are. A
// refused change comes back as a warning on the page.
func (p *Pages) changeNotifications(w http.ResponseWriter, r *http.Request, c *call, done string,
	edit func(ch *admin.NotificationsChange)) (admin.NotificationsView, bool, error) {
	acct := r.PathValue("acct")
	cur, err := p.svc.Notifications(r.Context(), c.actor, acct)
	if err != nil {
		return cur, false, err
	}
	ch := cur.Change()
	edit(&ch)
	v, err := p.svc.SetNotifications(r.Context(), c.actor, acct, ch)
	if err != nil {
		e := admin.AsError(err)
		if e.Code != admin.CodeInvalidNotifications && e.Code != admin.CodeConfirmationRequired {
			return v, false, err
		}
		msg := e.Msg
		// The page shows the events to tick; the flash cookie holds
		// little (cookieValue reads at most 256 bytes of it).
		if i := strings.Index(msg, " (known: "); i > 0 {
			msg = msg[:i]
		}
		if e.Code == admin.CodeConfirmationRequired {
			msg = "This is the last destination: removing it silences every notification of this account. Tick the box to confirm."
		}
		setFlash(w, flashWarn, sentence(msg))
		return v, false, redirectTo(accountPath(acct, sectionNotifications))
	}
	if done != "" {
		setFlash(w, flashOK, done)
	}
	return v, true, nil
}

// formEvents are the events ticked in a form; none means every event.
func formEvents(r *http.Request) []string {
	if err := r.ParseForm(); err != nil {
		return nil
	}
	var out []string
	for _, e := range r.PostForm["event"] {
		out = append(out, trim(e, 64))
	}
	return out
}

func (p *Pages) addWebhook(w http.ResponseWriter, r *http.Request, c *call) error {
	u := strings.TrimSpace(trim(r.PostFormValue("url"), 2048))
	events := formEvents(r)
	v, ok, err := p.changeNotifications(w, r, c, "", func(ch *admin.NotificationsChange) {
		ch.Webhooks = append(ch.Webhooks, admin.WebhookChange{URL: u, Events: events})
	})
	if !ok {
		return err
	}
	// The answer holds the secret of the one created; show it now, once.
	d := notificationsData{}
	for _, h := range v.Webhooks {
		if h.Secret != "" {
			d.Secret, d.SecretURL = h.Secret, h.URL
		}
	}
	return p.showNotifications(w, r, c, d)
}

func (p *Pages) deleteWebhook(w http.ResponseWriter, r *http.Request, c *call) error {
	id := r.PathValue("id")
	_, ok, err := p.changeNotifications(w, r, c, "The webhook was removed; it was told so.", func(ch *admin.NotificationsChange) {
		ch.Webhooks = slices.DeleteFunc(ch.Webhooks, func(h admin.WebhookChange) bool { return h.ID == id })
		ch.Confirm = r.PostFormValue("confirm") == "on"
	})
	if !ok {
		return err
	}
	return redirectTo(accountPath(r.PathValue("acct"), sectionNotifications))
}

func (p *Pages) addEmail(w http.ResponseWriter, r *http.Request, c *call) error {
	a := strings.TrimSpace(trim(r.PostFormValue("address"), 320))
	events := formEvents(r)
	_, ok, err := p.changeNotifications(w, r, c, a+" will get this account's notifications.", func(ch *admin.NotificationsChange) {
		ch.Emails = append(ch.Emails, admin.EmailChange{Address: a, Events: events})
	})
	if !ok {
		return err
	}
	return redirectTo(accountPath(r.PathValue("acct"), sectionNotifications))
}

func (p *Pages) deleteEmail(w http.ResponseWriter, r *http.Request, c *call) error {
	a := r.PostFormValue("address")
	_, ok, err := p.changeNotifications(w, r, c, a+" was removed; it was told so.", func(ch *admin.NotificationsChange) {
		ch.Emails = slices.DeleteFunc(ch.Emails, func(e admin.EmailChange) bool { return e.Address == a })
		ch.Confirm = r.PostFormValue("confirm") == "on"
	})
	if !ok {
		return err
	}
	return redirectTo(accountPath(r.PathValue("acct"), sectionNotifications))
}

// setEvents changes which events one destination gets: a webhook by its
// ID in the path, or the email address in the form.
func (p *Pages) setEvents(w http.ResponseWriter, r *http.Request, c *call) error {
	id, addr := r.PathValue("id"), r.PostFormValue("address")
	events := formEvents(r)
	_, ok, err := p.changeNotifications(w, r, c, "Saved which events it gets.", func(ch *admin.NotificationsChange) {
		for i := range ch.Webhooks {
			if id != "" && ch.Webhooks[i].ID == id {
				ch.Webhooks[i].Events = events
			}
		}
		for i := range ch.Emails {
			if id == "" && ch.Emails[i].Address == addr {
				ch.Emails[i].Events = events
			}
		}
	})
	if !ok {
		return err
	}
	return redirectTo(accountPath(r.PathValue("acct"), sectionNotifications))
}

func (p *Pages) testNotifications(w http.ResponseWriter, r *http.Request, c *call) error {
	acct := r.PathValue("acct")
	if err := p.svc.TestNotifications(r.Context(), c.actor, acct); err != nil {
		e := admin.AsError(err)
		if e.Code != admin.CodeInvalidNotifications {
			return err
		}
		setFlash(w, flashWarn, sentence(e.Msg))
		return redirectTo(accountPath(acct, sectionNotifications))
	}
	setFlash(w, flashOK, "A test notification is on its way to every destination; its delivery shows below in a moment.")
	return redirectTo(accountPath(acct, sectionNotifications))
}

type requestsData struct {
	Pending, Decided []admin.AccessRequestView
	Approval         bool // the account's unblock setting is approval
}

func (p *Pages) requestsPage(w http.ResponseWriter, r *http.Request, c *call) error {
	pg, err := p.masterPage(r, c, sectionRequests, "Access requests")
	if err != nil {
		return err
	}
	rs, err := p.svc.AccessRequests(r.Context(), c.actor, pg.Account.ID, "")
	if err != nil {
		return err
	}
	set, err := p.svc.Settings(r.Context(), c.actor, pg.Account.ID)
	if err != nil {
		return err
	}
	d := requestsData{Approval: set.Settings["unblock"] == policy.UnblockApproval}
	for _, rq := range rs {
		if rq.Status == policy.RequestPending {
			d.Pending = append(d.Pending, rq)
		} else {
			d.Decided = append(d.Decided, rq)
		}
	}
	pg.Data = d
	p.render(w, r, http.StatusOK, "access_requests", pg)
	return nil
}

func (p *Pages) decideRequest(approve bool) handler {
	return func(w http.ResponseWriter, r *http.Request, c *call) error {
		acct := r.PathValue("acct")
		d := admin.Decision{Approve: approve, Reason: trim(r.PostFormValue("reason"), 400)}
		if t := strings.TrimSpace(r.PostFormValue("ttl")); t != "" && approve {
			ttl, err := time.ParseDuration(t)
			if err != nil || ttl <= 0 {
				setFlash(w, flashWarn, `The time must be a duration like "30m" or "2h".`)
				return redirectTo(accountPath(acct, sectionRequests))
			}
			d.TTL = ttl
		}
		v, err := p.svc.DecideAccessRequest(r.Context(), c.actor, acct, r.PathValue("id"), d)
		if err != nil {
			e := admin.AsError(err)
			if e.Status >= 500 || e.Status == http.StatusNotFound || e.Status == http.StatusForbidden {
				return err
			}
			setFlash(w, flashWarn, sentence(e.Msg))
			return redirectTo(accountPath(acct, sectionRequests))
		}
		if approve {
			setFlash(w, flashOK, v.User+" may now connect from "+v.IP.String()+".")
		} else {
			setFlash(w, flashOK, v.User+"'s request was denied.")
		}
		return redirectTo(accountPath(acct, sectionRequests))
	}
}

type myAccessData struct {
	Requests []admin.AccessRequestView
	Form     *form
}

func (p *Pages) myAccessPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.showMyAccess(w, r, c, http.StatusOK, newForm())
}

func (p *Pages) showMyAccess(w http.ResponseWriter, r *http.Request, c *call, status int, f *form) error {
	rs, err := p.svc.MyAccessRequests(r.Context(), c.actor)
	if err != nil {
		return err
	}
	pg := p.newPage(c, "Request access")
	pg.current("/me/access")
	pg.Data = myAccessData{Requests: rs, Form: f}
	p.render(w, r, status, "my_access", pg)
	return nil
}

func (p *Pages) requestAccess(w http.ResponseWriter, r *http.Request, c *call) error {
	reason := trim(r.PostFormValue("reason"), 400)
	_, created, err := p.svc.RequestAccess(r.Context(), c.actor, c.actor.Account, reason, 0)
	if err != nil {
		e := admin.AsError(err)
		if e.Status >= 500 || e.Status == http.StatusForbidden && e.Code == admin.CodeForbidden {
			return err
		}
		f := newForm()
		f.Values["reason"] = reason
		f.Errors[""] = sentence(e.Msg)
		return p.showMyAccess(w, r, c, e.Status, f)
	}
	if created {
		setFlash(w, flashOK, "Your request was sent to the account holder. This page shows the answer.")
	} else {
		setFlash(w, flashInfo, "Your request for this address is still waiting for an answer.")
	}
	return redirectTo("/me/access")
}
