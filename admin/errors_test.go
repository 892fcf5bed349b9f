package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

func TestAsErrorMapsStoreErrors(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		// A store that lost its data says so, though it is also "unavailable".
		{fmt.Errorf("update 10042: %w: %w", policy.ErrUnavailable, policy.ErrNoData), http.StatusServiceUnavailable, CodeStoreLostData},
		{fmt.Errorf("update 10042: %w", policy.ErrUnavailable), http.StatusServiceUnavailable, CodeStoreUnavailable},
		{fmt.Errorf("update 10042: %w: %w", policy.ErrUnavailable, policy.ErrUnconfirmed), http.StatusServiceUnavailable, CodeStoreUnconfirmed},
		{fmt.Errorf("update 10042: %w", context.DeadlineExceeded), http.StatusServiceUnavailable, CodeTimeout},
		{fmt.Errorf("update 10042: %w", policy.ErrConflict), http.StatusConflict, CodeConflict},
		{fmt.Errorf("rule 7: %w", policy.ErrNotFound), http.StatusNotFound, CodeNotFound},
		{errors.New("something unexpected"), http.StatusInternalServerError, ""},
	} {
		e := AsError(tc.err)
		if e.Status != tc.status || (tc.code != "" && e.Code != tc.code) {
			t.Errorf("AsError(%v) = %d %s, want %d %s", tc.err, e.Status, e.Code, tc.status, tc.code)
		}
		if tc.status == http.StatusInternalServerError && e.Msg == tc.err.Error() {
			t.Errorf("internal error detail %q reached the client message", tc.err)
		}
	}
}
