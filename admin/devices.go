package admin

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/device"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Bounds of enrolment.
const (
	// enrollTTL is how long an enrolment code can be used.
	enrollTTL = 10 * time.Minute
	// maxOpenCodes bounds one person's unused codes; asking for another
	// drops their oldest.
	maxOpenCodes = 3
	// maxDevices bounds one person's devices that are not inactive.
	maxDevices    = 20
	maxDeviceName = 64
	maxPlatform   = 64
)

var errBadCode = &Error{Status: http.StatusForbidden, Code: CodeInvalidEnrollmentCode,
	Msg: "the enrolment code is wrong, has been used or has expired; ask for a new one"}

// EnrollmentCode is a new one-time code, shown once.
type EnrollmentCode struct {
	Code      string    `json:"enrollment_code"`
	ExpiresAt time.Time `json:"expires_at"`
}

// DeviceView is a device as the API shows it: no key, no replay counter.
type DeviceView struct {
	ID         string              `json:"id"`
	Account    string              `json:"account"`
	Owner      string              `json:"owner"`
	Name       string              `json:"name"`
	Platform   string              `json:"platform,omitempty"`
	Status     policy.DeviceStatus `json:"status"`
	Active     bool                `json:"active"`
	EnrolledAt time.Time           `json:"enrolled_at"`
	LastSeenAt time.Time           `json:"last_seen_at,omitzero"`
	LastIP     netip.Addr          `json:"last_ip,omitzero"`
}

func deviceView(d policy.Device) DeviceView {
	return DeviceView{ID: d.ID, Account: d.Account, Owner: d.Owner, Name: d.Name, Platform: d.Platform,
		Status: d.Status, Active: d.Active(), EnrolledAt: d.EnrolledAt, LastSeenAt: d.LastSeenAt, LastIP: d.LastIP}
}

// vetDeviceName checks a device's name: printable text, 1 to 64 bytes.
func vetDeviceName(field, s string, required bool) error {
	if s == "" {
		if required {
			return badRequest(CodeInvalidRequest, "%s is required", field)
		}
		return nil
	}
	if !utf8.ValidString(s) {
		return badRequest(CodeInvalidRequest, "%s is not valid UTF-8", field)
	}
	return vetText(field, s, maxDeviceName)
}

// CreateEnrollment gives the actor a one-time code to enrol a computer of
// theirs: a user with desktop access, or a master for their own account.
// The code is bound to the actor, used once, and expires after 10 minutes;
// only its hash is stored.
func (s *Service) CreateEnrollment(ctx context.Context, a Actor, name string) (EnrollmentCode, error) {
	switch a.Role {
	case policy.RoleUser:
		if a.MustResetPassword {
			return EnrollmentCode{}, errResetRequired
		}
		if !a.DesktopAccess {
			return EnrollmentCode{}, errNoDesktopAccess
		}
	case policy.RoleMaster:
	default:
		return EnrollmentCode{}, errForbidden
	}
	if err := vetDeviceName("name", name, false); err != nil {
		return EnrollmentCode{}, err
	}
	account, owner := a.Account, a.name(a.Account)
	code, hash := device.NewCode(account)
	var res EnrollmentCode
	err := s.store.Update(ctx, account, func(tx policy.Tx) error {
		if err := s.checkOwner(tx, owner); err != nil {
			return err
		}
		now := s.now().UTC()
		es, err := tx.Enrollments()
		if err != nil {
			return err
		}
		var mine []policy.Enrollment
		for _, e := range es {
			switch {
			case e.Expired(now):
				err = tx.DeleteEnrollment(e.CodeHash)
			case e.Owner == owner:
				mine = append(mine, e)
			}
			if err != nil {
				return err
			}
		}
		slices.SortFunc(mine, func(x, y policy.Enrollment) int { return x.CreatedAt.Compare(y.CreatedAt) })
		for len(mine) >= maxOpenCodes {
			if err := tx.DeleteEnrollment(mine[0].CodeHash); err != nil {
				return err
			}
			mine = mine[1:]
		}
		e := policy.Enrollment{CodeHash: hash, Owner: owner, Name: name, CreatedAt: now, ExpiresAt: now.Add(enrollTTL)}
		if err := tx.PutEnrollment(e); err != nil {
			return err
		}
		res = EnrollmentCode{Code: code, ExpiresAt: e.ExpiresAt}
		return tx.Audit(s.audit(a, account, "device.code", "user/"+owner, nil,
			map[string]any{"name": name, "expires_at": e.ExpiresAt}))
	})
	if err != nil {
		return EnrollmentCode{}, err
	}
	return res, nil
}

