package assertion_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/assertion"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// An application behind an http listener learns who it serves with WhoIs
// (app_test.go, the README's snippet), checking the assertion gatekeeper
// sends against the listener's JWKS.
func Example_application() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "assertion")
	defer os.RemoveAll(dir)
	st, err := boltstore.Open(filepath.Join(dir, "gk.db"), boltstore.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()
	key := []byte(strings.Repeat("k", 32)) // admin.SecretsKey in the binary
	signer, err := assertion.New(ctx, assertion.Options{Store: st, SecretsKey: key})
	if err != nil {
		fmt.Println(err)
		return
	}
	listener := httptest.NewServer(signer.JWKS()) // served at assertion.JWKSPath
	defer listener.Close()

	tok, _ := signer.Assert(ctx, "10042", "alice", "https://app.example.com")
	r, _ := http.NewRequest("GET", "https://app.example.com/orders", nil)
	r.Header.Set(assertion.Header, tok)

	keys := &Keys{URL: listener.URL + assertion.JWKSPath}
	user, account, err := WhoIs(r, keys, "https://app.example.com")
	fmt.Println(user, account, err)
	_, _, err = WhoIs(r, keys, "https://other.example.com")
	fmt.Println(err)
	// Output:
	// alice 10042 <nil>
	// assertion not for this application, or expired
}

// TestREADMEShowsApp keeps the README's snippet the one that compiles here.
func TestREADMEShowsApp(t *testing.T) {
	src, err := os.ReadFile("app_test.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	code := string(src)
	code = code[strings.Index(code, "import ("):]
	if !strings.Contains(string(readme), code) {
		t.Errorf("README.md does not show assertion/app_test.go from its imports on; copy it in")
	}
}
