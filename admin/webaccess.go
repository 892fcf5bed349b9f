package admin

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Web application access, the admin listener's side: after a person signs
// in here, IssueWebHandoff gives their browser a single-use hand-off token
// for the application's host; the gate there takes it (WebGate) and opens
// the web session. The token is "BASE64URL(username).random" (an empty
// username for the master), stored as its SHA-256 on the person's record
// (policy.WebState), so that taking it is one store transaction and works
// once across a fleet.

// maxHandoffs bounds the tokens a person has waiting; the oldest goes.
const maxHandoffs = 8

// CallbackPath is where the application's host takes a hand-off token.
const CallbackPath = "/.gatekeeper/callback"

// errNoWebAccess refuses a person without web access.
var errNoWebAccess = &Error{Status: http.StatusForbidden, Code: CodeNoWebAccess,
	Msg: "your login does not have access to web applications; ask the account holder"}

// errBadReturn refuses a return address or application host.
var errBadReturn = &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest,
	Msg: "this sign-in link does not lead to an application of your account"}

// WebApps says which account's login route serves a host name (lowercase,
// without a port); the configuration's routes with access login.
type WebApps func(host string) (account string, ok bool)

// WebKey derives the key that MACs the gate's web session cookies from the
// secrets key: the same on every instance of a fleet, and never the
// secrets key itself.
func WebKey(secretsKey []byte) []byte {
	m := hmac.New(sha256.New, secretsKey)
	m.Write([]byte("gatekeeper web session key v1"))
	return m.Sum(nil)
}

// newHandoffToken returns a hand-off token for username and its hash.
func newHandoffToken(username string) (token, hash string) {
	var b [32]byte
	rand.Read(b[:])
	token = base64.RawURLEncoding.EncodeToString([]byte(username)) + "." + base64.RawURLEncoding.EncodeToString(b[:])
	return token, hashToken(token)
}

// parseHandoffToken returns the username a hand-off token names.
func parseHandoffToken(token string) (username string, ok bool) {
	u, secret, found := strings.Cut(token, ".")
	if !found || len(secret) != 43 || len(token) > 256 {
		return "", false
	}
	if _, err := base64.RawURLEncoding.DecodeString(secret); err != nil {
		return "", false
	}
	name, err := base64.RawURLEncoding.DecodeString(u)
	if err != nil {
		return "", false
	}
	return string(name), true
}

// appHost checks the application host a browser asks to sign in to (as
// it sent it, maybe with a port) against the login routes: it returns the
// account the host's route serves.
func appHost(apps WebApps, host string) (account string, err error) {
	if apps == nil || host == "" || len(host) > 300 {
		return "", errBadReturn
	}
	name := host
	if h, port, err := net.SplitHostPort(host); err == nil {
		if port == "" || strings.TrimLeft(port, "0123456789") != "" {
			return "", errBadReturn
		}
		name = h
	}
	acct, ok := apps(strings.ToLower(name))
	if !ok {
		return "", errBadReturn
	}
	return acct, nil
}

// IssueWebHandoff gives a signed-in person a hand-off token for the
// application at host (as the browser named it), to come back to path
// to; it returns the address to send the browser to. The host must be
// one of the login routes of the person's own account, and the person a
// master or a user with web access.
func (s *Service) IssueWebHandoff(ctx context.Context, a Actor, host, to string) (string, error) {
	if !a.hasSession() || (a.Role != policy.RoleMaster && a.Role != policy.RoleUser) {
		return "", errForbidden
	}
	if a.MustResetPassword {
		return "", errResetRequired
	}
	if err := policy.ValidReturnPath(to); err != nil {
		return "", errBadReturn
	}
	host = strings.ToLower(host) // as a browser sends it back
	acct, err := appHost(s.webApps, host)
	if err != nil || acct != a.Account {
		return "", errBadReturn
	}
	token, hash := newHandoffToken(a.Username)
	if a.Role == policy.RoleMaster {
		token, hash = newHandoffToken("")
	}
	now := s.now().UTC()
	h := policy.WebHandoff{Hash: hash, Host: host, Return: to, ExpiresAt: now.Add(policy.WebHandoffTTL)}
	err = s.store.Update(ctx, a.Account, func(tx policy.Tx) error {
		if a.Role == policy.RoleMaster {
			acc, err := tx.Account()
			if err != nil {
				return err
			}
			acc.MasterWeb.Handoffs = addHandoff(acc.MasterWeb.Handoffs, h, now)
			return tx.PutAccount(acc)
		}
		u, err := tx.User(a.Username)
		if err != nil {
			return err
		}
		if !u.MayUseWeb() {
			return errNoWebAccess
		}
		u.Web.Handoffs = addHandoff(u.Web.Handoffs, h, now)
		return tx.PutUser(u)
	})
	if err != nil {
		return "", err
	}
	return "https://" + host + CallbackPath + "?" + url.Values{"token": {token}}.Encode(), nil
}

// addHandoff adds h to hs, dropping expired tokens and the oldest beyond
// maxHandoffs.
func addHandoff(hs []policy.WebHandoff, h policy.WebHandoff, now time.Time) []policy.WebHandoff {
	hs = slices.DeleteFunc(slices.Clone(hs), func(o policy.WebHandoff) bool { return !now.Before(o.ExpiresAt) })
	hs = append(hs, h)
	if len(hs) > maxHandoffs {
		hs = hs[len(hs)-maxHandoffs:]
	}
	return hs
}

// takeHandoff removes the token whose hash is hash from hs, compared in
// constant time, and returns it.
func takeHandoff(hs []policy.WebHandoff, hash string) ([]policy.WebHandoff, policy.WebHandoff, bool) {
	found := -1
	for i, h := range hs {
		if subtle.ConstantTimeCompare([]byte(h.Hash), []byte(hash)) == 1 {
			found = i
		}
	}
	if found < 0 {
		return hs, policy.WebHandoff{}, false
	}
	h := hs[found]
	return slices.Delete(slices.Clone(hs), found, found+1), h, true
}

