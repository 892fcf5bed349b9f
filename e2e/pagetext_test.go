package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// pageText returns the text of the body of tab's page. A query that meets
// the document being replaced under it (the browser answers "No node with
// given id found" when the body it found is gone) is asked again, a few
// times: what it then reads is the page that stays. Any other error fails
// the test.
func pageText(t *testing.T, tab context.Context) string {
	t.Helper()
	var err error
	for range 5 {
		var s string
		if s, err = chromedp.Run(tab, chromedp.Text(chromedp.CSS("body"))); err == nil {
			return s
		}
		if !strings.Contains(err.Error(), "No node with given id found") {
			break
		}
	}
	t.Fatal(err)
	return ""
}
