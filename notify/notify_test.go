package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/notify"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

const secret = "whsec-test-0123456789"

// recorder is a webhook receiver that verifies every signature and keeps
// what arrived; while down, it answers 503.
type recorder struct {
	t   *testing.T
	srv *httptest.Server

	mu     sync.Mutex
	down   bool
	bodies []notify.Body
	failed int
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		r.failed++
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if err := notify.Verify(secret, req.Header.Get(notify.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
		r.t.Errorf("signature: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var b notify.Body
	if err := json.Unmarshal(body, &b); err != nil {
		r.t.Errorf("body: %v", err)
	}
	r.bodies = append(r.bodies, b)
	w.WriteHeader(http.StatusNoContent)
}

func (r *recorder) got() []notify.Body {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notify.Body(nil), r.bodies...)
}

func (r *recorder) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

func (r *recorder) failures() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// waitFor polls cond with a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func openBolt(t *testing.T) policy.Store {
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "gk.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// setup creates account "10042" with one webhook to url.
func setup(t *testing.T, s policy.Store, url string) {
	t.Helper()
	ctx := t.Context()
	a := policy.Account{ID: "10042", Name: "Studio", Mode: policy.ModeOn,
		Notifications: policy.Notifications{Webhooks: []policy.Webhook{{ID: "w1", URL: url, Secret: secret}}}}
	if err := s.CreateAccount(ctx, a, policy.AuditEntry{Actor: "test", Action: "account.create"}); err != nil {
		t.Fatal(err)
	}
}

// addRules commits n notified changes, one transaction each, and returns
// their audit IDs in commit order.
func addRules(t *testing.T, s policy.Store, n int) []string {
	t.Helper()
	for i := range n {
		err := s.Update(t.Context(), "10042", func(tx policy.Tx) error {
			return tx.Audit(policy.AuditEntry{Actor: "master", Role: policy.RoleMaster, Action: "rule.add",
				Target: "rule/" + string(rune('a'+i%26))})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	es, err := s.Audit(t.Context(), "10042", policy.AuditQuery{Limit: n})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(es))
	for i, e := range es {
		ids[len(es)-1-i] = e.ID
	}
	return ids
}

func run(t *testing.T, d *notify.Dispatcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestWebhookSignedWithItsAuditEntry(t *testing.T) {
	rec := newRecorder(t)
	s := openBolt(t)
	setup(t, s, rec.srv.URL+"/hook")
	err := s.Update(t.Context(), "10042", func(tx policy.Tx) error {
		a, _ := tx.Account()
		a.Mode = policy.ModeOff
		if err := tx.PutAccount(a); err != nil {
			return err
		}
		return tx.Audit(policy.AuditEntry{Actor: "master", Role: policy.RoleMaster, Action: "firewall.mode",
			Before: json.RawMessage(`{"mode":"on"}`), After: json.RawMessage(`{"mode":"off"}`)})
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, notify.NewDispatcher(s, notify.Options{Webhooks: notify.NewWebhooks(notify.WebhookOptions{AllowPrivate: true})}))
	waitFor(t, "the webhook", func() bool { return len(rec.got()) == 1 })
	b := rec.got()[0]
	es, _ := s.Audit(t.Context(), "10042", policy.AuditQuery{Limit: 1})
	if b.Type != policy.EventFirewallModeChanged || b.ID != es[0].ID || b.Action != "firewall.mode" || string(b.After) != `{"mode":"off"}` {
		t.Errorf("webhook body %+v, audit entry %+v", b, es[0])
	}
	waitFor(t, "the outbox to empty", func() bool {
		es, _ := s.OutboxEntries(t.Context(), "10042")
		return len(es) == 0
	})
	st, err := s.DeliveryStatus(t.Context(), "10042")
	if err != nil || !st["webhook/w1"].OK || st["webhook/w1"].Status != "204" {
		t.Errorf("delivery status %+v, %v", st, err)
	}
}

func TestSignature(t *testing.T) {
	now := time.Unix(1700000000, 0)
	body := []byte(`{"id":"1"}`)
	h := notify.Sign("s", now, body)
	// Pinned from an independent HMAC (Python's hmac module), so the
	// README's verification snippet and this agree.
	if h != "t=1700000000,v1=518560e36121c695f19446a0ea05f902b51ba3fdd3def859bda5717fa06f3a8f" {
		t.Fatalf("header %q", h)
	}
	if err := notify.Verify("s", h, body, now, time.Minute); err != nil {
		t.Errorf("own signature: %v", err)
	}
	for name, check := range map[string]error{
		"other secret": notify.Verify("t", h, body, now, time.Minute),
		"other body":   notify.Verify("s", h, []byte(`{"id":"2"}`), now, time.Minute),
		"too old":      notify.Verify("s", h, body, now.Add(time.Hour), time.Minute),
		"malformed":    notify.Verify("s", "v1=00", body, now, time.Minute),
	} {
		if check == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

func TestPrivateDestinationsRefusedAtDial(t *testing.T) {
	rec := newRecorder(t)
	port := rec.srv.URL[strings.LastIndex(rec.srv.URL, ":"):]
	o := policy.OutboxEntry{ID: "1", Event: policy.EventRuleAdded}
	strict := notify.NewWebhooks(notify.WebhookOptions{Timeout: 5 * time.Second})
	for _, u := range []string{
		"http://127.0.0.1" + port + "/",
		"http://10.0.0.1/",
		"http://169.254.169.254/latest/meta-data/",
		"http://[::1]" + port + "/",
		// A name is checked by the address it resolves to.
		"http://localhost" + port + "/",
	} {
		_, err := strict.Send(t.Context(), policy.Destination{Kind: policy.DestWebhook, URL: u, Secret: secret}, o)
		if !errors.Is(err, notify.ErrRefusedDestination) {
			t.Errorf("%s: %v, want refused", u, err)
		}
	}
	if n := len(rec.got()); n != 0 {
		t.Errorf("the loopback receiver got %d requests", n)
	}
	open := notify.NewWebhooks(notify.WebhookOptions{AllowPrivate: true})
	if _, err := open.Send(t.Context(), policy.Destination{Kind: policy.DestWebhook, URL: "http://localhost" + port + "/", Secret: secret}, o); err != nil {
		t.Errorf("with allow_private_destinations: %v", err)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	rec := newRecorder(t)
	redir := httptest.NewServer(http.RedirectHandler(rec.srv.URL, http.StatusFound))
	t.Cleanup(redir.Close)
	w := notify.NewWebhooks(notify.WebhookOptions{AllowPrivate: true})
	status, err := w.Send(t.Context(), policy.Destination{Kind: policy.DestWebhook, URL: redir.URL, Secret: secret},
		policy.OutboxEntry{ID: "1"})
	if err == nil || status != "302" {
		t.Errorf("a redirect: status %q, %v; want not delivered, 302", status, err)
	}
	if n := len(rec.got()); n != 0 {
		t.Errorf("the redirect was followed")
	}
}

// TestDownThenUp: every event arrives once the destination is back, in
// commit order, and each at least once; the id lets the receiver drop
// repeats.
func TestDownThenUp(t *testing.T) {
	rec := newRecorder(t)
	rec.setDown(true)
	s := openBolt(t)
	setup(t, s, rec.srv.URL)
	addRules(t, s, 5)
	run(t, notify.NewDispatcher(s, notify.Options{
		Webhooks:   notify.NewWebhooks(notify.WebhookOptions{AllowPrivate: true}),
		Poll:       5 * time.Millisecond,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
	}))
	waitFor(t, "three failed attempts", func() bool { return rec.failures() >= 3 })
	addRules(t, s, 3) // more while it is down
	all, _ := s.Audit(t.Context(), "10042", policy.AuditQuery{Limit: 100})
	var ids []string // the rules' audit IDs, in commit order
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Action == "rule.add" {
			ids = append(ids, all[i].ID)
		}
	}
	rec.setDown(false)
	waitFor(t, "every event", func() bool { return len(rec.got()) >= len(ids) })
	var got []string
	seen := map[string]bool{}
	for _, b := range rec.got() {
		if !seen[b.ID] {
			seen[b.ID] = true
			got = append(got, b.ID)
		}
	}
	if strings.Join(got, " ") != strings.Join(ids, " ") {
		t.Errorf("received %v, want %v in commit order", got, ids)
	}
	// Every attempt is recorded: the first event's delivery shows the
	// failures before its success.
	st, _ := s.DeliveryStatus(t.Context(), "10042")
	if !st["webhook/w1"].OK {
		t.Errorf("last status %+v", st["webhook/w1"])
	}
}

// TestBackoffAndGiveUp drives the dispatcher with its own clock.
func TestBackoffAndGiveUp(t *testing.T) {
	rec := newRecorder(t)
	rec.setDown(true)
	s := openBolt(t)
	setup(t, s, rec.srv.URL)
	addRules(t, s, 1)
	es, _ := s.OutboxEntries(t.Context(), "10042")
	now := es[0].CreatedAt
	d := notify.NewDispatcher(s, notify.Options{
		Webhooks: notify.NewWebhooks(notify.WebhookOptions{AllowPrivate: true}),
		Now:      func() time.Time { return now },
	})
	attempts := func() []policy.Attempt {
		es, _ := s.OutboxEntries(t.Context(), "10042")
		if len(es) == 0 {
			return nil
		}
		return es[0].Deliveries[0].Attempts
	}
	step := func(by time.Duration) {
		now = now.Add(by)
		if err := d.Once(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	step(0)
	step(500 * time.Millisecond) // not due yet: 1s after the first failure
	if n := len(attempts()); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
	step(500 * time.Millisecond)
	step(time.Second) // the next wait is 2s
	if n := len(attempts()); n != 2 {
		t.Fatalf("%d attempts after 2s, want 2", n)
	}
	step(time.Second)
	if a := attempts(); len(a) != 3 || a[2].Status != "503" {
		t.Fatalf("attempts %+v", a)
	}
	step(25 * time.Hour)
	if a := attempts(); a != nil {
		t.Fatalf("still in the outbox after 24h: %+v", a)
	}
	st, _ := s.DeliveryStatus(t.Context(), "10042")
	if w := st["webhook/w1"]; w.OK || !strings.HasPrefix(w.Status, "gave up") {
		t.Errorf("status after 24h: %+v", w)
	}
}

// TestOneDeliveryPerFleet: two instances on one Redis deliver each event
// once.
func TestOneDeliveryPerFleet(t *testing.T) {
	srv := redistest.Start(t)
	rec := newRecorder(t)
	var stores []policy.Store
	for range 2 {
		s, err := redisstore.Open(t.Context(), srv.URL(), redisstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	setup(t, stores[0], rec.srv.URL)
	for i, s := range stores {
		run(t, notify.NewDispatcher(s, notify.Options{
			Webhooks: notify.NewWebhooks(notify.WebhookOptions{AllowPrivate: true}),
			Holder:   "instance-" + string(rune('a'+i)),
			Poll:     2 * time.Millisecond,
		}))
	}
	const n = 30
	for i := range n {
		addRules(t, stores[i%2], 1)
	}
	waitFor(t, "every event", func() bool { return len(rec.got()) >= n })
	waitFor(t, "the outbox to empty", func() bool {
		a, _ := stores[0].OutboxAccounts(t.Context())
		return len(a) == 0
	})
	count := map[string]int{}
	for _, b := range rec.got() {
		count[b.ID]++
	}
	if len(count) != n {
		t.Errorf("%d distinct events, want %d", len(count), n)
	}
	for id, c := range count {
		if c != 1 {
			t.Errorf("event %s delivered %d times", id, c)
		}
	}
}

// TestTakeoverWhenTheHolderStops: the instance holding the lease stops
// (as if it died); another takes the lease over once it runs out and
// delivers what was written meanwhile.
func TestTakeoverWhenTheHolderStops(t *testing.T) {
	srv := redistest.Start(t)
	rec := newRecorder(t)
	open := func() policy.Store {
		s, err := redisstore.Open(t.Context(), srv.URL(), redisstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	setup(t, a, rec.srv.URL)
	opts := func(holder string) notify.Options {
		return notify.Options{Webhooks: notify.NewWebhooks(notify.WebhookOptions{AllowPrivate: true}),
			Holder: holder, Poll: 5 * time.Millisecond, LeaseTTL: 300 * time.Millisecond}
	}
	ctx, stopA := context.WithCancel(context.Background())
	doneA := make(chan struct{})
	go func() { defer close(doneA); notify.NewDispatcher(a, opts("a")).Run(ctx) }()
	addRules(t, a, 1)
	waitFor(t, "a's delivery", func() bool { return len(rec.got()) == 1 })
	stopA()
	<-doneA
	run(t, notify.NewDispatcher(b, opts("b")))
	addRules(t, a, 1)
	waitFor(t, "b's delivery after a stopped", func() bool { return len(rec.got()) == 2 })
	if ok, err := a.ClaimLease(t.Context(), notify.LeaseName, "a", time.Minute); err != nil || ok {
		t.Errorf("a got the lease back while b holds it: %v %v", ok, err)
	}
}
