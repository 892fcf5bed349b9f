package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/device"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// The JSON bodies the API accepts. Durations are strings ("90m", "12h").
type (
	passwordBody struct {
		Current string `json:"current"`
		New     string `json:"new"`
	}
	unblockBody struct {
		TTL policy.Duration `json:"ttl"`
	}
	modeBody struct {
		Mode    string `json:"mode"`
		Confirm bool   `json:"confirm"`
	}
	ruleBody struct {
		CIDR    string          `json:"cidr"`
		Note    string          `json:"note"`
		TTL     policy.Duration `json:"ttl"`
		Confirm bool            `json:"confirm"`
	}
	userBody struct {
		Username    string   `json:"username"`
		DisplayName string   `json:"display_name"`
		Password    string   `json:"password"`
		Permissions []string `json:"permissions"`
		AccessUntil string   `json:"access_until"`
		WebAccess   bool     `json:"web_access"`
	}
	patchBody struct {
		Active            *bool     `json:"active"`
		DesktopAccess     *bool     `json:"desktop_access"`
		WebAccess         *bool     `json:"web_access"`
		MustResetPassword *bool     `json:"must_reset_password"`
		Permissions       *[]string `json:"permissions"`
		AccessUntil       *string   `json:"access_until"`
	}
	devicePatchBody struct {
		Active   *bool `json:"active"`
		Approved *bool `json:"approved"`
	}
	enrollmentBody struct {
		Name string `json:"name"`
	}
	accountBody struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		Parent   string `json:"parent"`
		Password string `json:"password"`
	}
)

