package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// CodeInvalidPermission answers a permission name that does not exist.
const CodeInvalidPermission = "invalid_permission"

// errPermissionHolder refuses a manager who acts on a user holding a
// permission: those users are the master's to manage, so no manager can
// take another manager out, nor change what they may do.
var errPermissionHolder = &Error{Status: http.StatusForbidden, Code: CodeForbidden,
	Msg: "a user who holds a permission is managed by the master only"}

// errGrantByMaster refuses a manager who sets permissions: only a master
// grants them, so a manager can never give one they lack, nor one to
// themselves.
var errGrantByMaster = &Error{Status: http.StatusForbidden, Code: CodeForbidden,
	Msg: "only the master grants permissions"}

// Can reports whether a is a user of account who held permission p when
// the call was authenticated and need not reset their password first.
func (a Actor) Can(account, p string) bool {
	return a.Role == policy.RoleUser && a.Account == account && !a.MustResetPassword &&
		slices.Contains(a.Permissions, p)
}

// asStaffManager checks that a may manage account's staff and returns
// the account: a master as asMaster allows, or a user of account holding
// manage_staff. manager is true for the latter, whose every change the
// limits of managerMayTouch and checkManager bound.
func (s *Service) asStaffManager(ctx context.Context, a Actor, account string) (acct policy.Account, manager bool, err error) {
	if a.Can(account, policy.PermManageStaff) {
		acct, err = s.store.Account(ctx, account)
		if err != nil {
			return acct, true, fmt.Errorf("read account %s: %w", account, err)
		}
		return acct, true, nil
	}
	acct, err = s.asMaster(ctx, a, account)
	return acct, false, err
}

// asAuditViewer checks that a may read account's audit trail: a master as
// asMaster allows, or a user of account holding view_audit.
func (s *Service) asAuditViewer(ctx context.Context, a Actor, account string) error {
	if a.Can(account, policy.PermViewAudit) {
		return nil
	}
	_, err := s.asMaster(ctx, a, account)
	return err
}

// checkManager re-reads a manager inside the write transaction, so that a
// permission taken away, or a deactivation, between authentication and the
// write stops the write.
func checkManager(tx policy.Tx, a Actor) error {
	u, err := tx.User(a.Username)
	if errors.Is(err, policy.ErrNotFound) {
		return errUnauthorized
	}
	if err != nil {
		return err
	}
	if !u.Active {
		return errUnauthorized
	}
	if !u.Has(policy.PermManageStaff) || u.MustResetPassword {
		return errForbidden
	}
	return nil
}

// managerMayTouch refuses a manager's change to target if target holds
// any permission (the manager themselves included).
// staffTarget reads the user a staff action is about, inside the action's
// transaction. For a manager (manager true) it checks first that they
// still hold manage_staff, and then that the user holds no permission.
func staffTarget(tx policy.Tx, a Actor, manager bool, username string) (policy.User, error) {
	if manager {
		if err := checkManager(tx, a); err != nil {
			return policy.User{}, err
		}
	}
	u, err := tx.User(username)
	if errors.Is(err, policy.ErrNotFound) {
		return u, notFound("user", err)
	}
	if err != nil {
		return u, err
	}
	return u, managerMayTouch(manager, u)
}

// StaffMember returns one user of account, with their live grants, as
// someone who may act on them sees them: a master any user, a manager (manage_staff) only a user
// holding no permission, as staffTarget decides for every staff action.
// The pages ask it before showing a confirmation, so that a page never
// offers what the action would refuse.
func (s *Service) StaffMember(ctx context.Context, a Actor, account, username string) (UserView, error) {
	_, manager, err := s.asStaffManager(ctx, a, account)
	if err != nil {
		return UserView{}, err
	}
	var v UserView
	err = s.view(ctx, account, func(tx policy.Tx) error {
		u, err := staffTarget(tx, a, manager, normalizeUsername(username))
		if err != nil {
			return err
		}
		rules, err := tx.Rules()
		v = userView(u)
		v.Grants = grantsOf(rules, u.Username, s.now())
		return err
	})
	return v, err
}

func managerMayTouch(manager bool, target policy.User) error {
	if manager && len(target.Permissions) > 0 {
		return errPermissionHolder
	}
	return nil
}

// vetPermissions checks names and returns them without repeats, in the
// order of policy.Permissions; nil for none.
func vetPermissions(names []string) ([]string, error) {
	if len(names) > len(policy.Permissions)*4 {
		return nil, badRequest(CodeInvalidPermission, "too many permissions")
	}
	var out []string
	for _, n := range names {
		if !slices.Contains(policy.Permissions, n) {
			return nil, badRequest(CodeInvalidPermission, "unknown permission %q; the permissions are %v", trimName(n), policy.Permissions)
		}
	}
	for _, p := range policy.Permissions {
		if slices.Contains(names, p) {
			out = append(out, p)
		}
	}
	return out, nil
}
