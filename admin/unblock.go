package admin

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Grant is the outcome of Unblock.
type Grant struct {
	// Rule is the grant for the caller's address.
	Rule policy.Rule `json:"rule"`
	// Renewed is true when the address already had a live grant, whose
	// expiry was moved instead.
	Renewed bool `json:"renewed"`
	// Removed lists the caller's oldest grants that were removed to stay
	// within the account's limit of live grants per person.
	Removed []policy.Rule `json:"removed,omitempty"`
}

// Unblock allows the actor's own address (as the admin listener sees it)
// into account, as a /32 grant, or for IPv6 its /64 (or /128, account
// setting ipv6_grant_prefix), owned by the actor, for ttl (zero
// means the account's default; more than its maximum is refused). Users
// need desktop access; masters of the account or its parent may unblock
// themselves too. Unblocking an address that already has a live grant of
// the actor renews it. When the actor would have more live grants than the
// account allows, the oldest go, and the result lists them. The actor's
// expired grants are cleared away on the way.
func (s *Service) Unblock(ctx context.Context, a Actor, account string, ttl time.Duration) (Grant, error) {
	switch a.Role {
	case policy.RoleUser:
		if a.MustResetPassword {
			return Grant{}, errResetRequired
		}
		if a.Account != account {
			return Grant{}, errNotFound
		}
		if !a.DesktopAccess {
			return Grant{}, errNoDesktopAccess
		}
	case policy.RoleMaster:
		if _, err := s.asMaster(ctx, a, account); err != nil {
			return Grant{}, err
		}
	default:
		return Grant{}, errForbidden
	}
	ip := a.ClientIP.Unmap()
	if !ip.IsValid() || ip.IsUnspecified() {
		return Grant{}, badRequest(CodeUnknownClientIP, "your address could not be determined")
	}
	// The address the grant is for is the caller's, whichever network it
	// covers: two grants of one person within one /64 are one.
	owner := a.name(account)
	var g Grant
	err := s.store.Update(ctx, account, func(tx policy.Tx) error {
		g = Grant{}
		now := s.now().UTC()
		if a.Role == policy.RoleUser {
			if err := s.checkOwner(tx, a.Username); err != nil {
				return err
			}
		}
		acct, err := tx.Account()
		if err != nil {
			return err
		}
		if a.Role == policy.RoleUser && acct.Settings.Unblock == policy.UnblockApproval {
			return errApprovalRequired
		}
		var before any
		g, before, err = putGrant(tx, acct.Settings, now, owner, owner, "unblocked by "+owner, ip, ttl)
		if err != nil {
			return err
		}
		r := g.Rule
		action := "grant.create"
		if g.Renewed {
			action = "grant.renew"
		}
		return tx.Audit(s.audit(a, account, action, ruleTarget(r), before, r))
	})
	if err != nil {
		return Grant{}, err
	}
	return g, nil
}

// DeleteGrant removes one of the actor's own live grants on their account.
func (s *Service) DeleteGrant(ctx context.Context, a Actor, id policy.RuleID) error {
	if !a.hasSession() {
		return errForbidden
	}
	if a.MustResetPassword {
		return errResetRequired
	}
	owner := a.name(a.Account)
	return s.store.Update(ctx, a.Account, func(tx policy.Tx) error {
		rules, err := tx.Rules()
		if err != nil {
			return err
		}
		i := slices.IndexFunc(rules, func(r policy.Rule) bool {
			return r.ID == id && r.Source == policy.SourceUnblock && r.Owner == owner
		})
		if i < 0 {
			return notFound("grant", nil)
		}
		if err := tx.DeleteRule(id); err != nil {
			return err
		}
		return tx.Audit(s.audit(a, a.Account, "grant.delete", ruleTarget(rules[i]), rules[i], nil))
	})
}

func ruleTarget(r policy.Rule) string {
	return "rule/" + strconv.FormatUint(uint64(r.ID), 10) + " " + r.Prefix.String()
}

// grantPrefix is the network a grant or lease for ip covers: the address
// for IPv4, the account's ipv6_grant_prefix (default /64) for IPv6,
// because privacy addresses rotate within the /64. ip is unmapped.
func grantPrefix(ip netip.Addr, set policy.Settings) netip.Prefix {
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(set.WithDefaults().IPv6GrantPrefix) // 64 or 128: always valid for IPv6
	return p
}

// putGrant gives owner a grant for ip's network (grantPrefix) for ttl
// (zero: the account's default), or renews the live one owner has for it;
// expired grants of owner are cleared away and the oldest live ones go
// when owner would have more than the account allows. It returns the
// grant and what the audit entry's "before" holds. Used by Unblock and by
// an access request's approval, the only two ways a grant is made.
func putGrant(tx policy.Tx, set policy.Settings, now time.Time, owner, createdBy, note string, ip netip.Addr, ttl time.Duration) (Grant, any, error) {
	var g Grant
	d, err := grantTTL(ttl, set)
	if err != nil {
		return g, nil, err
	}
	prefix := grantPrefix(ip, set)
	rules, err := tx.Rules()
	if err != nil {
		return g, nil, err
	}
	var mine []policy.Rule
	for _, r := range rules {
		if r.Source != policy.SourceUnblock || r.Owner != owner {
			continue
		}
		if !live(r, now) {
			if err := tx.DeleteRule(r.ID); err != nil {
				return g, nil, fmt.Errorf("clear expired grant %d: %w", r.ID, err)
			}
			continue
		}
		mine = append(mine, r)
	}
	var before any
	if i := slices.IndexFunc(mine, func(r policy.Rule) bool { return r.Prefix == prefix }); i >= 0 {
		g.Rule, g.Renewed = mine[i], true
		before = mine[i]
		g.Rule.ExpiresAt = now.Add(d)
	} else {
		limit := set.WithDefaults().MaxGrants
		slices.SortFunc(mine, func(x, y policy.Rule) int { return x.CreatedAt.Compare(y.CreatedAt) })
		for len(mine) >= limit {
			if err := tx.DeleteRule(mine[0].ID); err != nil {
				return g, nil, fmt.Errorf("remove oldest grant %d: %w", mine[0].ID, err)
			}
			g.Removed = append(g.Removed, mine[0])
			mine = mine[1:]
		}
		if len(g.Removed) > 0 {
			before = map[string]any{"removed": g.Removed}
		}
		g.Rule = policy.Rule{Prefix: prefix, Source: policy.SourceUnblock, Owner: owner,
			Note: note, CreatedBy: createdBy, CreatedAt: now, ExpiresAt: now.Add(d)}
	}
	g.Rule.LastUsed, g.Rule.Hits = time.Time{}, 0
	r, err := tx.PutRule(g.Rule)
	if err != nil {
		return g, nil, fmt.Errorf("store grant: %w", err)
	}
	g.Rule = r
	return g, before, nil
}
