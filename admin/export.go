package admin

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// csvSafe makes a cell that a spreadsheet would run as a formula (it
// starts with =, +, -, @, a tab or a carriage return) plain text, with a
// leading apostrophe; a display name is whatever someone typed.
func csvSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

// StaffCSVHeader names the columns of WriteStaffCSV.
var StaffCSVHeader = []string{"username", "display_name", "active", "desktop_access", "must_reset_password",
	"permissions", "created_at", "last_login_at", "last_login_ip", "access_until", "offboarded_at", "web_access"}

// WriteStaffCSV writes account's whole staff list, deactivated users
// included (users are never deleted), as CSV for the owner's files: to the
// master and to a manager, like the staff list.
func (s *Service) WriteStaffCSV(ctx context.Context, a Actor, account string, w io.Writer) error {
	users, err := s.Users(ctx, a, account, true)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(StaffCSVHeader); err != nil {
		return fmt.Errorf("write staff csv: %w", err)
	}
	for _, u := range users {
		row := []string{u.Username, u.DisplayName, fmt.Sprint(u.Active), fmt.Sprint(u.DesktopAccess),
			fmt.Sprint(u.MustResetPassword), strings.Join(u.Permissions, " "), csvTime(u.CreatedAt),
			csvTime(u.LastLoginAt), u.LastLoginIP, csvTime(u.AccessUntil), csvTime(u.OffboardedAt), fmt.Sprint(u.WebAccess)}
		for i := range row {
			row[i] = csvSafe(row[i])
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write staff csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write staff csv: %w", err)
	}
	return nil
}

func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339)
}

// StaffCSVName is the file name the export is offered under.
func StaffCSVName(account string, now time.Time) string {
	return fmt.Sprintf("staff-%s-%s.csv", account, now.UTC().Format("2006-01-02"))
}

func (s *Server) staffCSV(w http.ResponseWriter, r *http.Request, c *call) error {
	var b strings.Builder
	acct := r.PathValue("acct")
	if err := s.svc.WriteStaffCSV(r.Context(), c.actor, acct, &b); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+StaffCSVName(acct, s.svc.now())+`"`)
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, b.String())
	return nil
}
