package policy

import (
	"errors"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Web application access: who may sign in to the web applications behind
// an http listener's login routes, and the state that ends their web
// sessions. A web session names its person and the web epoch it was
// opened at; it is good while the gate's table lists the person with that
// epoch. Raising the epoch (a logout) or taking the person off the list
// (web access off, deactivated, offboarded, a password reset required)
// ends every web session of theirs on every instance, through the change
// feed, with no store read per request.

// WebState is one person's web sign-in state, kept on the user (and for
// the master on the account).
type WebState struct {
	// Epoch is raised to end every web session of the person: a session
	// opened at another epoch is refused.
	Epoch uint64 `json:"epoch,omitempty"`
	// Handoffs are the single-use hand-off tokens issued at sign-in and
	// not yet taken by the application's host, stored hashed.
	Handoffs []WebHandoff `json:"handoffs,omitempty"`
}

// IsZero reports whether w holds nothing, for omitzero.
func (w WebState) IsZero() bool { return w.Epoch == 0 && len(w.Handoffs) == 0 }

// WebHandoff is a hand-off token: it carries a sign-in from the admin
// listener to one application host, once, within a minute.
type WebHandoff struct {
	// Hash is the SHA-256 of the token, hex.
	Hash string `json:"hash"`
	// Host is the application host (and port) it may be taken on.
	Host string `json:"host"`
	// Return is the path on Host the person asked for.
	Return    string    `json:"return"`
	ExpiresAt time.Time `json:"expires_at"`
}

// WebHandoffTTL bounds a hand-off token's life.
const WebHandoffTTL = 60 * time.Second

// MayUseWeb reports whether u may sign in to web applications: an active
// user with web access who need not reset their password. This is the one
// place that decides it; masters always may.
func (u User) MayUseWeb() bool { return u.Active && u.WebAccess && !u.MustResetPassword }

// NextWebEpoch returns the web epoch a person's record must carry when
// it goes from before to after: never lower than before's, and raised
// when the person loses web access, so that a session opened before is
// not good again when access comes back.
func NextWebEpoch(before, after User) uint64 {
	e := max(before.Web.Epoch, after.Web.Epoch)
	if before.MayUseWeb() && !after.MayUseWeb() && e == before.Web.Epoch {
		e++
	}
	return e
}

// WebIdentity is whom a hand-off token signs in to a web application.
type WebIdentity struct {
	Username string // "" for the master
	Epoch    uint64
	// Return is the path on the application's host they asked for.
	Return string
}

// WebUser is a person who may sign in to web applications, as the gate
// sees them.
type WebUser struct {
	Username string
	Epoch    uint64
}

// WebUsers returns the users of users who may sign in to web applications,
// with their epochs, sorted by username.
func WebUsers(users []User) []WebUser {
	var out []WebUser
	for _, u := range users {
		if u.MayUseWeb() {
			out = append(out, WebUser{Username: u.Username, Epoch: u.Web.Epoch})
		}
	}
	slices.SortFunc(out, func(a, b WebUser) int { return strings.Compare(a.Username, b.Username) })
	return out
}

// webTable is an account's web sign-in state in the gate's table.
type webTable struct {
	master uint64
	users  map[string]uint64
}

// compileWeb returns the web table of p, nil when p does not say who may
// sign in (a policy read from a snapshot): then nobody may, until the
// store is read again.
func compileWeb(p AccountPolicy) *webTable {
	if !p.WebKnown {
		return nil
	}
	wt := &webTable{master: p.Account.MasterWeb.Epoch}
	if len(p.Web) > 0 { // most accounts of a fleet have none: no map
		wt.users = make(map[string]uint64, len(p.Web))
	}
	for _, u := range p.Web {
		wt.users[u.Username] = u.Epoch
	}
	return wt
}

func (wt *webTable) equal(o *webTable) bool {
	if wt == nil || o == nil {
		return wt == o
	}
	return wt.master == o.master && maps.Equal(wt.users, o.users)
}

// withWeb returns at with web as its web table: at itself if it has an
// equal one, else a new table sharing at's matcher and devices.
func (at *accountTable) withWeb(web *webTable) *accountTable {
	if at.web().equal(web) {
		return at
	}
	return &accountTable{prefixes: at.prefixes, nextExpiry: at.nextExpiry, mode: at.mode, gates: gatesOf(at.dev(), web)}
}

// WebEpoch returns the web epoch of a person of account who may sign in
// to web applications (username "" for the master); ok is false for
// anyone else, and for every person of an account whose web state is not
// known.
func (t *Table) WebEpoch(account, username string) (epoch uint64, ok bool) {
	if t == nil {
		return 0, false
	}
	at := t.account(account)
	if at == nil {
		return 0, false
	}
	web := at.web()
	if web == nil {
		return 0, false
	}
	if username == "" {
		return web.master, true
	}
	epoch, ok = web.users[username]
	return epoch, ok
}

// PrepareUserPut is what a store does to a user it is about to write
// over before (found false for a new user): it sets after's web epoch
// (NextWebEpoch), and reports whether the gate's view of the person's web
// access changed, which makes the write a policy change on the feed.
func PrepareUserPut(before User, found bool, after *User) (gateChanged bool) {
	if !found {
		return after.MayUseWeb()
	}
	after.Web.Epoch = NextWebEpoch(before, *after)
	return before.MayUseWeb() != after.MayUseWeb() || before.Web.Epoch != after.Web.Epoch
}

// PrepareAccountPut keeps the master's web epoch from going down when a
// store writes after over before, and reports whether it changed.
func PrepareAccountPut(before Account, after *Account) (webChanged bool) {
	after.MasterWeb.Epoch = max(before.MasterWeb.Epoch, after.MasterWeb.Epoch)
	return after.MasterWeb.Epoch != before.MasterWeb.Epoch
}

// MaxReturnPath bounds a return path.
const MaxReturnPath = 2048

// ErrBadReturn is what ValidReturnPath refuses with.
var ErrBadReturn = errors.New("the return address must be a path on the application's own host")

// ValidReturnPath checks the address a browser is sent back to after it
// signs in to a web application: a path (with an optional query) on the
// application's own host, never anywhere else. This is the one place that
// decides it, for the admin listener and the gate alike. It refuses
// anything that is not "/" and printable ASCII, a scheme or a host
// ("//evil.example", "/\evil"), backslashes, control characters, and
// percent-encoded slashes, backslashes and control characters, which a
// later decoding could turn into one of those; and paths under
// /.gatekeeper/, the gate's own.
func ValidReturnPath(s string) error {
	if len(s) == 0 || len(s) > MaxReturnPath || s[0] != '/' {
		return ErrBadReturn
	}
	if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return ErrBadReturn
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b <= ' ' || b >= 0x7f || b == '\\':
			return ErrBadReturn
		case b == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return ErrBadReturn
			}
			v := unhex(s[i+1])<<4 | unhex(s[i+2])
			if v < ' ' || v == 0x7f || v == '/' || v == '\\' || v == '%' {
				return ErrBadReturn
			}
		}
	}
	if strings.HasPrefix(s, "/.gatekeeper/") || s == "/.gatekeeper" {
		return ErrBadReturn
	}
	u, err := url.ParseRequestURI(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") ||
		strings.HasPrefix(u.Path, "//") {
		return ErrBadReturn
	}
	return nil
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

func unhex(b byte) byte {
	switch {
	case '0' <= b && b <= '9':
		return b - '0'
	case 'a' <= b && b <= 'f':
		return b - 'a' + 10
	}
	return b - 'A' + 10
}
