package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/device"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Bounds of a lease request.
const (
	// maxClockSkew is how far a device's signing time may be from the
	// server's clock.
	maxClockSkew = 5 * time.Minute
	// maxLeases bounds one device's live leases (a laptop that moves
	// between home, office and a café); the oldest go first.
	maxLeases = 4
)

var (
	errDeviceRefused = &Error{Status: http.StatusForbidden, Code: CodeDeviceRefused,
		Msg: "this device is not allowed: it is unknown, inactive, awaiting approval, or its owner may not connect"}
	errBadSignature = &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
		Msg: "the device signature is missing or does not verify"}
	errStaleSignature = &Error{Status: http.StatusUnauthorized, Code: CodeStaleSignature,
		Msg: "the signing time is not after the device's last request, or is more than 5 minutes from the server's clock; check this computer's clock"}
)

// LeaseRequest is a device's signed request for a lease.
type LeaseRequest struct {
	Signed device.Signed
	// Method, Path and Body are what the signature covers.
	Method, Path string
	Body         []byte
}

// Lease is the outcome of a lease request.
type Lease struct {
	Rule policy.Rule `json:"rule"`
	// Renewed is true when the device already had a live lease for this
	// network, whose expiry was moved.
	Renewed bool `json:"renewed"`
}

// Lease allows the address a device calls from (ip, as the admin listener
// sees it) into its account: a grant with source "device", owned by the
// device's owner, created by "device/ID", for the account's lease_ttl.
// A second request from the same network renews it. Only an active device
// of an active owner with desktop access (or a master's device) gets one;
// a refusal of a known device is audited. The request must be signed by
// the device's key, later than its last accepted request and within 5
// minutes of the server's clock.
func (s *Service) Lease(ctx context.Context, ip netip.Addr, req LeaseRequest) (Lease, error) {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsUnspecified() {
		return Lease{}, badRequest(CodeUnknownClientIP, "your address could not be determined")
	}
	sg := req.Signed
	account := sg.Account
	var res Lease
	var refused error
	err := s.store.Update(ctx, account, func(tx policy.Tx) error {
		res, refused = Lease{}, nil
		now := s.now().UTC()
		d, err := tx.Device(sg.DeviceID)
		if errors.Is(err, policy.ErrNotFound) {
			return errBadSignature // an unknown device: nothing to audit
		}
		if err != nil {
			return err
		}
		if !sg.Verify(d.PublicKey, req.Method, req.Path, req.Body) {
			return errBadSignature
		}
		if !sg.Time.After(d.LastRequest) || sg.Time.Sub(now).Abs() > maxClockSkew {
			return errStaleSignature
		}
		d.LastRequest = sg.Time
		actor := deviceActor(account, d, ip)
		why := ""
		switch {
		case d.Status == policy.DevicePending:
			why = "device awaiting approval"
		case !d.Active():
			why = "device inactive"
		default:
			if err := s.checkOwner(tx, d.Owner); err != nil {
				why = "owner may not connect"
			}
		}
		if why != "" {
			refused = errDeviceRefused
			if err := tx.PutDevice(d); err != nil { // the signature is spent
				return err
			}
			return tx.Audit(s.audit(actor, account, "device.lease_refused", "device/"+d.ID, nil,
				map[string]any{"reason": why, "ip": ip.String()}))
		}
		acct, err := tx.Account()
		if err != nil {
			return err
		}
		set := acct.Settings.WithDefaults()
		prefix := grantPrefix(ip, acct.Settings)
		creator := "device/" + d.ID
		rules, err := tx.Rules()
		if err != nil {
			return err
		}
		var mine []policy.Rule
		for _, r := range rules {
			if r.Source != policy.SourceDevice || r.CreatedBy != creator {
				continue
			}
			if !live(r, now) {
				if err := tx.DeleteRule(r.ID); err != nil {
					return fmt.Errorf("clear expired lease %d: %w", r.ID, err)
				}
				continue
			}
			mine = append(mine, r)
		}
		var before any
		if i := slices.IndexFunc(mine, func(r policy.Rule) bool { return r.Prefix == prefix }); i >= 0 {
			res.Rule, res.Renewed, before = mine[i], true, mine[i]
		} else {
			slices.SortFunc(mine, func(x, y policy.Rule) int { return x.CreatedAt.Compare(y.CreatedAt) })
			for len(mine) >= maxLeases {
				if err := tx.DeleteRule(mine[0].ID); err != nil {
					return fmt.Errorf("remove oldest lease %d: %w", mine[0].ID, err)
				}
				mine = mine[1:]
			}
			res.Rule = policy.Rule{Prefix: prefix, Source: policy.SourceDevice, Owner: d.Owner,
				Note: "device " + d.Name, CreatedBy: creator, CreatedAt: now}
		}
		res.Rule.ExpiresAt = now.Add(time.Duration(set.LeaseTTL))
		res.Rule.LastUsed, res.Rule.Hits = time.Time{}, 0
		if res.Rule, err = tx.PutRule(res.Rule); err != nil {
			return fmt.Errorf("store lease: %w", err)
		}
		d.LastSeenAt, d.LastIP = now, ip
		if err := tx.PutDevice(d); err != nil {
			return err
		}
		action := "lease.create"
		if res.Renewed {
			action = "lease.renew"
		}
		return tx.Audit(s.audit(actor, account, action, ruleTarget(res.Rule), before, res.Rule))
	})
	if errors.Is(err, policy.ErrNotFound) {
		err = errBadSignature // an unknown account, as an unknown device
	}
	if err == nil {
		err = refused
	}
	s.leaseRequests.WithLabelValues(leaseOutcome(res, err)).Inc()
	if err != nil {
		s.log.Info("lease refused", zap.String("account", account), zap.String("device", sg.DeviceID),
			zap.String("client_ip", ip.String()), zap.String("reason", AsError(err).Code))
		return Lease{}, err
	}
	return res, nil
}

// deviceActor is how the audit trail names a device's request: its
// owner, from the device's address.
func deviceActor(account string, d policy.Device, ip netip.Addr) Actor {
	if d.Owner == policy.RoleMaster {
		return Actor{Role: policy.RoleMaster, Account: account, ClientIP: ip}
	}
	return Actor{Role: policy.RoleUser, Account: account, Username: d.Owner, ClientIP: ip}
}

// leaseOutcomes are the labels of gatekeeper_device_lease_requests_total.
var leaseOutcomes = []string{"created", "renewed", "refused", "bad_signature", "stale_signature", "error"}

func leaseOutcome(l Lease, err error) string {
	switch {
	case err == nil && l.Renewed:
		return "renewed"
	case err == nil:
		return "created"
	case errors.Is(err, errDeviceRefused):
		return "refused"
	case errors.Is(err, errBadSignature):
		return "bad_signature"
	case errors.Is(err, errStaleSignature):
		return "stale_signature"
	}
	return "error"
}
