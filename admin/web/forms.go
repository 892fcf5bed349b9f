package web

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gatekeeper-dev/gatekeeper/admin"
)

// form is what a form shows again after an error: the values entered
// (never passwords) and the messages, by field; "" is the form as a whole.
type form struct {
	Values map[string]string
	Errors map[string]string
}

func newForm() *form { return &form{Values: map[string]string{}, Errors: map[string]string{}} }

// Value returns an entered value.
func (f *form) Value(k string) string {
	if f == nil {
		return ""
	}
	return f.Values[k]
}

// Error returns the message for a field.
func (f *form) Error(k string) string {
	if f == nil {
		return ""
	}
	return f.Errors[k]
}

// HasErrors reports whether any message is set.
func (f *form) HasErrors() bool { return f != nil && len(f.Errors) > 0 }

// fields says which field an error code concerns in one form. Codes it
// does not list become a message for the whole form when they are the
// user's to fix (400, 409, 429), and an error page otherwise.
type fields map[string]string

// place puts the Service's error err on f (and Retry-After on w), with the API's message. It
// returns the status to answer with, or false when err is not about the
// form and belongs on an error page. invalid_request messages that begin
// with a field's name ("note is longer than …") go next to that field.
func (fs fields) place(w http.ResponseWriter, f *form, err error) (int, bool) {
	var to redirect
	if errors.As(err, &to) {
		return 0, false
	}
	e := admin.AsError(err)
	if e.Status >= 500 {
		return 0, false
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if k, ok := fs[e.Code]; ok {
		f.Errors[k] = sentence(e.Msg)
		return e.Status, true
	}
	if e.Code == admin.CodeInvalidRequest {
		for code, k := range fs {
			if name, ok := strings.CutPrefix(code, "field:"); ok && strings.HasPrefix(e.Msg, name+" ") {
				f.Errors[k] = sentence(e.Msg)
				return e.Status, true
			}
		}
	}
	switch e.Status {
	case http.StatusBadRequest, http.StatusConflict, http.StatusTooManyRequests:
		f.Errors[""] = sentence(e.Msg)
		return e.Status, true
	}
	return 0, false
}

// sentence starts a message with a capital letter, for showing it on its
// own.
func sentence(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}
