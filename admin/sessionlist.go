package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// SessionView is a session as its owner and their master see it: never
// its token or the token's hash.
type SessionView struct {
	// ID names the session in DELETE calls; it is derived from the token
	// hash and leads back to nothing.
	ID         string    `json:"id"`
	Username   string    `json:"username,omitempty"`
	Role       string    `json:"role"`
	ClientIP   string    `json:"client_ip,omitempty"`
	UserAgent  string    `json:"user_agent,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	ExpiresAt  time.Time `json:"expires_at"`
	// Current marks the session the call was made with.
	Current bool `json:"current"`
}

// sessionID is the public name of a session.
func sessionID(tokenHash string) string {
	sum := sha256.Sum256([]byte("session-id:" + tokenHash))
	return hex.EncodeToString(sum[:8])
}

func sessionView(ses policy.Session, current string) SessionView {
	return SessionView{ID: sessionID(ses.TokenHash), Username: ses.Username, Role: ses.Role, ClientIP: ses.ClientIP,
		UserAgent: ses.UserAgent, CreatedAt: ses.CreatedAt, LastUsedAt: ses.LastUsedAt, ExpiresAt: ses.ExpiresAt,
		Current: ses.TokenHash == current}
}

// maxUserAgent bounds the device description a session keeps.
const maxUserAgent = 160

// trimUserAgent keeps a User-Agent fit to show: printable, one line, at
// most maxUserAgent bytes.
func trimUserAgent(ua string) string {
	ua = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, strings.ToValidUTF8(ua, ""))
	ua = strings.TrimSpace(ua)
	for len(ua) > maxUserAgent {
		_, size := lastRune(ua)
		ua = ua[:len(ua)-size]
	}
	return ua
}

func lastRune(s string) (rune, int) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] < 0x80 || s[i] >= 0xC0 {
			return rune(s[i]), len(s) - i
		}
	}
	return 0, 1
}

// touchEvery is how stale a session's last use may get before a call
// records it again: a write a minute per session at most.
const touchEvery = time.Minute

// touch records that ses made a call now. A session ended meanwhile is
// not revived: it is only written back if the person still has it. A
// failure is not the caller's: it is logged and the call goes on.
func (s *Service) touch(ctx context.Context, ses policy.Session) {
	now := s.now().UTC()
	if now.Sub(ses.LastUsedAt) < touchEvery {
		return
	}
	err := s.store.Update(ctx, ses.Account, func(tx policy.Tx) error {
		all, err := tx.Sessions(ses.Username)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(all, func(x policy.Session) bool { return x.TokenHash == ses.TokenHash })
		if i < 0 {
			return errNoChange
		}
		all[i].LastUsedAt = now.Truncate(time.Second)
		return tx.PutSession(all[i])
	})
	if err != nil && !errors.Is(err, errNoChange) {
		s.log.Debug("record the last use of a session", zap.String("account", ses.Account), zap.Error(err))
	}
}

// MySessions lists the actor's own live sessions.
func (s *Service) MySessions(ctx context.Context, a Actor) ([]SessionView, error) {
	if !a.hasSession() {
		return nil, errForbidden
	}
	var out []SessionView
	err := s.view(ctx, a.Account, func(tx policy.Tx) error {
		all, err := tx.Sessions(a.Username)
		for _, ses := range all {
			out = append(out, sessionView(ses, a.session.TokenHash))
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list own sessions: %w", err)
	}
	return sortSessions(out), nil
}

// AccountSessions lists every live session of account's people: its
// master and its users. For the account's master (or its parent's).
func (s *Service) AccountSessions(ctx context.Context, a Actor, account string) ([]SessionView, error) {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return nil, err
	}
	out := []SessionView{}
	err := s.view(ctx, account, func(tx policy.Tx) error {
		users, err := tx.Users()
		if err != nil {
			return err
		}
		people := []string{""}
		for _, u := range users {
			people = append(people, u.Username)
		}
		for _, p := range people {
			all, err := tx.Sessions(p)
			if err != nil {
				return err
			}
			for _, ses := range all {
				out = append(out, sessionView(ses, a.session.TokenHash))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list sessions of %s: %w", account, err)
	}
	return sortSessions(out), nil
}

func sortSessions(v []SessionView) []SessionView {
	if v == nil {
		v = []SessionView{}
	}
	slices.SortFunc(v, func(a, b SessionView) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return v
}

// EndMySession ends one of the actor's own sessions (the current one too:
// that is a logout).
func (s *Service) EndMySession(ctx context.Context, a Actor, id string) error {
	if !a.hasSession() {
		return errForbidden
	}
	return s.endSession(ctx, a, a.Account, []string{a.Username}, id)
}

// EndAccountSession ends any session of account's people: its master's
// call, for a lost laptop or a session nobody recognises. The token
// answers 401 from the next call on.
func (s *Service) EndAccountSession(ctx context.Context, a Actor, account, id string) error {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return err
	}
	var people []string
	err := s.view(ctx, account, func(tx policy.Tx) error {
		users, err := tx.Users()
		people = append(people, "")
		for _, u := range users {
			people = append(people, u.Username)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("list people of %s: %w", account, err)
	}
	return s.endSession(ctx, a, account, people, id)
}

func (s *Service) endSession(ctx context.Context, a Actor, account string, people []string, id string) error {
	err := s.store.Update(ctx, account, func(tx policy.Tx) error {
		for _, p := range people {
			all, err := tx.Sessions(p)
			if err != nil {
				return err
			}
			for _, ses := range all {
				if sessionID(ses.TokenHash) != id {
					continue
				}
				if err := tx.DeleteSession(ses.TokenHash); err != nil {
					return err
				}
				target := "user/" + ses.Username
				if ses.Username == "" {
					target = "account/" + account
				}
				return tx.Audit(s.audit(a, account, "session.end", target, nil,
					map[string]any{"session": id, "client_ip": ses.ClientIP, "user_agent": ses.UserAgent}))
			}
		}
		return errNotFound
	})
	if err != nil {
		if errors.Is(err, errNotFound) {
			return notFound("session", err)
		}
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}
