package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// UserView is a user as a master sees it: never the password hash.
type UserView struct {
	Username          string    `json:"username"`
	DisplayName       string    `json:"display_name,omitempty"`
	Active            bool      `json:"active"`
	DesktopAccess     bool      `json:"desktop_access"`
	WebAccess         bool      `json:"web_access"`
	MustResetPassword bool      `json:"must_reset_password"`
	CreatedAt         time.Time `json:"created_at"`
	LastLoginAt       time.Time `json:"last_login_at,omitzero"`
	LastLoginIP       string    `json:"last_login_ip,omitempty"`
	Permissions       []string  `json:"permissions,omitempty"`
	// OffboardedAt is when the user's last offboarding ran; its receipt is
	// at .../users/{username}/offboarding.
	OffboardedAt time.Time `json:"offboarded_at,omitzero"`
	// AccessUntil is the user's last day, if set.
	AccessUntil time.Time     `json:"access_until,omitzero"`
	Grants      []policy.Rule `json:"grants,omitempty"`
	// Email is the user's address and whether it is confirmed (AddressView).
	Email *AddressView `json:"email,omitempty"`
	// SecondFactor names the user's confirmed factors ("totp", "passkey"),
	// so a master sees who has one and whose to clear.
	SecondFactor []string `json:"second_factor,omitempty"`
}

func userView(u policy.User) UserView {
	v := UserView{Username: u.Username, DisplayName: u.DisplayName, Active: u.Active,
		DesktopAccess: u.DesktopAccess, WebAccess: u.WebAccess, MustResetPassword: u.MustResetPassword, CreatedAt: u.CreatedAt,
		LastLoginAt: u.LastLoginAt, LastLoginIP: u.LastLoginIP, Permissions: u.Permissions,
		AccessUntil: u.AccessUntil, Email: addressView(u.Email), SecondFactor: u.MFA.Kinds()}
	if u.Offboarding != nil {
		v.OffboardedAt = u.Offboarding.At
	}
	return v
}

