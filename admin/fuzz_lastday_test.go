package admin

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzParseAccessUntil fuzzes the last day as the API and the staff
// page's form send it. Whatever the text: no panic; a refusal is a 400
// invalid_access_until; a time is within the years it allows; one
// without a zone is read in the account's zone, and written in that zone
// it reads the same again. Seeds: the forms of TestLastDayForm, plus the files
// in testdata/fuzz/FuzzParseAccessUntil.
func FuzzParseAccessUntil(f *testing.F) {
	for _, s := range []string{"", "2027-03-31T18:00", "2027-03-31T18:00:30", "2027-03-31T18:00:00+02:00",
		"2027-03-31T18:00:00Z", "2027-03-31", "31/03/2027", "next friday", "2026-03-29T02:30", "0001-01-01T00:00",
		"9999-12-31T23:59", "2027-13-01T00:00", strings.Repeat("9", 80)} {
		f.Add(s)
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, loc := range []*time.Location{nil, berlin} {
			got, err := ParseAccessUntil(v, loc)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Code != CodeInvalidAccessUntil {
					t.Fatalf("%q: error %#v", v, err)
				}
				continue
			}
			if v == "" {
				if !got.IsZero() {
					t.Fatalf("empty gives %v", got)
				}
				continue
			}
			if got.Year() < 2000 || got.Year() > 9999 {
				t.Fatalf("%q: %v out of range", v, got)
			}
			if _, zoned := time.Parse(time.RFC3339, v); zoned != nil {
				if loc == nil {
					t.Fatalf("%q without a zone accepted by the API", v)
				}
				// It writes back in loc as a time that reads the same.
				back := got.In(loc).Format("2006-01-02T15:04:05")
				if again, err := ParseAccessUntil(back, loc); err != nil || !again.Equal(got) {
					t.Fatalf("%q read as %v, writes back as %s, read again as %v %v", v, got, back, again, err)
				}
			}
		}
	})
}
