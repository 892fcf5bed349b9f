package admin

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Firewall is an account's firewall preferences.
type Firewall struct {
	Mode policy.Mode `json:"mode"`
	// Rules are the live rules, manual ones and grants, sorted by ID, with
	// their last use and hits.
	Rules    []policy.Rule   `json:"rules"`
	Settings policy.Settings `json:"settings"`
}

// Firewall returns account's mode and live rules.
func (s *Service) Firewall(ctx context.Context, a Actor, account string) (Firewall, error) {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return Firewall{}, err
	}
	var fw Firewall
	now := s.now()
	err := s.view(ctx, account, func(tx policy.Tx) error {
		acct, err := tx.Account()
		if err != nil {
			return err
		}
		rules, err := tx.Rules()
		if err != nil {
			return err
		}
		fw = Firewall{Mode: acct.Mode, Settings: acct.Settings.WithDefaults(), Rules: []policy.Rule{}}
		for _, r := range rules {
			if live(r, now) {
				fw.Rules = append(fw.Rules, r)
			}
		}
		return nil
	})
	return fw, err
}

// ModeChange is the outcome of SetMode.
type ModeChange struct {
	Mode     policy.Mode `json:"mode"`
	Previous policy.Mode `json:"previous"`
}

// SetMode sets account's firewall mode. Turning the firewall off disables
// a key protection, so it needs confirm and is logged as a warning. Setting
// the mode it already has changes nothing and is not audited.
func (s *Service) SetMode(ctx context.Context, a Actor, account, mode string, confirm bool) (ModeChange, error) {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return ModeChange{}, err
	}
	m, err := policy.ParseMode(mode)
	if err != nil {
		return ModeChange{}, badRequest(CodeInvalidRequest, "mode must be on, monitor or off")
	}
	if m == policy.ModeOff && !confirm {
		return ModeChange{}, badRequest(CodeConfirmationRequired,
			`turning the firewall off lets every address through; send "confirm": true to do it`)
	}
	var res ModeChange
	err = s.store.Update(ctx, account, func(tx policy.Tx) error {
		acct, err := tx.Account()
		if err != nil {
			return err
		}
		res = ModeChange{Mode: m, Previous: acct.Mode}
		if acct.Mode == m {
			return errNoChange
		}
		acct.Mode = m
		if err := tx.PutAccount(acct); err != nil {
			return err
		}
		return tx.Audit(s.audit(a, account, "firewall.mode", "account/"+account,
			map[string]policy.Mode{"mode": res.Previous}, map[string]policy.Mode{"mode": m}))
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return ModeChange{}, err
	}
	if m == policy.ModeOff && res.Previous != m {
		s.log.Warn("firewall turned off: every address may reach the account",
			zap.String("account", account), zap.String("actor", a.name(account)),
			zap.String("client_ip", a.ClientIP.String()), zap.String("previous", string(res.Previous)))
	} else if res.Previous != m {
		s.log.Info("firewall mode changed", zap.String("account", account), zap.String("actor", a.name(account)),
			zap.String("mode", string(m)), zap.String("previous", string(res.Previous)))
	}
	return res, nil
}

// NewRule is a manual rule to add.
type NewRule struct {
	// CIDR is a network or a bare address.
	CIDR string
	// Note says why, for the people who read the list later.
	Note string
	// TTL, if not zero, makes the rule expire.
	TTL time.Duration
	// Confirm is needed for networks broader than /16 (IPv4) or /32 (IPv6).
	Confirm bool
}

// Bounds of a manual rule.
const (
	maxNote    = 200
	maxRuleTTL = 10 * 366 * 24 * time.Hour
)

// vet checks a new rule without touching the store.
func (n NewRule) vet() (policy.Rule, error) {
	p, err := policy.ParsePrefix(n.CIDR)
	switch {
	case errors.Is(err, policy.ErrTooBroad):
		return policy.Rule{}, badRequest(CodeTooBroad, "%s", err.Error())
	case err != nil:
		return policy.Rule{}, badRequest(CodeInvalidCIDR, "%s", err.Error())
	}
	if policy.NeedsConfirm(p) && !n.Confirm {
		return policy.Rule{}, badRequest(CodeConfirmationRequired,
			`%s is broader than /%d (IPv4) or /%d (IPv6) and lets many strangers through; send "confirm": true if you mean it`,
			p, policy.ConfirmBitsV4, policy.ConfirmBitsV6)
	}
	if err := vetText("note", n.Note, maxNote); err != nil {
		return policy.Rule{}, err
	}
	if n.TTL != 0 && (n.TTL < time.Minute || n.TTL > maxRuleTTL) {
		return policy.Rule{}, badRequest(CodeInvalidTTL, "ttl must be between 1m and 10 years, or left out for a rule that does not expire")
	}
	return policy.Rule{Prefix: p, Note: n.Note, Source: policy.SourceManual}, nil
}

