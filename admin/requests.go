package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Bounds of access requests.
const (
	// maxRequestsPerDay bounds the requests one user makes in 24 hours,
	// so that a user cannot flood the masters' inboxes and phones.
	maxRequestsPerDay = 5
	// keepDecided is how long a decided or expired request stays listed.
	keepDecided  = 30 * 24 * time.Hour
	maxReasonLen = 200
)

var (
	errApprovalRequired = &Error{Status: http.StatusConflict, Code: CodeApprovalRequired,
		Msg: "unblocking on this account needs a master's approval: ask with POST /api/v1/accounts/{acct}/access-requests"}
	errApprovalNotRequired = &Error{Status: http.StatusConflict, Code: CodeApprovalNotRequired,
		Msg: "users of this account unblock themselves: use unblock"}
	errNotPending = &Error{Status: http.StatusConflict, Code: CodeNotPending,
		Msg: "the request is no longer pending: it was decided, or expired after 24 hours"}
)

// AccessRequestView is an access request as the API shows it, its status
// as of now (a pending one past 24 hours is expired).
type AccessRequestView struct {
	policy.AccessRequest
}

func requestView(r policy.AccessRequest, now time.Time) AccessRequestView {
	r.Status = r.StatusAt(now)
	return AccessRequestView{r}
}

// checkReason accepts a short one-line reason.
func checkReason(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxReasonLen {
		return "", badRequest(CodeInvalidRequest, "the reason is longer than %d bytes", maxReasonLen)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return "", badRequest(CodeInvalidRequest, "the reason must be one line of text")
	}
	return s, nil
}

// RequestAccess asks the account's masters to unblock the caller's
// address (account setting unblock: approval). A user with desktop
// access asks; a second request for the same address while one is pending
// answers that one. A user makes at most 5 requests in 24 hours. The
// request is audited as access_request.create, which notifies the
// account's destinations; it expires unanswered after 24 hours.
func (s *Service) RequestAccess(ctx context.Context, a Actor, account, reason string, ttl time.Duration) (AccessRequestView, bool, error) {
	switch {
	case a.Role != policy.RoleUser:
		if a.Role == policy.RoleMaster {
			if _, err := s.asMaster(ctx, a, account); err != nil {
				return AccessRequestView{}, false, err
			}
		}
		return AccessRequestView{}, false, errForbidden
	case a.MustResetPassword:
		return AccessRequestView{}, false, errResetRequired
	case a.Account != account:
		return AccessRequestView{}, false, errNotFound
	case !a.DesktopAccess:
		return AccessRequestView{}, false, errNoDesktopAccess
	}
	reason, err := checkReason(reason)
	if err != nil {
		return AccessRequestView{}, false, err
	}
	ip := a.ClientIP.Unmap()
	if !ip.IsValid() || ip.IsUnspecified() {
		return AccessRequestView{}, false, badRequest(CodeUnknownClientIP, "your address could not be determined")
	}
	var res policy.AccessRequest
	var created bool
	now := s.now().UTC()
	err = s.store.Update(ctx, account, func(tx policy.Tx) error {
		res, created = policy.AccessRequest{}, false
		if err := s.checkOwner(tx, a.Username); err != nil {
			return err
		}
		acct, err := tx.Account()
		if err != nil {
			return err
		}
		if acct.Settings.Unblock != policy.UnblockApproval {
			return errApprovalNotRequired
		}
		if _, err := grantTTL(ttl, acct.Settings); err != nil {
			return err
		}
		rs, err := tx.AccessRequests()
		if err != nil {
			return err
		}
		recent := 0
		for _, r := range rs {
			switch {
			case r.StatusAt(now) != policy.RequestPending && now.Sub(r.CreatedAt) > keepDecided:
				if err := tx.DeleteAccessRequest(r.ID); err != nil {
					return err
				}
				continue
			case r.User != a.Username:
				continue
			case r.StatusAt(now) == policy.RequestPending && r.IP == ip:
				res = r
				return errNoChange
			}
			if now.Sub(r.CreatedAt) < 24*time.Hour {
				recent++
			}
		}
		if recent >= maxRequestsPerDay {
			return &Error{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
				Msg: "you have asked 5 times in the last 24 hours; ask a master directly"}
		}
		res = policy.AccessRequest{ID: newRequestID(), Account: account, User: a.Username, IP: ip, Reason: reason,
			TTL: policy.Duration(ttl), Status: policy.RequestPending, CreatedAt: now, ExpiresAt: now.Add(policy.RequestLifetime)}
		if err := tx.PutAccessRequest(res); err != nil {
			return err
		}
		created = true
		return tx.Audit(s.audit(a, account, "access_request.create", "access_request/"+res.ID, nil, res))
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return AccessRequestView{}, false, err
	}
	if created {
		s.log.Info("access requested", zap.String("account", account), zap.String("user", a.Username),
			zap.String("id", res.ID), zap.String("ip", ip.String()))
	}
	return requestView(res, now), created, nil
}

// AccessRequests lists account's requests, newest first; status, if not
// empty, keeps those with that status now.
func (s *Service) AccessRequests(ctx context.Context, a Actor, account, status string) ([]AccessRequestView, error) {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return nil, err
	}
	switch status {
	case "", policy.RequestPending, policy.RequestApproved, policy.RequestDenied, policy.RequestExpired:
	default:
		return nil, badRequest(CodeInvalidRequest, "status must be pending, approved, denied or expired")
	}
	return s.listRequests(ctx, account, func(r AccessRequestView) bool { return status == "" || r.Status == status })
}

