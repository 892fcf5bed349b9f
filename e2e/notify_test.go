package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/notify"
	"github.com/gatekeeper-dev/gatekeeper/notify/mailtest"
)

// hookRecorder is a webhook receiver that checks every signature with the
// secret it is given once the webhook exists; while down it answers 503.
type hookRecorder struct {
	t   *testing.T
	srv *httptest.Server

	mu     sync.Mutex
	secret string
	down   bool
	failed int
	bodies []notify.Body
}

func newHookRecorder(t *testing.T) *hookRecorder {
	h := &hookRecorder{t: t}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.down {
			h.failed++
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if err := notify.Verify(h.secret, r.Header.Get(notify.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			h.t.Errorf("webhook signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var b notify.Body
		if err := json.Unmarshal(body, &b); err != nil {
			h.t.Errorf("webhook body %s: %v", body, err)
		}
		h.bodies = append(h.bodies, b)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookRecorder) set(f func(h *hookRecorder)) {
	h.mu.Lock()
	f(h)
	h.mu.Unlock()
}

// of returns the bodies of event type typ received so far.
func (h *hookRecorder) of(typ string) []notify.Body {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []notify.Body
	for _, b := range h.bodies {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

// notifyInstance runs an instance whose notifications go to a mail server
// of the test (STARTTLS with a certificate the process trusts through
// SSL_CERT_FILE) and may reach the test's loopback webhook receiver.
func notifyInstance(t *testing.T, mail *mailtest.Server) *instance {
	t.Helper()
	dir := prepareDir(t)
	ca := filepath.Join(dir, "mail-ca.pem")
	if err := os.WriteFile(ca, mail.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSL_CERT_FILE", ca)
	in := &instance{db: freeAddr(t), admin: freeAddr(t)}
	extra := `notify:
  allow_private_destinations: true
  page_url: "https://gate.example.com:8443"
  smtp: {addr: "` + mail.Addr + `", from: "gatekeeper@example.com"}
`
	in.gatekeeper = startGatekeeper(t, dir, fleetConfig("file:./data/gatekeeper.db", in.db, in.admin, echoServer(t), extra))
	return in
}

// setDestinations gives acct the recorder's webhook and owner@example.com,
// and hands the webhook's secret, shown once, to the recorder.
func setDestinations(t *testing.T, m *adminClient, acct string, h *hookRecorder) {
	t.Helper()
	code, b, _ := m.call("PUT", "/api/v1/accounts/"+acct+"/notifications", map[string]any{
		"webhooks": []any{map[string]any{"url": h.srv.URL + "/gatekeeper"}},
		"emails":   []any{map[string]any{"address": "owner@example.com"}},
	})
	var v struct {
		Webhooks []struct{ Secret string }
	}
	if code != http.StatusOK || json.Unmarshal(b, &v) != nil || len(v.Webhooks) != 1 || v.Webhooks[0].Secret == "" {
		t.Fatalf("set notifications: %d %s", code, b)
	}
	h.set(func(h *hookRecorder) { h.secret = v.Webhooks[0].Secret })
}

// lastDelivered reports whether every destination's last delivery is of
// event and succeeded.
func lastDelivered(m *adminClient, acct, event string) bool {
	code, b, _ := m.call("GET", "/api/v1/accounts/"+acct+"/notifications", nil)
	var v struct {
		Webhooks []struct {
			Last *struct {
				OK    bool
				Event string
			} `json:"last_delivery"`
		}
		Emails []struct {
			Last *struct {
				OK    bool
				Event string
			} `json:"last_delivery"`
		}
	}
	if code != http.StatusOK || json.Unmarshal(b, &v) != nil {
		return false
	}
	for _, w := range v.Webhooks {
		if w.Last == nil || !w.Last.OK || w.Last.Event != event {
			return false
		}
	}
	for _, e := range v.Emails {
		if e.Last == nil || !e.Last.OK || e.Last.Event != event {
			return false
		}
	}
	return len(v.Webhooks)+len(v.Emails) > 0
}

// TestFirewallOffNotifies: turning the firewall off sends one signed
// firewall.mode_changed webhook and one email, over STARTTLS.
func TestFirewallOffNotifies(t *testing.T) {
	mail := mailtest.Start(t, true)
	hook := newHookRecorder(t)
	in := notifyInstance(t, mail)
	m := createAccount(t, in.admin, "acct", "acct-master-password-1")
	setDestinations(t, m, "acct", hook)
	changed := time.Now()
	if code, b, _ := m.call("PUT", "/api/v1/accounts/acct/firewall/mode", map[string]any{"mode": "off", "confirm": true}); code != http.StatusOK {
		t.Fatalf("firewall off: %d %s", code, b)
	}
	// How long after the change each arrives, for docs/reliability.md
	// (the goal is 2 s); logged, not asserted, as a loaded machine
	// may take longer.
	var hookAt, mailAt time.Duration
	waitFor(t, 60*time.Second, "the webhook and the email of firewall.mode_changed", func() bool {
		if hookAt == 0 && len(hook.of("firewall.mode_changed")) > 0 {
			hookAt = time.Since(changed)
		}
		if mailAt == 0 && slices.ContainsFunc(mail.Messages(), func(msg mailtest.Message) bool {
			return strings.Contains(msg.Data, "Subject: gatekeeper: firewall.mode_changed")
		}) {
			mailAt = time.Since(changed)
		}
		return hookAt > 0 && mailAt > 0 && lastDelivered(m, "acct", "firewall.mode_changed")
	})
	t.Logf("firewall.mode_changed reached the webhook %v and the mail server %v after the change", hookAt.Round(time.Millisecond), mailAt.Round(time.Millisecond))
	hooks := hook.of("firewall.mode_changed")
	if len(hooks) != 1 || hooks[0].ID == "" || hooks[0].Account != "acct" || string(hooks[0].After) != `{"mode":"off"}` {
		t.Errorf("firewall.mode_changed webhooks: %+v", hooks)
	}
	var mails []mailtest.Message
	for _, msg := range mail.Messages() {
		if strings.Contains(msg.Data, "Subject: gatekeeper: firewall.mode_changed on account acct") {
			mails = append(mails, msg)
		}
	}
	if len(mails) != 1 || !mails[0].TLS || !strings.Contains(mails[0].Data, "https://gate.example.com:8443/accounts/acct/firewall") {
		t.Fatalf("firewall.mode_changed emails: %+v", mails)
	}
	if strings.Contains(mails[0].Data, hook.secret) {
		t.Error("the email holds the webhook secret")
	}
}

// TestNotificationSurvivesSIGKILL: a gatekeeper killed after the change
// was written and before it was delivered delivers it after the restart.
func TestNotificationSurvivesSIGKILL(t *testing.T) {
	mail := mailtest.Start(t, true)
	hook := newHookRecorder(t)
	in := notifyInstance(t, mail)
	m := createAccount(t, in.admin, "acct", "acct-master-password-1")
	setDestinations(t, m, "acct", hook)
	hook.set(func(h *hookRecorder) { h.down = true })
	if code, b, _ := m.call("POST", "/api/v1/accounts/acct/firewall/rules", map[string]any{"cidr": "198.51.100.0/24"}); code != http.StatusCreated {
		t.Fatalf("add rule: %d %s", code, b)
	}
	waitFor(t, 60*time.Second, "a failed delivery", func() bool {
		var n int
		hook.set(func(h *hookRecorder) { n = h.failed })
		return n > 0
	})
	if err := in.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-in.exited
	if n := len(hook.of("rule.added")); n != 0 {
		t.Fatalf("delivered before the kill: %d", n)
	}
	hook.set(func(h *hookRecorder) { h.down = false })
	in.spawn()
	in.waitReady()
	waitFor(t, 90*time.Second, "rule.added after the restart", func() bool { return len(hook.of("rule.added")) > 0 })
}
