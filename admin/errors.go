package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Error is a failure the client is told about: a status, a stable code and a
// message written for the person behind the client. Err, when set, is the
// detail for the log and is never sent.
type Error struct {
	Status int
	Code   string
	Msg    string
	Err    error
	// RetryAfter, when positive, is sent as Retry-After (seconds, rounded up).
	RetryAfter int
	// Factors, on otp_required only, names the second factors the login
	// may be completed with (policy.SecondFactor.Kinds), so that a client
	// asks for a code only of someone who has an authenticator app.
	Factors []string
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Msg, e.Err)
	}
	return e.Code + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Stable error codes. Clients may switch on them; the messages may change.
const (
	CodeInvalidRequest        = "invalid_request"
	CodeBodyTooLarge          = "body_too_large"
	CodeUnsupportedMediaType  = "unsupported_media_type"
	CodeUnauthorized          = "unauthorized"
	CodeInvalidCredentials    = "invalid_credentials"
	CodeWrongPassword         = "wrong_password"
	CodeOTPRequired           = "otp_required"
	CodeInvalidOTP            = "invalid_otp"
	CodeMFAUnavailable        = "mfa_unavailable"
	CodeMFAEnrollmentRequired = "mfa_enrollment_required"
	CodeForbidden             = "forbidden"
	CodePasswordResetRequired = "password_reset_required"
	CodeNoDesktopAccess       = "no_desktop_access"
	CodeNoWebAccess           = "no_web_access"
	CodeBadOrigin             = "bad_origin"
	CodeNotFound              = "not_found"
	CodeMethodNotAllowed      = "method_not_allowed"
	CodeConfirmationRequired  = "confirmation_required"
	CodeInvalidCIDR           = "invalid_cidr"
	CodeTooBroad              = "too_broad"
	CodeInvalidTTL            = "invalid_ttl"
	CodeUnknownSetting        = "unknown_setting"
	CodeInvalidSetting        = "invalid_setting"
	CodeInvalidNotifications  = "invalid_notifications"
	CodeApprovalRequired      = "approval_required"
	CodeApprovalNotRequired   = "approval_not_required"
	CodeNotPending            = "not_pending"
	CodeInvalidEnrollmentCode = "invalid_enrollment_code"
	CodeTooManyDevices        = "too_many_devices"
	CodeDeviceRefused         = "device_refused"
	CodeStaleSignature        = "stale_signature"
	CodeInvalidUsername       = "invalid_username"
	CodeGenericUsername       = "generic_username"
	CodeWeakPassword          = "weak_password"
	CodeInvalidEmail          = "invalid_email"
	CodeInvalidToken          = "invalid_token"
	CodeExists                = "already_exists"
	CodeConflict              = "conflict"
	CodeRateLimited           = "rate_limited"
	CodeUnknownClientIP       = "unknown_client_ip"
	CodeStoreLostData         = "store_lost_data"
	CodeStoreUnconfirmed      = "store_unconfirmed"
	CodeStoreUnavailable      = "store_unavailable"
	CodeTimeout               = "timeout"
	CodeInternal              = "internal_error"
)

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

func badRequest(code, format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, code, format, args...)
}

// Errors shared by many calls.
var (
	errUnauthorized = &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
		Msg: "log in first: the session is missing, has expired or has ended"}
	errForbidden = &Error{Status: http.StatusForbidden, Code: CodeForbidden,
		Msg: "you are not allowed to do this"}
	errResetRequired = &Error{Status: http.StatusForbidden, Code: CodePasswordResetRequired,
		Msg: "set a new password first (POST /api/v1/password)"}
	errEnrollRequired = &Error{Status: http.StatusForbidden, Code: CodeMFAEnrollmentRequired,
		Msg: "this account requires a second factor: enrol one first (POST /api/v1/me/mfa/totp)"}
	errNoDesktopAccess = &Error{Status: http.StatusForbidden, Code: CodeNoDesktopAccess,
		Msg: "your login does not have desktop access; ask the account holder"}
	errNotFound = &Error{Status: http.StatusNotFound, Code: CodeNotFound, Msg: "not found"}
	// errBadLogin is the one answer to a failed login, whatever was wrong.
	errBadLogin = &Error{Status: http.StatusUnauthorized, Code: CodeInvalidCredentials,
		Msg: "the account number, username or password is wrong"}
)

// notFound answers 404 and keeps err for the log.
func notFound(what string, err error) *Error {
	return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Msg: what + " not found", Err: err}
}

// AsError maps any error to what the client sees: an *Error as it is, the
// store's errors to their status, and everything else to a 500 whose
// detail only reaches the log. The API and the web pages both answer
// through it, so that they say the same thing.
func AsError(err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, policy.ErrNoData):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeStoreLostData,
			Msg: "the policy store has lost its data and refuses changes until an operator re-seeds it; nothing was changed", Err: err}
	case errors.Is(err, policy.ErrUnconfirmed):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeStoreUnconfirmed,
			Msg: "the change was sent to the policy store but not confirmed in time: it may have been applied, or not, or be lost in a failover; check, and try again if it is missing (a retry never applies it twice)", Err: err}
	case errors.Is(err, policy.ErrUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeStoreUnavailable,
			Msg: "the policy store is unavailable; nothing was changed, try again shortly", Err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeTimeout,
			Msg: "the request took too long; nothing was changed, try again", Err: err}
	case errors.Is(err, policy.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: CodeConflict,
			Msg: "someone else changed this at the same time; try again", Err: err}
	case errors.Is(err, policy.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Msg: "not found", Err: err}
	case errors.Is(err, policy.ErrExists):
		return &Error{Status: http.StatusConflict, Code: CodeExists, Msg: "it already exists", Err: err}
	case errors.Is(err, ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Msg: err.Error()}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal,
		Msg: "internal error; it has been logged", Err: err}
}