// MyAccessRequests lists the calling user's own requests, newest first.
func (s *Service) MyAccessRequests(ctx context.Context, a Actor) ([]AccessRequestView, error) {
	switch {
	case a.Role == policy.RoleMaster:
		return []AccessRequestView{}, nil // a master unblocks without asking
	case a.Role != policy.RoleUser:
		return nil, errForbidden
	case a.MustResetPassword:
		return nil, errResetRequired
	}
	return s.listRequests(ctx, a.Account, func(r AccessRequestView) bool { return r.User == a.Username })
}

func (s *Service) listRequests(ctx context.Context, account string, keep func(AccessRequestView) bool) ([]AccessRequestView, error) {
	now := s.now().UTC()
	out := []AccessRequestView{}
	err := s.view(ctx, account, func(tx policy.Tx) error {
		rs, err := tx.AccessRequests()
		for _, r := range rs {
			if v := requestView(r, now); keep(v) {
				out = append(out, v)
			}
		}
		return err
	})
	slices.SortFunc(out, func(x, y AccessRequestView) int { return y.CreatedAt.Compare(x.CreatedAt) })
	return out, err
}

// Decision is a master's answer to an access request.
type Decision struct {
	Approve bool
	// TTL, when approving, shortens the grant below what was asked.
	TTL time.Duration
	// Reason, when denying, is told to the requester.
	Reason string
}