// WebGate is what the gate of login routes calls on the admin side: it
// takes hand-off tokens, ends web sessions at a logout on the application
// and audits refusals. It implements proxy.WebSignIn.
type WebGate struct {
	store bounded
	log   *zap.Logger
	now   func() time.Time
}

// NewWebGate returns the gate's side on st; storeTimeout bounds each
// store call (zero: 2s).
func NewWebGate(st Store, storeTimeout time.Duration, log *zap.Logger) *WebGate {
	if storeTimeout <= 0 {
		storeTimeout = 2 * time.Second
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &WebGate{store: bounded{st: st, d: storeTimeout}, log: log, now: time.Now}
}

// errHandoff is every refusal of a hand-off token: one answer whatever
// was wrong.
var errHandoff = errors.New("hand-off token unknown, used, expired or for another host")

// webActor is how the audit trail names a person of the gate.
func webActor(account, username string, client netip.Addr) Actor {
	a := Actor{Role: policy.RoleUser, Account: account, Username: username, ClientIP: client}
	if username == "" {
		a.Role = policy.RoleMaster
	}
	return a
}

// TakeHandoff consumes a hand-off token for account's application at
// host: once across the fleet, within its life, for a person who may
// still use web applications. A token that names the right person but is
// expired or for another host is used up all the same.
func (g *WebGate) TakeHandoff(ctx context.Context, account, host, token string, client netip.Addr) (policy.WebIdentity, error) {
	username, ok := parseHandoffToken(token)
	if !ok || !policy.ValidAccountID(account) {
		return policy.WebIdentity{}, errHandoff
	}
	hash := hashToken(token)
	var id policy.WebIdentity
	var refused error
	err := g.store.Update(ctx, account, func(tx policy.Tx) error {
		id, refused = policy.WebIdentity{Username: username}, nil
		now := g.now().UTC()
		var st *policy.WebState
		var put func() error
		var acc policy.Account
		var u policy.User
		var allowed bool
		if username == "" {
			var err error
			if acc, err = tx.Account(); err != nil {
				return err
			}
			st, put, allowed = &acc.MasterWeb, func() error { return tx.PutAccount(acc) }, true
		} else {
			var err error
			if u, err = tx.User(username); errors.Is(err, policy.ErrNotFound) {
				return errHandoff
			} else if err != nil {
				return err
			}
			st, put, allowed = &u.Web, func() error { return tx.PutUser(u) }, u.MayUseWeb()
		}
		rest, h, ok := takeHandoff(st.Handoffs, hash)
		if !ok {
			return errHandoff
		}
		st.Handoffs = rest
		switch {
		case !now.Before(h.ExpiresAt) || subtle.ConstantTimeCompare([]byte(h.Host), []byte(host)) != 1:
			refused = errHandoff
		case !allowed:
			refused = errNoWebAccess
		}
		id.Epoch, id.Return = st.Epoch, h.Return
		if err := put(); err != nil {
			return err
		}
		a := webActor(account, username, client)
		if refused != nil {
			return tx.Audit(auditEntry(a, account, "web.sign_in_refused", "web/"+host, now, map[string]string{"reason": refused.Error()}))
		}
		return tx.Audit(auditEntry(a, account, "web.sign_in", "web/"+host, now, nil))
	})
	if err != nil {
		return policy.WebIdentity{}, err
	}
	if refused != nil {
		return policy.WebIdentity{}, refused
	}
	return id, nil
}

// EndWebSessions ends every web session of a person of account (username
// "" for the master) and their admin sessions: a logout at an
// application.
func (g *WebGate) EndWebSessions(ctx context.Context, account, username string, client netip.Addr) error {
	return g.store.Update(ctx, account, func(tx policy.Tx) error {
		if err := endWebSessions(tx, username); err != nil {
			return err
		}
		if _, err := tx.DeleteSessions(username); err != nil {
			return err
		}
		return tx.Audit(auditEntry(webActor(account, username, client), account, "web.logout", "", g.now().UTC(), nil))
	})
}

// endWebSessions raises a person's web epoch, which ends every web
// session of theirs on every instance once the change reaches it.
func endWebSessions(tx policy.Tx, username string) error {
	if username == "" {
		acc, err := tx.Account()
		if err != nil {
			return err
		}
		acc.MasterWeb.Epoch++
		return tx.PutAccount(acc)
	}
	u, err := tx.User(username)
	if err != nil {
		return err
	}
	u.Web.Epoch++
	return tx.PutUser(u)
}

// Refused notes a refused web request in account's audit trail (the gate
// rate-limits the calls).
func (g *WebGate) Refused(ctx context.Context, account, route, reason string, client netip.Addr) {
	err := g.store.Update(ctx, account, func(tx policy.Tx) error {
		a := Actor{Role: "anonymous", ClientIP: client}
		return tx.Audit(auditEntry(a, account, "web.refused", "web/"+route, g.now().UTC(), map[string]string{"reason": reason}))
	})
	if err != nil {
		g.log.Warn("could not audit a refused web request", zap.String("account", account), zap.Error(err))
	}
}

// auditEntry is an audit entry of the gate's, which has no Service.
func auditEntry(a Actor, account, action, target string, now time.Time, after any) policy.AuditEntry {
	e := policy.AuditEntry{Time: now, Account: account, Actor: a.name(account), Role: a.Role, Action: action,
		Target: target, After: rawJSON(after)}
	if a.ClientIP.IsValid() {
		e.ClientIP = a.ClientIP.String()
	}
	return e
}
