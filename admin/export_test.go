package admin

import (
	"encoding/csv"
	"strings"
	"testing"
)

// TestStaffCSV: the export lists everyone, deactivated users included, and
// a display name that a spreadsheet would run as a formula comes out as
// text.
func TestStaffCSV(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	mtok := f.token(master)
	for i, name := range []string{"=HYPERLINK(\"http://evil\",\"x\")", "+1 Sales", "-2", "@SUM(A1)", "Dave Miller"} {
		un := []string{"eve.one", "eve.two", "eve.three", "eve.four", "dave.miller"}[i]
		if r := f.req("POST", "/api/v1/accounts/10042/users", mtok, userBody{Username: un, DisplayName: name, Password: "an-initial-pw-123"}); r.status != 201 {
			t.Fatalf("create %q: %d %s", name, r.status, r.body)
		}
	}
	if r := f.req("POST", "/api/v1/accounts/10042/users/bob/offboard", mtok, nil); r.status != 200 {
		t.Fatalf("offboard: %d %s", r.status, r.body)
	}
	r := f.req("GET", "/api/v1/accounts/10042/users/export.csv", mtok, nil)
	if r.status != 200 || r.header.Get("Content-Type") != "text/csv; charset=utf-8" ||
		!strings.HasPrefix(r.header.Get("Content-Disposition"), `attachment; filename="staff-10042-`) {
		t.Fatalf("export: %d %v", r.status, r.header)
	}
	rows, err := csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rows[0], ",") != strings.Join(StaffCSVHeader, ",") || len(rows) != 1+3+5 {
		t.Fatalf("rows: %q", rows)
	}
	names := map[string]bool{}
	bob := false
	for _, row := range rows[1:] {
		names[row[1]] = true
		if row[0] == "bob" {
			bob = true
			if row[2] != "false" || row[10] == "" {
				t.Errorf("bob, offboarded: %q", row)
			}
		}
		for _, cell := range row {
			if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
				t.Errorf("a cell a spreadsheet would run: %q", cell)
			}
		}
	}
	if !bob {
		t.Error("the offboarded user is not in the export")
	}
	for _, want := range []string{`'=HYPERLINK("http://evil","x")`, "'+1 Sales", "'-2", "'@SUM(A1)", "Dave Miller"} {
		if !names[want] {
			t.Errorf("no display name %q in %v", want, names)
		}
	}
}

func FuzzCSVSafe(f *testing.F) {
	for _, s := range []string{"=1+1", "+", "-", "@", "\tx", "\rx", "plain", "", "'=already"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := csvSafe(s)
		if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
			t.Fatalf("csvSafe(%q) = %q", s, v)
		}
		if v != s && v != "'"+s {
			t.Fatalf("csvSafe(%q) = %q changed more than a prefix", s, v)
		}
	})
}
