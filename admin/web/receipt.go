package web

import (
	"io"
	"net/http"
	"strings"

	"github.com/gatekeeper-dev/gatekeeper/admin"
)

// offboardingPage is the printable receipt of a user's last offboarding:
// plain HTML, print CSS, no script.
func (p *Pages) offboardingPage(w http.ResponseWriter, r *http.Request, c *call) error {
	pg, err := p.staffPage(r, c, sectionUsers, "Offboarding receipt")
	if err != nil {
		return err
	}
	rec, err := p.svc.OffboardingReceipt(r.Context(), c.actor, pg.AccountID, r.PathValue("username"))
	if err != nil {
		return err
	}
	pg.Data = rec
	p.render(w, r, http.StatusOK, "offboarding", pg)
	return nil
}

// staffCSV is the staff list, deactivated users included, as a CSV file.
func (p *Pages) staffCSV(w http.ResponseWriter, r *http.Request, c *call) error {
	var b strings.Builder
	acct := r.PathValue("acct")
	if err := p.svc.WriteStaffCSV(r.Context(), c.actor, acct, &b); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+admin.StaffCSVName(acct, p.opts.Now())+`"`)
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, b.String())
	return nil
}