// AddRule adds a manual rule to account. A live manual rule for the same
// network already there answers 409.
func (s *Service) AddRule(ctx context.Context, a Actor, account string, n NewRule) (policy.Rule, error) {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return policy.Rule{}, err
	}
	r, err := n.vet()
	if err != nil {
		return policy.Rule{}, err
	}
	err = s.store.Update(ctx, account, func(tx policy.Tx) error {
		now := s.now().UTC()
		rules, err := tx.Rules()
		if err != nil {
			return err
		}
		if slices.ContainsFunc(rules, func(o policy.Rule) bool {
			return o.Source == policy.SourceManual && o.Prefix == r.Prefix && live(o, now)
		}) {
			return errorf(http.StatusConflict, CodeExists, "%s is already allowed by a rule", r.Prefix)
		}
		nr := r
		nr.CreatedBy, nr.CreatedAt = a.name(account), now
		if n.TTL > 0 {
			nr.ExpiresAt = now.Add(n.TTL)
		}
		if nr, err = tx.PutRule(nr); err != nil {
			return err
		}
		r = nr
		return tx.Audit(s.audit(a, account, "rule.add", ruleTarget(nr), nil, nr))
	})
	if err != nil {
		return policy.Rule{}, err
	}
	return r, nil
}

// DeleteRule deletes one of account's rules, a grant included. The proxies
// close the live connections the rule was the only one to allow.
func (s *Service) DeleteRule(ctx context.Context, a Actor, account string, id policy.RuleID) error {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return err
	}
	return s.store.Update(ctx, account, func(tx policy.Tx) error {
		rules, err := tx.Rules()
		if err != nil {
			return err
		}
		i := slices.IndexFunc(rules, func(r policy.Rule) bool { return r.ID == id })
		if i < 0 {
			return notFound("rule", nil)
		}
		if err := tx.DeleteRule(id); err != nil {
			return err
		}
		return tx.Audit(s.audit(a, account, "rule.delete", ruleTarget(rules[i]), rules[i], nil))
	})
}

// AuditPage is one page of an audit trail, newest first.
type AuditPage struct {
	Entries []policy.AuditEntry `json:"entries"`
	// Next, when set, is the "before" that fetches the following page.
	Next string `json:"next,omitempty"`
}

// AuditQuery selects a page of an audit trail.
type AuditQuery struct {
	// Limit is the most entries to return: 1 to 1000; zero means 50.
	Limit int
	// Before, when set, returns only entries older than this entry ID.
	Before string
	// User, when set, keeps only the entries about one person: those whose
	// actor is User (a username, "master", "master@PARENT") and those whose
	// target is the user "user/User". Matching is case-insensitive.
	User string
}

// Bounds of a filtered audit search: the entries read per store call, and
// the most read for one page, so that a filter matching nothing in a long
// trail costs a bounded amount. A page cut short by the bound has Next set.
const (
	auditBatch   = 500
	auditMaxScan = 5000
	maxAuditUser = 80
)

// Audit returns a page of account's audit trail, newest first: at most
// q.Limit entries older than the entry q.Before, only those about q.User
// when it is set. A filtered page reads at most 5000 entries; when it
// stops there with fewer matches than asked for, Next lets the reader go
// on.
func (s *Service) Audit(ctx context.Context, a Actor, account string, q AuditQuery) (AuditPage, error) {
	if err := s.asAuditViewer(ctx, a, account); err != nil {
		return AuditPage{}, err
	}
	if q.Limit == 0 {
		q.Limit = 50
	}
	if q.Limit < 1 || q.Limit > 1000 {
		return AuditPage{}, badRequest(CodeInvalidRequest, "limit must be between 1 and 1000")
	}
	if len(q.User) > maxAuditUser {
		return AuditPage{}, badRequest(CodeInvalidRequest, "user is longer than %d bytes", maxAuditUser)
	}
	p := AuditPage{Entries: []policy.AuditEntry{}}
	if q.User == "" {
		es, err := s.store.Audit(ctx, account, policy.AuditQuery{Before: q.Before, Limit: q.Limit})
		if err != nil {
			return AuditPage{}, err
		}
		p.Entries = append(p.Entries, es...)
		if len(es) == q.Limit {
			p.Next = es[len(es)-1].ID
		}
		return p, nil
	}
	before, scanned := q.Before, 0
	for scanned < auditMaxScan {
		es, err := s.store.Audit(ctx, account, policy.AuditQuery{Before: before, Limit: auditBatch})
		if err != nil {
			return AuditPage{}, err
		}
		for _, e := range es {
			scanned++
			before = e.ID
			if strings.EqualFold(e.Actor, q.User) || strings.EqualFold(e.Target, "user/"+q.User) {
				p.Entries = append(p.Entries, e)
				if len(p.Entries) == q.Limit {
					p.Next = e.ID
					return p, nil
				}
			}
		}
		if len(es) < auditBatch {
			return p, nil // the end of the trail
		}
	}
	p.Next = before
	return p, nil
}