// routes is the API. Every route but login needs a bearer token; what
// each identity may do is decided by the Service.
func (s *Server) routes() []route {
	return []route{
		{pattern: "POST /api/v1/login", public: true, h: s.login},
		{pattern: "POST /api/v1/logout", held: true, h: s.logout},
		{pattern: "POST /api/v1/password", held: true, h: s.password},
		{pattern: "GET /api/v1/me", held: true, h: s.me},
		{pattern: "POST /api/v1/me/mfa/totp", held: true, h: s.beginTOTP},
		{pattern: "POST /api/v1/me/mfa/totp/confirm", held: true, h: s.confirmTOTP},
		{pattern: "DELETE /api/v1/me/mfa/totp", held: true, h: s.removeTOTP},
		{pattern: "POST /api/v1/password/forgot", public: true, h: s.forgotPassword},
		{pattern: "POST /api/v1/password/reset", public: true, h: s.resetPassword},
		{pattern: "POST /api/v1/email/confirm", public: true, h: s.confirmEmail},
		{pattern: "GET /api/v1/me/email", h: s.myEmail},
		{pattern: "PUT /api/v1/me/email", h: s.setMyEmail},
		{pattern: "PUT /api/v1/accounts/{acct}/users/{username}/email", h: s.setUserEmail},
		{pattern: "POST /api/v1/me/passkeys/register/begin", held: true, h: s.beginPasskeyRegistration},
		{pattern: "POST /api/v1/me/passkeys/register/finish", held: true, h: s.finishPasskeyRegistration},
		{pattern: "GET /api/v1/me/passkeys", held: true, h: s.passkeys},
		{pattern: "DELETE /api/v1/me/passkeys/{id}", h: s.removePasskey},
		{pattern: "PATCH /api/v1/me/passkeys/{id}", h: s.renamePasskey},
		{pattern: "POST /api/v1/login/passkey/begin", public: true, h: s.beginPasskeyLogin},
		{pattern: "POST /api/v1/login/passkey/finish", public: true, h: s.finishPasskeyLogin},
		{pattern: "DELETE /api/v1/me/grants/{id}", h: s.deleteGrant},
		{pattern: "GET /api/v1/me/sessions", h: s.mySessions},
		{pattern: "DELETE /api/v1/me/sessions/{id}", h: s.endMySession},
		{pattern: "GET /api/v1/accounts/{acct}/sessions", h: s.accountSessions},
		{pattern: "DELETE /api/v1/accounts/{acct}/sessions/{id}", h: s.endAccountSession},
		{pattern: "POST /api/v1/me/devices", h: s.createEnrollment},
		{pattern: "POST /api/v1/devices/enroll", public: true, h: s.enroll},
		{pattern: "POST /api/v1/devices/lease", device: true, h: s.lease},
		{pattern: "GET /api/v1/me/devices", h: s.myDevices},
		{pattern: "PATCH /api/v1/me/devices/{id}", h: s.updateMyDevice},
		{pattern: "GET /api/v1/accounts/{acct}/devices", h: s.devices},
		{pattern: "PATCH /api/v1/accounts/{acct}/devices/{id}", h: s.updateDevice},
		{pattern: "POST /api/v1/accounts/{acct}/unblock", h: s.unblock},
		{pattern: "GET /api/v1/accounts/{acct}/firewall", h: s.firewall},
		{pattern: "PUT /api/v1/accounts/{acct}/firewall/mode", h: s.setMode},
		{pattern: "POST /api/v1/accounts/{acct}/firewall/rules", h: s.addRule},
		{pattern: "DELETE /api/v1/accounts/{acct}/firewall/rules/{id}", h: s.deleteRule},
		{pattern: "GET /api/v1/accounts/{acct}/users", h: s.users},
		{pattern: "GET /api/v1/accounts/{acct}/users/export.csv", h: s.staffCSV},
		{pattern: "POST /api/v1/accounts/{acct}/users", h: s.createUser},
		{pattern: "PATCH /api/v1/accounts/{acct}/users/{username}", h: s.updateUser},
		{pattern: "POST /api/v1/accounts/{acct}/users/{username}/offboard", h: s.offboard},
		{pattern: "GET /api/v1/accounts/{acct}/users/{username}/offboarding", h: s.offboardingReceipt},
		{pattern: "POST /api/v1/accounts/{acct}/users/reset-passwords", h: s.resetPasswords},
		{pattern: "POST /api/v1/accounts/{acct}/users/{username}/password", h: s.temporaryPassword},
		{pattern: "POST /api/v1/accounts/{acct}/master/password", h: s.masterPassword},
		{pattern: "DELETE /api/v1/accounts/{acct}/users/{username}/mfa", h: s.clearUserFactor},
		{pattern: "DELETE /api/v1/accounts/{acct}/master/mfa", h: s.clearMasterFactor},
		{pattern: "GET /api/v1/accounts/{acct}/review", h: s.review},
		{pattern: "POST /api/v1/accounts/{acct}/review", h: s.finishReview},
		{pattern: "GET /api/v1/accounts/{acct}/audit", h: s.audit},
		{pattern: "GET /api/v1/accounts/{acct}/settings", h: s.settings},
		{pattern: "PATCH /api/v1/accounts/{acct}/settings", h: s.updateSettings},
		{pattern: "GET /api/v1/accounts/{acct}/notifications", h: s.notifications},
		{pattern: "PUT /api/v1/accounts/{acct}/notifications", h: s.setNotifications},
		{pattern: "POST /api/v1/accounts/{acct}/notifications/test", h: s.testNotifications},
		{pattern: "POST /api/v1/accounts/{acct}/access-requests", h: s.requestAccess},
		{pattern: "GET /api/v1/accounts/{acct}/access-requests", h: s.accessRequests},
		{pattern: "POST /api/v1/accounts/{acct}/access-requests/{id}/approve", h: s.approveRequest},
		{pattern: "POST /api/v1/accounts/{acct}/access-requests/{id}/deny", h: s.denyRequest},
		{pattern: "GET /api/v1/me/access-requests", h: s.myAccessRequests},
		{pattern: "POST /api/v1/accounts", h: s.createAccount},
		{pattern: "GET /api/v1/accounts", h: s.accounts},
	}
}

func (s *Server) login(w http.ResponseWriter, r *http.Request, c *call) error {
	var b LoginRequest
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	b.UserAgent = r.UserAgent()
	res, err := s.svc.Login(r.Context(), b, c.ip)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := s.svc.Logout(r.Context(), c.actor); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) password(w http.ResponseWriter, r *http.Request, c *call) error {
	var b passwordBody
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	res, err := s.svc.ChangePassword(r.Context(), c.actor, b.Current, b.New)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) me(w http.ResponseWriter, r *http.Request, c *call) error {
	me, err := s.svc.Me(r.Context(), c.actor)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, me)
	return nil
}

func (s *Server) deleteGrant(w http.ResponseWriter, r *http.Request, c *call) error {
	id, err := ruleID(r)
	if err != nil {
		return err
	}
	if err := s.svc.DeleteGrant(r.Context(), c.actor, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) unblock(w http.ResponseWriter, r *http.Request, c *call) error {
	var b unblockBody
	if err := readBody(r, &b, true); err != nil {
		return err
	}
	g, err := s.svc.Unblock(r.Context(), c.actor, r.PathValue("acct"), time.Duration(b.TTL))
	if errors.Is(err, errApprovalRequired) {
		// unblock: approval turns the unblock into a request.
		v, _, err := s.svc.RequestAccess(r.Context(), c.actor, r.PathValue("acct"), "", time.Duration(b.TTL))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusAccepted, map[string]any{"request": v})
		return nil
	}
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if g.Renewed {
		status = http.StatusOK
	}
	writeJSON(w, status, g)
	return nil
}