// DecideAccessRequest approves or denies a pending request. An approval
// creates the grant for the requested address, owned by the requester,
// for the TTL asked or a shorter one; the requester must still be active
// with desktop access. Both are audited (access_request.decide, and
// grant.create for the grant), which notifies the account's destinations.
func (s *Service) DecideAccessRequest(ctx context.Context, a Actor, account, id string, d Decision) (AccessRequestView, error) {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return AccessRequestView{}, err
	}
	reason, err := checkReason(d.Reason)
	if err != nil {
		return AccessRequestView{}, err
	}
	now := s.now().UTC()
	var res policy.AccessRequest
	var to string       // the requester's confirmed address, if any
	var until time.Time // the grant's expiry, when approved
	err = s.store.Update(ctx, account, func(tx policy.Tx) error {
		to, until = "", time.Time{}
		r, err := tx.AccessRequest(id)
		if errors.Is(err, policy.ErrNotFound) {
			return errNotFound
		}
		if err != nil {
			return err
		}
		if r.StatusAt(now) != policy.RequestPending {
			return errNotPending
		}
		before := r
		r.DecidedBy, r.DecidedAt = a.name(account), now
		if d.Approve {
			ttl := time.Duration(r.TTL)
			if d.TTL > 0 {
				if ttl > 0 && d.TTL > ttl {
					return badRequest(CodeInvalidTTL, "an approval may shorten the time asked for (%s), not lengthen it", ttl)
				}
				ttl = d.TTL
			}
			if err := s.checkOwner(tx, r.User); err != nil {
				return &Error{Status: http.StatusConflict, Code: CodeNotPending,
					Msg: "the requester is no longer active with desktop access; deny the request"}
			}
			acct, err := tx.Account()
			if err != nil {
				return err
			}
			g, gbefore, err := putGrant(tx, acct.Settings, now, r.User, a.name(account), "approved by "+a.name(account), r.IP, ttl)
			if err != nil {
				return err
			}
			r.Status, r.Rule, until = policy.RequestApproved, g.Rule.ID, g.Rule.ExpiresAt
			action := "grant.create"
			if g.Renewed {
				action = "grant.renew"
			}
			if err := tx.Audit(s.audit(a, account, action, ruleTarget(g.Rule), gbefore, g.Rule)); err != nil {
				return err
			}
		} else {
			r.Status, r.DenyReason = policy.RequestDenied, reason
		}
		if err := tx.PutAccessRequest(r); err != nil {
			return err
		}
		if u, err := tx.User(r.User); err == nil && u.Email.Confirmed {
			to = u.Email.Address
		}
		res = r
		return tx.Audit(s.audit(a, account, "access_request.decide", "access_request/"+r.ID, before, r))
	})
	if err != nil {
		return AccessRequestView{}, err
	}
	s.log.Info("access request decided", zap.String("account", account), zap.String("id", id),
		zap.String("status", res.Status), zap.String("actor", a.name(account)))
	s.mailDecision(account, to, res, until)
	return requestView(res, now), nil
}

func newRequestID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// The API.
type (
	accessRequestBody struct {
		Reason string          `json:"reason"`
		TTL    policy.Duration `json:"ttl"`
	}
	approveBody struct {
		TTL policy.Duration `json:"ttl"`
	}
	denyBody struct {
		Reason string `json:"reason"`
	}
)

func (s *Server) requestAccess(w http.ResponseWriter, r *http.Request, c *call) error {
	var b accessRequestBody
	if err := readBody(r, &b, true); err != nil {
		return err
	}
	v, created, err := s.svc.RequestAccess(r.Context(), c.actor, r.PathValue("acct"), b.Reason, time.Duration(b.TTL))
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	writeJSON(w, status, v)
	return nil
}

func (s *Server) accessRequests(w http.ResponseWriter, r *http.Request, c *call) error {
	rs, err := s.svc.AccessRequests(r.Context(), c.actor, r.PathValue("acct"), r.URL.Query().Get("status"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": rs})
	return nil
}

func (s *Server) myAccessRequests(w http.ResponseWriter, r *http.Request, c *call) error {
	rs, err := s.svc.MyAccessRequests(r.Context(), c.actor)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": rs})
	return nil
}

func (s *Server) approveRequest(w http.ResponseWriter, r *http.Request, c *call) error {
	var b approveBody
	if err := readBody(r, &b, true); err != nil {
		return err
	}
	v, err := s.svc.DecideAccessRequest(r.Context(), c.actor, r.PathValue("acct"), r.PathValue("id"),
		Decision{Approve: true, TTL: time.Duration(b.TTL)})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) denyRequest(w http.ResponseWriter, r *http.Request, c *call) error {
	var b denyBody
	if err := readBody(r, &b, true); err != nil {
		return err
	}
	v, err := s.svc.DecideAccessRequest(r.Context(), c.actor, r.PathValue("acct"), r.PathValue("id"), Decision{Reason: b.Reason})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}
