package web

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/gatekeeper-dev/gatekeeper/admin"
)

// reviewPage is the account's access review: one list, one button, usable
// on a phone.
func (p *Pages) reviewPage(w http.ResponseWriter, r *http.Request, c *call) error {
	pg, err := p.masterPage(r, c, sectionUsers, "Access review")
	if err != nil {
		return err
	}
	rv, err := p.svc.Review(r.Context(), c.actor, pg.Account.ID)
	if err != nil {
		return err
	}
	pg.Data = rv
	p.render(w, r, http.StatusOK, "review", pg)
	return nil
}

// finishReview takes away what is ticked and keeps the rest.
func (p *Pages) finishReview(w http.ResponseWriter, r *http.Request, c *call) error {
	acct := r.PathValue("acct")
	var remove []admin.ReviewRef
	for _, v := range r.PostForm["remove"] {
		kind, id, ok := strings.Cut(v, ":")
		if !ok {
			return &admin.Error{Status: http.StatusBadRequest, Code: admin.CodeInvalidRequest, Msg: "a ticked item is not kind:id"}
		}
		remove = append(remove, admin.ReviewRef{Kind: kind, ID: id})
	}
	res, err := p.svc.FinishReview(r.Context(), c.actor, acct, remove)
	if err != nil {
		return err
	}
	setFlash(w, flashOK, fmt.Sprintf("Review finished: %s removed, %s kept. The next one is due %s.",
		count(len(res.Removed), "item"), count(len(res.Kept), "item"), p.clock(c.actor.TimeZone).short(res.NextDueAt)))
	return redirectTo(accountPath(acct, "review"))
}