func (s *Server) firewall(w http.ResponseWriter, r *http.Request, c *call) error {
	fw, err := s.svc.Firewall(r.Context(), c.actor, r.PathValue("acct"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, fw)
	return nil
}

func (s *Server) setMode(w http.ResponseWriter, r *http.Request, c *call) error {
	var b modeBody
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	res, err := s.svc.SetMode(r.Context(), c.actor, r.PathValue("acct"), b.Mode, b.Confirm)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) addRule(w http.ResponseWriter, r *http.Request, c *call) error {
	var b ruleBody
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	rule, err := s.svc.AddRule(r.Context(), c.actor, r.PathValue("acct"), b.newRule())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, rule)
	return nil
}

func (b ruleBody) newRule() NewRule {
	return NewRule{CIDR: b.CIDR, Note: b.Note, TTL: time.Duration(b.TTL), Confirm: b.Confirm}
}

func (s *Server) deleteRule(w http.ResponseWriter, r *http.Request, c *call) error {
	id, err := ruleID(r)
	if err != nil {
		return err
	}
	if err := s.svc.DeleteRule(r.Context(), c.actor, r.PathValue("acct"), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) users(w http.ResponseWriter, r *http.Request, c *call) error {
	all := false
	if v := r.URL.Query().Get("include_inactive"); v != "" {
		var err error
		if all, err = strconv.ParseBool(v); err != nil {
			return badRequest(CodeInvalidRequest, "include_inactive must be true or false")
		}
	}
	us, err := s.svc.Users(r.Context(), c.actor, r.PathValue("acct"), all)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Users []UserView `json:"users"`
	}{us})
	return nil
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, c *call) error {
	var b userBody
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	n, err := b.newUser()
	if err != nil {
		return err
	}
	u, err := s.svc.CreateUser(r.Context(), c.actor, r.PathValue("acct"), n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, u)
	return nil
}

func (b userBody) newUser() (NewUser, error) {
	until, err := parseAccessUntil(b.AccessUntil)
	return NewUser{Username: b.Username, DisplayName: b.DisplayName, Password: b.Password, Permissions: b.Permissions,
		AccessUntil: until, WebAccess: b.WebAccess}, err
}

