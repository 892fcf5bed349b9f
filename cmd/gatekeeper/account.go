package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/config"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// accountCreateCmd creates an account. With the embedded store, a running
// "gatekeeper serve" holds the file's lock; then the account is created
// through that server's operator API instead (admin.addr, with the token
// from admin.operator_token_file), and if the admin API is off, the error
// says how to proceed.
func accountCreateCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("account create", stderr)
	path := fs.String("config", "", "configuration `file` naming the store")
	id := fs.String("account", "", "account `number` (letters, digits and -)")
	name := fs.String("name", "", "account `name`, e.g. \"Smith Studio\"")
	parent := fs.String("parent", "", "parent account `number`, for an enterprise's child account")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" || *id == "" {
		return usageError{"account create: -config and -account are required"}
	}
	c, err := config.Load(*path)
	if err != nil {
		return err
	}
	pw, generated, err := readPassword(stdin)
	if err != nil {
		return err
	}
	n := admin.NewAccount{ID: *id, Name: *name, Parent: *parent, Password: pw, Actor: "cli", Role: policy.RoleOperator}
	var a admin.AccountView
	st, err := openStore(ctx, c, nil, nil)
	switch {
	case errors.Is(err, boltstore.ErrLocked):
		// A running gatekeeper holds the embedded store: ask it instead.
		if a, err = createAccountViaAPI(ctx, c, n); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		defer st.Close()
		acct, err := admin.CreateAccount(ctx, st, n, password.Default, time.Now())
		if err != nil {
			return err
		}
		a = admin.AccountView{ID: acct.ID, Name: acct.Name}
	}
	fmt.Fprintf(stdout, "created account %s (%s), firewall on\n", a.ID, a.Name)
	if generated {
		fmt.Fprintf(stdout, "master password (shown once): %s\n", pw)
	}
	return nil
}

// readPassword reads the master password from stdin when it is piped in;
// when stdin is a terminal or empty it generates one.
func readPassword(stdin io.Reader) (pw string, generated bool, err error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return password.Generate(), true, nil
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, password.MaxLength+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", false, fmt.Errorf("read password from stdin: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return password.Generate(), true, nil
	}
	return line, false, nil
}

// createAccountViaAPI creates the account through the operator API of the
// gatekeeper that holds the store, on this machine. It connects to the
// admin listener's loopback address and checks the server's certificate
// against the configured certificate files, or, with ACME, against the
// CA for the first domain. A throwaway self-signed certificate cannot be
// checked; it is accepted only on a loopback address, where the port
// belongs to the running gatekeeper that holds the store's lock.
func createAccountViaAPI(ctx context.Context, c *config.Config, n admin.NewAccount) (admin.AccountView, error) {
	if c.Admin.Addr == "" {
		return admin.AccountView{}, fmt.Errorf("the store is in use by a running gatekeeper and its admin API is off (admin.addr is empty): " +
			"stop gatekeeper and run this again, or enable the admin API so that this command can use it")
	}
	token, err := admin.ReadOperatorToken(c.Admin.OperatorTokenFile)
	if err != nil {
		return admin.AccountView{}, fmt.Errorf("the store is in use by a running gatekeeper; creating the account through its admin API needs the operator token: %w", err)
	}
	host, port, err := net.SplitHostPort(c.Admin.Addr)
	if err != nil {
		return admin.AccountView{}, fmt.Errorf("admin.addr: %w", err)
	}
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		host = "127.0.0.1"
	}
	tc, err := operatorTLS(c.TLS, host)
	if err != nil {
		return admin.AccountView{}, err
	}
	body, _ := json.Marshal(map[string]string{"id": n.ID, "name": n.Name, "parent": n.Parent, "password": n.Password})
	url := "https://" + net.JoinHostPort(host, port) + "/api/v1/accounts"
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return admin.AccountView{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	res, err := client.Do(req)
	if err != nil {
		return admin.AccountView{}, fmt.Errorf("the store is in use by a running gatekeeper, whose admin API at %s did not answer: %w", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusCreated {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			return admin.AccountView{}, fmt.Errorf("create account %s through the running gatekeeper: %s (%s)", n.ID, e.Error.Message, e.Error.Code)
		}
		return admin.AccountView{}, fmt.Errorf("create account %s through the running gatekeeper: %s", n.ID, res.Status)
	}
	var out admin.CreatedAccount
	if err := json.Unmarshal(b, &out); err != nil {
		return admin.AccountView{}, fmt.Errorf("create account %s through the running gatekeeper: unreadable answer: %w", n.ID, err)
	}
	return out.Account, nil
}

// operatorTLS is how the CLI checks the admin listener's certificate.
func operatorTLS(c config.TLS, host string) (*tls.Config, error) {
	switch {
	case len(c.Certificates) > 0:
		var pins [][]byte
		for _, f := range c.Certificates {
			cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
			if err != nil {
				return nil, fmt.Errorf("read certificate %s: %w", f.Cert, err)
			}
			pins = append(pins, cert.Certificate[0])
		}
		return &tls.Config{
			// The configured certificate is pinned instead of checked by
			// name, since the connection goes to a loopback address.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				for _, p := range pins {
					if len(cs.PeerCertificates) > 0 && bytes.Equal(cs.PeerCertificates[0].Raw, p) {
						return nil
					}
				}
				return errors.New("the admin listener's certificate is not one of tls.certificates")
			},
		}, nil
	case c.ACME != nil && len(c.ACME.Domains) > 0:
		name := c.ACME.Domains[0]
		if rest, ok := strings.CutPrefix(name, "*."); ok {
			name = "gatekeeper." + rest // any name the wildcard covers
		}
		tc := &tls.Config{ServerName: name}
		if c.ACME.CARoot != "" {
			pem, err := os.ReadFile(c.ACME.CARoot)
			if err != nil {
				return nil, fmt.Errorf("tls.acme.ca_root: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			tc.RootCAs.AppendCertsFromPEM(pem)
		}
		return tc, nil
	}
	if a, err := netip.ParseAddr(host); err != nil || !a.IsLoopback() {
		return nil, fmt.Errorf("the admin listener at %s has a self-signed certificate, which cannot be checked off this machine; stop gatekeeper and run this again", host)
	}
	return &tls.Config{InsecureSkipVerify: true}, nil
}