// Users returns account's staff list, sorted by username, each with their
// live grants: the active users, or everyone with includeInactive. A
// manager (manage_staff) may read it as well as the master.
func (s *Service) Users(ctx context.Context, a Actor, account string, includeInactive bool) ([]UserView, error) {
	if _, _, err := s.asStaffManager(ctx, a, account); err != nil {
		return nil, err
	}
	out := []UserView{}
	now := s.now()
	err := s.view(ctx, account, func(tx policy.Tx) error {
		out = out[:0]
		users, err := tx.Users()
		if err != nil {
			return err
		}
		rules, err := tx.Rules()
		if err != nil {
			return err
		}
		for _, u := range users {
			if !u.Active && !includeInactive {
				continue
			}
			v := userView(u)
			v.Grants = grantsOf(rules, u.Username, now)
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// NewUser is a user to create.
type NewUser struct {
	Username    string
	DisplayName string
	Password    string
	// Permissions to grant; only a master may.
	Permissions []string
	// AccessUntil, if set, is the user's last day.
	AccessUntil time.Time
	// WebAccess lets the user sign in to web applications (off unless
	// asked for).
	WebAccess bool
}

const maxDisplayName = 100

func (n NewUser) vet(account string, known ...string) (NewUser, error) {
	n.Username = normalizeUsername(n.Username)
	if err := vetUsername(n.Username); err != nil {
		return n, err
	}
	if err := vetText("display_name", n.DisplayName, maxDisplayName); err != nil {
		return n, err
	}
	var err error
	if n.Permissions, err = vetPermissions(n.Permissions); err != nil {
		return n, err
	}
	return n, vetPassword(n.Password, n.Username, account, known...)
}

// CreateUser adds an active user with desktop access who must set a new
// password at first login. Usernames are lower-cased, must name a person
// and are unique in the account, deactivated users included. A manager
// may create users but grant them no permission.
func (s *Service) CreateUser(ctx context.Context, a Actor, account string, n NewUser) (UserView, error) {
	acct, manager, err := s.asStaffManager(ctx, a, account)
	if err != nil {
		return UserView{}, err
	}
	n, err = n.vet(account, acct.Name)
	if err != nil {
		return UserView{}, err
	}
	if manager && len(n.Permissions) > 0 {
		return UserView{}, errGrantByMaster
	}
	if err := s.vetAccessUntil(n.AccessUntil); err != nil {
		return UserView{}, err
	}
	hash, err := s.hash(ctx, n.Password)
	if err != nil {
		return UserView{}, err
	}
	var u policy.User
	err = s.store.Update(ctx, account, func(tx policy.Tx) error {
		if manager {
			if err := checkManager(tx, a); err != nil {
				return err
			}
		}
		switch _, err := tx.User(n.Username); {
		case err == nil:
			return errorf(http.StatusConflict, CodeExists, "there is already a user %q (perhaps deactivated)", n.Username)
		case !errors.Is(err, policy.ErrNotFound):
			return err
		}
		u = policy.User{Account: account, Username: n.Username, DisplayName: n.DisplayName, Active: true,
			DesktopAccess: true, WebAccess: n.WebAccess, MustResetPassword: true, PasswordHash: hash, CreatedAt: s.now().UTC(),
			Permissions: n.Permissions, AccessUntil: n.AccessUntil}
		if err := tx.PutUser(u); err != nil {
			return err
		}
		return tx.Audit(s.audit(a, account, "user.create", "user/"+u.Username, nil, userView(u)))
	})
	if err != nil {
		return UserView{}, err
	}
	if !u.AccessUntil.IsZero() {
		s.pokeLastDays()
	}
	return userView(u), nil
}

// UserPatch changes a user's flags; nil fields stay as they are.
type UserPatch struct {
	Active        *bool
	DesktopAccess *bool
	// WebAccess: whoever may change DesktopAccess may change it.
	WebAccess         *bool
	MustResetPassword *bool
	// Permissions, if set, replace the user's permissions; only a master
	// may set them.
	Permissions *[]string
	// AccessUntil, if set, replaces the user's last day; a zero time
	// clears it.
	AccessUntil *time.Time
}

// UserChange is the outcome of UpdateUser and Offboard.
type UserChange struct {
	User UserView `json:"user"`
	// SessionsEnded counts the user's sessions that were ended.
	SessionsEnded int `json:"sessions_ended"`
	// GrantsRevoked counts the user's live grants that were deleted.
	GrantsRevoked int `json:"grants_revoked"`
	// LeasesRevoked counts the live leases of the user's devices that were
	// deleted.
	LeasesRevoked int `json:"leases_revoked"`
	// DevicesDeactivated counts the user's devices made inactive.
	DevicesDeactivated int `json:"devices_deactivated"`
	// ConnectionsClosed counts the live desktop connections the revocation
	// closes; left out when unknown (see Options.LiveConnections).
	ConnectionsClosed *int `json:"connections_closed,omitempty"`
}

// UpdateUser changes a user's flags. Deactivating a user ends their
// sessions and revokes their grants; taking desktop access away revokes
// their grants and their devices' leases and makes their devices inactive
// (and so closes their desktop connections) but keeps them logged in; requiring a reset applies to their open sessions at once.
// A patch that changes nothing is not audited. A manager may change the
// flags of users who hold no permission, and no one's permissions.
func (s *Service) UpdateUser(ctx context.Context, a Actor, account, username string, p UserPatch) (UserChange, error) {
	_, manager, err := s.asStaffManager(ctx, a, account)
	if err != nil {
		return UserChange{}, err
	}
	if p.Active == nil && p.DesktopAccess == nil && p.WebAccess == nil && p.MustResetPassword == nil && p.Permissions == nil && p.AccessUntil == nil {
		return UserChange{}, badRequest(CodeInvalidRequest, "nothing to change: set active, desktop_access, web_access, must_reset_password, permissions or access_until")
	}
	if p.AccessUntil != nil {
		if err := s.vetAccessUntil(*p.AccessUntil); err != nil {
			return UserChange{}, err
		}
	}
	var perms []string
	if p.Permissions != nil {
		if manager {
			return UserChange{}, errGrantByMaster
		}
		if perms, err = vetPermissions(*p.Permissions); err != nil {
			return UserChange{}, err
		}
	}
	username = normalizeUsername(username)
	var res UserChange
	err = s.store.Update(ctx, account, func(tx policy.Tx) error {
		res = UserChange{}
		now := s.now().UTC()
		u, err := staffTarget(tx, a, manager, username)
		if err != nil {
			return err
		}
		before := u
		set(&u.Active, p.Active)
		set(&u.DesktopAccess, p.DesktopAccess)
		set(&u.WebAccess, p.WebAccess)
		set(&u.MustResetPassword, p.MustResetPassword)
		if p.Permissions != nil {
			u.Permissions = perms
		}
		if p.AccessUntil != nil {
			u.AccessUntil = *p.AccessUntil
		}
		res.User = userView(u)
		if sameUser(u, before) {
			return errNoChange
		}
		if lastDayDue(u, now) {
			// Active again after a last day that never ran (they were
			// inactive at the instant): the scan would take them out at
			// once, so say so instead.
			return errorf(http.StatusConflict, CodeConflict,
				"%s's last day (access_until) has passed; set a new one, or clear it, in the same change", u.Username)
		}
		if before.Active && !u.Active {
			if res.SessionsEnded, err = tx.DeleteSessions(u.Username); err != nil {
				return err
			}
		}
		if (before.Active && !u.Active) || (before.DesktopAccess && !u.DesktopAccess) {
			if err := s.cutOff(tx, account, u.Username, now, &res, nil); err != nil {
				return err
			}
		}
		if err := tx.PutUser(u); err != nil {
			return err
		}
		return tx.Audit(s.audit(a, account, "user.update", "user/"+u.Username, userView(before), res))
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return UserChange{}, err
	}
	if p.AccessUntil != nil {
		s.pokeLastDays()
	}
	return res, nil
}

// cutOff takes away what lets a user's computers through: their grants,
// their devices' leases, and the devices themselves, made inactive so
// that they get no new lease if the user comes back. Inside a write
// transaction; it fills res's counts.
// If rec is not nil, it lists there what it revoked.
func (s *Service) cutOff(tx policy.Tx, account, username string, now time.Time, res *UserChange, rec *policy.OffboardReceipt) error {
	revoked, closed, err := s.revokeGrants(tx, account, username, now)
	if err != nil {
		return err
	}
	res.ConnectionsClosed = closed
	for _, r := range revoked {
		rr := policy.ReceiptRule{ID: r.ID, CIDR: r.Prefix, ExpiresAt: r.ExpiresAt, RevokedAt: now}
		if r.Source == policy.SourceDevice {
			res.LeasesRevoked++
			if rec != nil {
				rec.Leases = append(rec.Leases, rr)
			}
		} else {
			res.GrantsRevoked++
			if rec != nil {
				rec.Grants = append(rec.Grants, rr)
			}
		}
	}
	ds, err := tx.Devices()
	if err != nil {
		return err
	}
	for _, d := range ds {
		if d.Owner == username && d.Status != policy.DeviceInactive {
			d.Status = policy.DeviceInactive
			if err := tx.PutDevice(d); err != nil {
				return err
			}
			res.DevicesDeactivated++
			if rec != nil {
				rec.Devices = append(rec.Devices, policy.ReceiptThing{ID: d.ID, Name: d.Name, At: now})
			}
		}
	}
	return nil
}

// sameUser reports whether a and b are equal in every field; a copy of a
// user read once compares its times exactly.
func sameUser(a, b policy.User) bool {
	if !slices.Equal(a.Permissions, b.Permissions) {
		return false
	}
	a.Permissions, b.Permissions = nil, nil
	return reflect.DeepEqual(a, b)
}

func set(dst *bool, v *bool) {
	if v != nil {
		*dst = *v
	}
}

// Offboard takes a user out in one step: deactivated, desktop access off,
// every session ended, every grant and device lease revoked (which closes
// their desktop connections), every device made inactive, all in one transaction with one audit entry. The result
// says what it did. Offboarding a user already offboarded does nothing new
// but is still recorded, since someone asked for it. A manager may
// offboard users who hold no permission.
func (s *Service) Offboard(ctx context.Context, a Actor, account, username string) (UserChange, error) {
	_, manager, err := s.asStaffManager(ctx, a, account)
	if err != nil {
		return UserChange{}, err
	}
	username = normalizeUsername(username)
	var res UserChange
	err = s.store.Update(ctx, account, func(tx policy.Tx) error {
		res = UserChange{}
		now := s.now().UTC()
		u, err := staffTarget(tx, a, manager, username)
		if err != nil {
			return err
		}
		res, err = s.offboardIn(tx, a, account, u, now, time.Time{})
		return err
	})
	if err != nil {
		return UserChange{}, err
	}
	s.log.Info("user offboarded", zap.String("account", account), zap.String("username", username),
		zap.String("actor", a.name(account)), zap.Int("sessions_ended", res.SessionsEnded),
		zap.Int("grants_revoked", res.GrantsRevoked))
	return res, nil
}

// PasswordResets is the outcome of ResetPasswords.
type PasswordResets struct {
	// Users counts the users who now must set a new password and had not
	// been asked to already.
	Users int `json:"users"`
}

// ResetPasswords makes every user of account set a new password at their
// next call, which applies to sessions already open too.
func (s *Service) ResetPasswords(ctx context.Context, a Actor, account string) (PasswordResets, error) {
	if _, err := s.asMaster(ctx, a, account); err != nil {
		return PasswordResets{}, err
	}
	var res PasswordResets
	err := s.store.Update(ctx, account, func(tx policy.Tx) error {
		res = PasswordResets{}
		users, err := tx.Users()
		if err != nil {
			return err
		}
		var names []string
		for _, u := range users {
			if u.MustResetPassword {
				continue
			}
			u.MustResetPassword = true
			if err := tx.PutUser(u); err != nil {
				return fmt.Errorf("put user %s: %w", u.Username, err)
			}
			names = append(names, u.Username)
		}
		res.Users = len(names)
		return tx.Audit(s.audit(a, account, "users.reset_passwords", "account/"+account, nil,
			map[string]any{"users": names}))
	})
	if err != nil {
		return PasswordResets{}, err
	}
	return res, nil
}
