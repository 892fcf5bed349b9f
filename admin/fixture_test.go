package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatekeeper-dev/gatekeeper/notify"
	"github.com/gatekeeper-dev/gatekeeper/notify/mailtest"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// cheap makes argon2id fast enough for tests; production uses
// password.Default.
var cheap = password.Params{Memory: 64, Time: 1, Threads: 1, KeyLen: 32}

// The accounts every fixture has: a parent (an enterprise), its child A,
// and an unrelated account B.
const (
	acctParent = "10000"
	acctA      = "10042"
	acctB      = "10043"
)

// Passwords of the fixture's identities.
const (
	pwParent = "parent-master-pw-1"
	pwA      = "a-master-password-1"
	pwB      = "b-master-password-1"
	pwAlice  = "alice-password-123"
	pwBob    = "bob-password-1234"
	pwCarol  = "carol-password-123"
	opToken  = "operator-token-0123456789abcdef"
)

// fixture is a real admin server over HTTPS on a temporary bolt store.
type fixture struct {
	t     *testing.T
	bolt  *boltstore.Store
	store *flakyStore
	svc   *Service
	srv   *Server
	ts    *httptest.Server
	logs  *syncBuffer
	reg   *prometheus.Registry
	mail  *mailtest.Server // with fixtureOptions.mail
	live  atomic.Int64     // what the LiveConnections hook answers
	// liveCloses records what the hook was asked.
	liveMu     sync.Mutex
	liveCloses []func(netip.Addr) bool
}

type fixtureOptions struct {
	limits         LoginLimits
	trustedProxies []netip.Prefix
	params         password.Params
	maxBody        int64
	requestTimeout time.Duration
	storeTimeout   time.Duration
	// now is the service's clock; if nil, time.Now.
	now func() time.Time
	// mail sends the service's mail to a real SMTP server on loopback
	// (fixture.mail).
	mail bool
}

// testSecretsKey seals second-factor secrets in tests.
var testSecretsKey = []byte("0123456789abcdef0123456789abcdef")

// testPublicURL is the admin pages' address in tests: the passkeys'
// relying party.
const testPublicURL = "https://gate.test:8443"

// testWebApps: app.test is a login route of account A, b-app.test of B.
func testWebApps(host string) (string, bool) {
	switch host {
	case "app.test":
		return acctA, true
	case "b-app.test":
		return acctB, true
	}
	return "", false
}