// checkOwner refuses a user who may not reach the desktop application
// (and so may not unblock, nor own a device that gets leases): one who is
// not active, must reset their password, or has no desktop access. A
// master may.
func (s *Service) checkOwner(tx policy.Tx, owner string) error {
	if owner == policy.RoleMaster {
		return nil
	}
	u, err := tx.User(owner)
	switch {
	case errors.Is(err, policy.ErrNotFound):
		return errUnauthorized
	case err != nil:
		return fmt.Errorf("read user %s: %w", owner, err)
	case u.MayConnect(): // the one rule, which the gate applies too
		return nil
	case !u.Active:
		return errUnauthorized
	case u.MustResetPassword:
		return errResetRequired
	case !u.DesktopAccess:
		return errNoDesktopAccess
	}
	return errUnauthorized // refused by MayConnect for a reason not named here
}

// EnrollRequest is what a device sends to enrol.
type EnrollRequest struct {
	Code     string `json:"code"`
	Name     string `json:"name"`
	Platform string `json:"platform"`
	// PublicKey is the device's Ed25519 public key as a DER
	// SubjectPublicKeyInfo (base64 in JSON).
	PublicKey []byte `json:"public_key"`
}

// Enroll registers a device with a one-time code. A code that is wrong,
// used or expired answers 403 invalid_enrollment_code whichever it was,
// and counts as a failure against the client address's limit, the one
// failed logins count against: both are guesses at a secret. The device is active, or pending when the account requires
// approval. The code is gone once used.
func (s *Service) Enroll(ctx context.Context, ip netip.Addr, req EnrollRequest) (DeviceView, error) {
	if err := vetDeviceName("name", req.Name, false); err != nil {
		return DeviceView{}, err
	}
	if err := vetDeviceName("platform", req.Platform, false); err != nil {
		return DeviceView{}, err
	}
	pub, err := policy.ParseDevicePublicKey(req.PublicKey)
	if err != nil {
		return DeviceView{}, badRequest(CodeInvalidRequest, "public_key must be an Ed25519 key as a DER SubjectPublicKeyInfo")
	}
	ipKey := limitKey(ip)
	end, wait, err := s.ipLimit.begin(ctx, ipKey, s.now)
	if err != nil {
		return DeviceView{}, fmt.Errorf("wait for the enrolment limit: %w", err)
	}
	if wait > 0 {
		return DeviceView{}, rateLimited(wait)
	}
	defer end()
	fail := func(why string) error {
		lock := s.ipLimit.fail(ipKey, s.now())
		s.log.Info("enrolment refused", zap.String("client_ip", ip.String()), zap.String("reason", why),
			zap.Duration("ip_lockout", lock))
		return errBadCode
	}
	account, hash, err := device.ParseCode(req.Code)
	if err != nil {
		return DeviceView{}, fail("malformed code")
	}
	var d policy.Device
	var why string
	err = s.store.Update(ctx, account, func(tx policy.Tx) error {
		why = ""
		now := s.now().UTC()
		es, err := tx.Enrollments()
		if err != nil {
			return err
		}
		var e policy.Enrollment
		found := false
		for _, x := range es {
			if subtle.ConstantTimeCompare([]byte(x.CodeHash), []byte(hash)) == 1 {
				e, found = x, true
			}
		}
		switch {
		case !found:
			why = "unknown code"
			return errBadCode
		case e.Expired(now):
			why = "expired code"
			return errBadCode
		}
		if err := tx.DeleteEnrollment(e.CodeHash); err != nil {
			return err
		}
		if err := s.checkOwner(tx, e.Owner); err != nil {
			why = "owner may no longer enrol devices"
			return errBadCode
		}
		ds, err := tx.Devices()
		if err != nil {
			return err
		}
		n := 0
		for _, x := range ds {
			if x.PublicKey.Equal(pub) {
				return errorf(http.StatusConflict, CodeExists, "this key is already enrolled")
			}
			if x.Owner == e.Owner && x.Status != policy.DeviceInactive {
				n++
			}
		}
		if n >= maxDevices {
			return errorf(http.StatusConflict, CodeTooManyDevices,
				"%s already has %d devices; make one inactive first", e.Owner, n)
		}
		acct, err := tx.Account()
		if err != nil {
			return err
		}
		d = policy.Device{ID: device.NewID(), Owner: e.Owner, Name: req.Name, Platform: req.Platform,
			Status: policy.DeviceActive, PublicKey: pub, EnrolledAt: now}
		if d.Name == "" {
			d.Name = e.Name
		}
		if d.Name == "" {
			d.Name = "unnamed device"
		}
		if acct.Settings.DeviceApproval {
			d.Status = policy.DevicePending
		}
		if err := tx.PutDevice(d); err != nil {
			return err
		}
		d.Account = account
		return tx.Audit(s.audit(deviceActor(account, d, ip), account, "device.enroll", "device/"+d.ID, nil, deviceView(d)))
	})
	switch {
	case errors.Is(err, errBadCode), errors.Is(err, policy.ErrNotFound):
		if why == "" {
			why = "no such account"
		}
		return DeviceView{}, fail(why)
	case err != nil:
		return DeviceView{}, err
	}
	s.log.Info("device enrolled", zap.String("account", account), zap.String("owner", d.Owner),
		zap.String("device", d.ID), zap.String("status", string(d.Status)), zap.String("client_ip", ip.String()))
	return deviceView(d), nil
}

