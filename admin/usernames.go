package admin

import (
	"net/http"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// usernamePattern: lower-case letters, digits, '.', '_' and '-', starting
// with a letter or digit, 2 to 64 characters. Usernames are compared and
// stored in lower case.
var usernamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,63}$`)

// isGeneric reports whether name names a role, a place or a shared login
// rather than a person, once '.', '_' and '-' and trailing digits are gone
// ("front-desk", "reception2"). A shared login defeats per-user grants and
// offboarding. "master" and "operator" are also the names the audit trail
// uses for those roles, so no user may take them. A name of digits only is
// refused too.
func isGeneric(name string) bool {
	base := strings.Map(func(r rune) rune {
		if r == '.' || r == '_' || r == '-' {
			return -1
		}
		return r
	}, name)
	base = strings.TrimRightFunc(base, unicode.IsDigit)
	switch base {
	case "",
		"reception", "receptionist", "frontdesk", "desk", "frontoffice", "backoffice",
		"office", "officemanager", "manager", "salesmanager", "sales", "management", "staff",
		"team", "employee", "employees", "worker", "admin", "administrator", "administration",
		"sysadmin", "root", "superuser", "master", "operator", "owner", "user", "users",
		"guest", "guests", "visitor", "test", "tester", "testing", "testuser", "demo", "temp",
		"temporary", "info", "information", "contact", "support", "helpdesk", "service",
		"services", "it", "shop", "store", "studio", "clinic", "practice", "salon", "spa",
		"gym", "lab", "pharmacy", "shared", "common", "general", "default", "public", "all",
		"everyone", "anyone", "nobody", "account", "accounts", "accounting", "accountant",
		"billing", "finance", "payroll", "hr", "nurse", "doctor", "dentist", "assistant",
		"secretary", "cashier", "checkout", "register", "till", "kiosk", "counter", "lobby",
		"waiting", "workstation", "computer", "pc", "laptop", "desktop", "server", "hello",
		"mail", "email", "noreply", "postmaster", "webmaster":
		return true
	}
	return false
}

// normalizeUsername lower-cases and trims a username as typed.
func normalizeUsername(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// vetUsername checks a new username.
func vetUsername(name string) error {
	if !usernamePattern.MatchString(name) {
		return badRequest(CodeInvalidUsername,
			"a username is 2 to 64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if isGeneric(name) {
		return badRequest(CodeGenericUsername,
			"%q does not name a person: give each employee their own login, e.g. \"jane.smith\"", name)
	}
	return nil
}

// vetText checks a free-text field (a note, a display name): valid UTF-8,
// no control characters, at most max bytes.
func vetText(field, s string, max int) error {
	if len(s) > max {
		return errorf(http.StatusBadRequest, CodeInvalidRequest, "%s is longer than %d bytes", field, max)
	}
	if !utf8.ValidString(s) {
		return errorf(http.StatusBadRequest, CodeInvalidRequest, "%s is not valid UTF-8", field)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return errorf(http.StatusBadRequest, CodeInvalidRequest, "%s contains a control character", field)
		}
	}
	return nil
}