func newFixture(t *testing.T, fo fixtureOptions) *fixture {
	t.Helper()
	bs, err := boltstore.Open(filepath.Join(t.TempDir(), "gk.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	f := &fixture{t: t, bolt: bs, store: &flakyStore{Store: bs}, logs: &syncBuffer{}, reg: prometheus.NewRegistry()}
	enc := zap.NewProductionEncoderConfig()
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(f.logs), zapcore.DebugLevel))
	if fo.params == (password.Params{}) {
		fo.params = cheap
	}
	if fo.limits == (LoginLimits{}) {
		// Generous, so that tests which are not about limits never hit them.
		fo.limits = LoginLimits{PerIP: Limit{Burst: 1000}, PerLogin: Limit{Burst: 1000}}
	}
	var mailer Mailer
	if fo.mail {
		f.mail = mailtest.Start(t, true)
		mailer = notify.NewMail(notify.MailOptions{Addr: f.mail.Addr, From: "gatekeeper@example.com",
			TLS: &tls.Config{RootCAs: f.mail.Roots, ServerName: "127.0.0.1"}, PageURL: "https://gate.example.com:8443"})
	}
	f.svc, err = New(Options{Store: f.store, Logger: log, Registerer: f.reg, PasswordParams: fo.params,
		LoginLimits: fo.limits, StoreTimeout: fo.storeTimeout, SecretsKey: testSecretsKey, Now: fo.now, Mailer: mailer,
		PublicURL: testPublicURL, WebApps: testWebApps,
		LiveConnections: func(account string, closes func(netip.Addr) bool) int {
			f.liveMu.Lock()
			defer f.liveMu.Unlock()
			f.liveCloses = append(f.liveCloses, closes)
			return int(f.live.Load())
		}})
	if err != nil {
		t.Fatal(err)
	}
	f.srv, err = NewServer(ServerOptions{Service: f.svc, OperatorToken: opToken, Logger: log, Registerer: f.reg,
		TrustedProxies: fo.trustedProxies, MaxBodyBytes: fo.maxBody, RequestTimeout: fo.requestTimeout})
	if err != nil {
		t.Fatal(err)
	}
	f.ts = httptest.NewTLSServer(f.srv.Handler())
	t.Cleanup(f.ts.Close)
	t.Cleanup(f.svc.WaitMail)

	ctx := context.Background()
	for _, a := range []NewAccount{
		{ID: acctParent, Name: "Smith Group", Password: pwParent},
		{ID: acctA, Name: "Smith Studio", Parent: acctParent, Password: pwA},
		{ID: acctB, Name: "Jones Shop", Password: pwB},
	} {
		a.Actor, a.Role = "test", policy.RoleOperator
		if _, err := CreateAccount(ctx, bs, a, fo.params, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	users := []struct {
		name, pw    string
		desk, reset bool
	}{
		{"alice", pwAlice, true, false},
		{"bob", pwBob, false, false},
		{"carol", pwCarol, true, true},
	}
	err = bs.Update(ctx, acctA, func(tx policy.Tx) error {
		for _, u := range users {
			h, err := password.Hash(u.pw, fo.params)
			if err != nil {
				return err
			}
			err = tx.PutUser(policy.User{Username: u.name, Active: true, DesktopAccess: u.desk,
				MustResetPassword: u.reset, PasswordHash: h, CreatedAt: time.Now()})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// resp is a decoded answer.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) errCode() string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	json.Unmarshal(r.body, &e)
	return e.Error.Code
}

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// req makes one call. body is marshalled to JSON unless it is a string or
// []byte, which are sent as they are; headers are "Key: value" pairs.
func (f *fixture) req(method, path, token string, body any, headers ...string) resp {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	r, err := http.NewRequest(method, f.ts.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if rd != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		r.Header.Set(k, v)
	}
	res, err := f.ts.Client().Do(r)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// login logs in through the API and returns the token.
func (f *fixture) login(account, username, pw string) string {
	f.t.Helper()
	r := f.req("POST", "/api/v1/login", "", LoginRequest{Account: account, Username: username, Password: pw})
	if r.status != http.StatusOK {
		f.t.Fatalf("login %s/%s: %d %s", account, username, r.status, r.body)
	}
	var res LoginResult
	r.decode(f.t, &res)
	return res.Token
}

// auditCount counts an account's audit entries.
func (f *fixture) auditCount(account string) int {
	f.t.Helper()
	es, err := f.bolt.Audit(context.Background(), account, policy.AuditQuery{Limit: 1000})
	if err != nil {
		f.t.Fatal(err)
	}
	return len(es)
}

// lastAudit returns an account's newest audit entry.
func (f *fixture) lastAudit(account string) policy.AuditEntry {
	f.t.Helper()
	es, err := f.bolt.Audit(context.Background(), account, policy.AuditQuery{Limit: 1})
	if err != nil || len(es) == 0 {
		f.t.Fatalf("audit of %s: %v (%d entries)", account, err, len(es))
	}
	return es[0]
}

// state is everything of an account the API can change, for comparing
// before and after a call that must change nothing.
func (f *fixture) state(account string) string {
	f.t.Helper()
	ctx := context.Background()
	acct, err := f.bolt.Account(ctx, account)
	if err != nil {
		f.t.Fatal(err)
	}
	var users []policy.User
	var rules []policy.Rule
	err = f.bolt.View(ctx, account, func(tx policy.Tx) error {
		users, _ = tx.Users()
		rules, _ = tx.Rules()
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	b, _ := json.Marshal(struct {
		A policy.Account
		U []policy.User
		R []policy.Rule
	}{acct, users, rules})
	return string(b)
}

// rules returns an account's rules.
func (f *fixture) rules(account string) []policy.Rule {
	f.t.Helper()
	var rules []policy.Rule
	f.bolt.View(context.Background(), account, func(tx policy.Tx) error {
		rules, _ = tx.Rules()
		return nil
	})
	return rules
}

// user returns one user of an account.
func (f *fixture) user(account, name string) policy.User {
	f.t.Helper()
	var u policy.User
	err := f.bolt.View(context.Background(), account, func(tx policy.Tx) error {
		var err error
		u, err = tx.User(name)
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return u
}

// putRule adds a rule directly to the store.
func (f *fixture) putRule(account string, r policy.Rule) policy.Rule {
	f.t.Helper()
	err := f.bolt.Update(context.Background(), account, func(tx policy.Tx) error {
		var err error
		r, err = tx.PutRule(r)
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// flakyStore can refuse every commit, as a store that went down would,
// while reads keep working; or hang, reads and writes alike.
type flakyStore struct {
	policy.Store
	failWrites atomic.Bool
	// hang makes Update and View wait for their context to end, like a
	// store that stopped answering.
	hang atomic.Bool
}

var errInjected = errors.New("injected commit failure")

func (s *flakyStore) Update(ctx context.Context, account string, fn func(policy.Tx) error) error {
	if s.hang.Load() {
		<-ctx.Done()
		return fmt.Errorf("update %s: %w", account, ctx.Err())
	}
	if !s.failWrites.Load() {
		return s.Store.Update(ctx, account, fn)
	}
	err := s.Store.Update(ctx, account, func(tx policy.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errInjected
	})
	if errors.Is(err, errInjected) {
		return fmt.Errorf("commit: %w", policy.ErrUnavailable)
	}
	return err
}

func (s *flakyStore) View(ctx context.Context, account string, fn func(policy.Tx) error) error {
	if s.hang.Load() {
		<-ctx.Done()
		return fmt.Errorf("view %s: %w", account, ctx.Err())
	}
	return s.Store.View(ctx, account, fn)
}

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// CreateAccount refuses like Update when writes fail.
func (s *flakyStore) CreateAccount(ctx context.Context, a policy.Account, e policy.AuditEntry) error {
	if s.failWrites.Load() {
		return fmt.Errorf("create account: %w", policy.ErrUnavailable)
	}
	return s.Store.CreateAccount(ctx, a, e)
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
