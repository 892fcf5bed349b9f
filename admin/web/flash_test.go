package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// Every flash message set is read back on the next page: up to maxFlash
// bytes whole, a longer one cut at a character boundary. A cookie longer
// than any set is ignored.
func TestFlashRoundTrip(t *testing.T) {
	for name, text := range map[string]string{
		"short":                      "Saved.",
		"at the limit":               strings.Repeat("a", maxFlash),
		"over, ASCII":                strings.Repeat("b", maxFlash+50),
		"over, cut in a rune":        strings.Repeat("é", maxFlash),
		"over, cut in a 4-byte rune": "x" + strings.Repeat("😀", maxFlash/4+10),
	} {
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			setFlash(rec, flashInfo, text)
			req := httptest.NewRequest("GET", "/", nil)
			for _, c := range rec.Result().Cookies() {
				req.AddCookie(c)
			}
			f := takeFlash(httptest.NewRecorder(), req)
			if f == nil {
				t.Fatalf("a flash of %d bytes was not read back", len(text))
			}
			if !utf8.ValidString(f.Text) || !strings.HasPrefix(text, f.Text) || len(f.Text) > maxFlash ||
				len(text) <= maxFlash && f.Text != text || len(f.Text) < maxFlash-3 && len(text) > maxFlash {
				t.Fatalf("read back %d bytes of %d: %q", len(f.Text), len(text), f.Text)
			}
		})
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: flashCookie, Value: strings.Repeat("A", maxFlashCookie+4)})
	if f := takeFlash(httptest.NewRecorder(), req); f != nil {
		t.Errorf("an oversized cookie was read: %+v", f)
	}
}