func (s *Server) updateUser(w http.ResponseWriter, r *http.Request, c *call) error {
	var b patchBody
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	p, err := b.patch()
	if err != nil {
		return err
	}
	res, err := s.svc.UpdateUser(r.Context(), c.actor, r.PathValue("acct"), r.PathValue("username"), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (b patchBody) patch() (UserPatch, error) {
	p := UserPatch{Active: b.Active, DesktopAccess: b.DesktopAccess, WebAccess: b.WebAccess,
		MustResetPassword: b.MustResetPassword, Permissions: b.Permissions}
	if b.AccessUntil != nil {
		until, err := parseAccessUntil(*b.AccessUntil)
		if err != nil {
			return p, err
		}
		p.AccessUntil = &until
	}
	return p, nil
}

func (s *Server) offboard(w http.ResponseWriter, r *http.Request, c *call) error {
	res, err := s.svc.Offboard(r.Context(), c.actor, r.PathValue("acct"), r.PathValue("username"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// newPasswordBody sets someone else's password: the one given, or, when
// the body or the field is empty, one generated and shown once.
type newPasswordBody struct {
	Password string `json:"password"`
}

func (s *Server) temporaryPassword(w http.ResponseWriter, r *http.Request, c *call) error {
	var b newPasswordBody
	if err := readBody(r, &b, true); err != nil {
		return err
	}
	res, err := s.svc.SetTemporaryPassword(r.Context(), c.actor, r.PathValue("acct"), r.PathValue("username"), b.Password)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) masterPassword(w http.ResponseWriter, r *http.Request, c *call) error {
	var b newPasswordBody
	if err := readBody(r, &b, true); err != nil {
		return err
	}
	res, err := s.svc.ResetMasterPassword(r.Context(), c.actor, r.PathValue("acct"), b.Password)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) resetPasswords(w http.ResponseWriter, r *http.Request, c *call) error {
	res, err := s.svc.ResetPasswords(r.Context(), c.actor, r.PathValue("acct"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request, c *call) error {
	q := r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return badRequest(CodeInvalidRequest, "limit must be a number")
		}
		limit = n
	}
	before := q.Get("before")
	if len(before) > 64 {
		return badRequest(CodeInvalidRequest, "before is not an audit entry ID")
	}
	page, err := s.svc.Audit(r.Context(), c.actor, r.PathValue("acct"),
		AuditQuery{Limit: limit, Before: before, User: q.Get("user")})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) settings(w http.ResponseWriter, r *http.Request, c *call) error {
	set, err := s.svc.Settings(r.Context(), c.actor, r.PathValue("acct"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, set)
	return nil
}

func (s *Server) updateSettings(w http.ResponseWriter, r *http.Request, c *call) error {
	var patch map[string]json.RawMessage
	if err := readBody(r, &patch, false); err != nil {
		return err
	}
	set, err := s.svc.UpdateSettings(r.Context(), c.actor, r.PathValue("acct"), patch)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, set)
	return nil
}

func (s *Server) createEnrollment(w http.ResponseWriter, r *http.Request, c *call) error {
	var b enrollmentBody
	if err := readBody(r, &b, true); err != nil {
		return err
	}
	code, err := s.svc.CreateEnrollment(r.Context(), c.actor, b.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, code)
	return nil
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request, c *call) error {
	var b EnrollRequest
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	d, err := s.svc.Enroll(r.Context(), c.ip, b)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, d)
	return nil
}

func (s *Server) myDevices(w http.ResponseWriter, r *http.Request, c *call) error {
	ds, err := s.svc.MyDevices(r.Context(), c.actor)
	return writeDevices(w, ds, err)
}

func (s *Server) devices(w http.ResponseWriter, r *http.Request, c *call) error {
	ds, err := s.svc.Devices(r.Context(), c.actor, r.PathValue("acct"))
	return writeDevices(w, ds, err)
}

func writeDevices(w http.ResponseWriter, ds []DeviceView, err error) error {
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Devices []DeviceView `json:"devices"`
	}{ds})
	return nil
}

func (s *Server) updateMyDevice(w http.ResponseWriter, r *http.Request, c *call) error {
	return s.patchDevice(w, r, c, "", true)
}

func (s *Server) updateDevice(w http.ResponseWriter, r *http.Request, c *call) error {
	return s.patchDevice(w, r, c, r.PathValue("acct"), false)
}

func (s *Server) patchDevice(w http.ResponseWriter, r *http.Request, c *call, account string, own bool) error {
	var b devicePatchBody
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	res, err := s.svc.UpdateDevice(r.Context(), c.actor, account, r.PathValue("id"), own,
		DevicePatch{Active: b.Active, Approved: b.Approved})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// lease answers a device's signed request. The body is read as it came,
// for the signature; what it holds does not matter.
func (s *Server) lease(w http.ResponseWriter, r *http.Request, c *call) error {
	sg, err := device.ParseAuth(r.Header.Get("Authorization"))
	if err != nil {
		s.svc.leaseRequests.WithLabelValues("bad_signature").Inc()
		return errBadSignature
	}
	body, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errorf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "the body is larger than %d bytes", mbe.Limit)
	}
	if err != nil {
		return badRequest(CodeInvalidRequest, "the body could not be read")
	}
	res, err := s.svc.Lease(r.Context(), c.ip, LeaseRequest{Signed: sg, Method: r.Method, Path: r.URL.Path, Body: body})
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if res.Renewed {
		status = http.StatusOK
	}
	writeJSON(w, status, res)
	return nil
}

func (s *Server) createAccount(w http.ResponseWriter, r *http.Request, c *call) error {
	if c.actor.Role != policy.RoleOperator {
		return errForbidden // before reading a body that is not for them
	}
	var b accountBody
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	res, err := s.svc.CreateAccount(r.Context(), c.actor, b.newAccount())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, res)
	return nil
}

func (b accountBody) newAccount() NewAccount {
	return NewAccount{ID: b.ID, Name: b.Name, Parent: b.Parent, Password: b.Password}
}

func (s *Server) accounts(w http.ResponseWriter, r *http.Request, c *call) error {
	as, err := s.svc.Accounts(r.Context(), c.actor)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Accounts []AccountView `json:"accounts"`
	}{as})
	return nil
}

func ruleID(r *http.Request) (policy.RuleID, error) {
	n, err := strconv.ParseUint(r.PathValue("id"), 10, 32)
	if err != nil || n == 0 {
		return 0, notFound("rule", nil)
	}
	return policy.RuleID(n), nil
}