// MyDevices lists the caller's own devices.
func (s *Service) MyDevices(ctx context.Context, a Actor) ([]DeviceView, error) {
	if a.Role != policy.RoleUser && a.Role != policy.RoleMaster {
		return nil, errForbidden
	}
	if a.MustResetPassword {
		return nil, errResetRequired
	}
	owner := a.name(a.Account)
	return s.listDevices(ctx, a.Account, func(d policy.Device) bool { return d.Owner == owner })
}

// Devices lists every device of account, for its master.
func (s *Service) Devices(ctx context.Context, a Actor, account string) ([]DeviceView, error) {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return nil, err
	}
	return s.listDevices(ctx, account, func(policy.Device) bool { return true })
}

func (s *Service) listDevices(ctx context.Context, account string, keep func(policy.Device) bool) ([]DeviceView, error) {
	out := []DeviceView{}
	err := s.view(ctx, account, func(tx policy.Tx) error {
		ds, err := tx.Devices()
		for _, d := range ds {
			if keep(d) {
				out = append(out, deviceView(d))
			}
		}
		return err
	})
	return out, err
}

// DevicePatch is a change to a device; nil fields stay as they are.
type DevicePatch struct {
	// Active false makes the device inactive: its leases are revoked, so
	// its live connections are closed, and it gets no new one. Active true
	// (a master only) makes an inactive device active again.
	Active *bool
	// Approved true (a master only) makes a pending device active.
	Approved *bool
}

// DeviceChange is the outcome of UpdateDevice.
type DeviceChange struct {
	Device DeviceView `json:"device"`
	// LeasesRevoked counts the device's live leases that were deleted.
	LeasesRevoked int `json:"leases_revoked"`
	// ConnectionsClosed counts the live desktop connections that lost
	// their permission; left out when unknown.
	ConnectionsClosed *int `json:"connections_closed,omitempty"`
}

// UpdateDevice changes a device of account. A master may do anything; a
// device's owner, only make it inactive (own is true for the owner's
// /me/devices call, where account is the caller's). A patch that changes
// nothing is not audited.
func (s *Service) UpdateDevice(ctx context.Context, a Actor, account, id string, own bool, p DevicePatch) (DeviceChange, error) {
	if own {
		if a.Role != policy.RoleUser && a.Role != policy.RoleMaster {
			return DeviceChange{}, errForbidden
		}
		if a.MustResetPassword {
			return DeviceChange{}, errResetRequired
		}
		account = a.Account
		if p.Approved != nil || (p.Active != nil && *p.Active) {
			return DeviceChange{}, errorf(http.StatusForbidden, CodeForbidden,
				"you may make your device inactive; only the account holder may approve or reactivate one")
		}
	} else if _, err := s.asMaster(ctx, a, account); err != nil {
		return DeviceChange{}, err
	}
	if p.Active == nil && p.Approved == nil {
		return DeviceChange{}, badRequest(CodeInvalidRequest, "nothing to change: set active or approved")
	}
	if !policy.ValidDeviceID(id) {
		return DeviceChange{}, notFound("device", nil)
	}
	owner := a.name(account)
	var res DeviceChange
	err := s.store.Update(ctx, account, func(tx policy.Tx) error {
		res = DeviceChange{}
		now := s.now().UTC()
		d, err := tx.Device(id)
		if errors.Is(err, policy.ErrNotFound) || (err == nil && own && d.Owner != owner) {
			return notFound("device", err)
		}
		if err != nil {
			return err
		}
		before := deviceView(d)
		switch {
		case p.Active != nil && !*p.Active:
			d.Status = policy.DeviceInactive
		case p.Active != nil && *p.Active, p.Approved != nil && *p.Approved:
			if d.Status == policy.DeviceInactive && p.Active == nil {
				return errorf(http.StatusConflict, CodeConflict, "the device is inactive; set active to make it active again")
			}
			d.Status = policy.DeviceActive
		}
		if d.Status == before.Status {
			res.Device = before
			return errNoChange
		}
		if d.Status == policy.DeviceInactive {
			creator := "device/" + d.ID
			revoked, closed, err := s.revokeRules(tx, account, now, func(r policy.Rule) bool {
				return r.Source == policy.SourceDevice && r.CreatedBy == creator
			})
			if err != nil {
				return err
			}
			res.LeasesRevoked, res.ConnectionsClosed = len(revoked), closed
		}
		if err := tx.PutDevice(d); err != nil {
			return err
		}
		res.Device = deviceView(d)
		action := "device.update"
		if d.Status == policy.DeviceInactive {
			action = "device.inactive"
		}
		return tx.Audit(s.audit(a, account, action, "device/"+d.ID, before, res))
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return DeviceChange{}, err
	}
	return res, nil
}
