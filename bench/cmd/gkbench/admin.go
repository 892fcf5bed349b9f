package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// adminClient calls one gatekeeper's admin API (docs/admin-api.md).
type adminClient struct {
	base  string // https://127.0.0.1:port
	token string
	hc    *http.Client
}

func newAdminClient(addr, token string) *adminClient {
	return &adminClient{
		base:  "https://" + addr,
		token: token,
		hc: &http.Client{
			Timeout: 15 * time.Second,
			// The bench certificate is self-signed; the connection never
			// leaves loopback.
			Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 4},
		},
	}
}

func (a *adminClient) with(token string) *adminClient {
	c := *a
	c.token = token
	return &c
}

// call sends body (JSON, if not nil) and decodes the answer into out (if
// not nil); an answer other than want is an error.
func (a *adminClient) call(ctx context.Context, method, path string, body, out any, want int) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// createAccount creates an account with a master password (as the
// operator) unless it exists, and returns a client logged in as its
// master.
func (a *adminClient) createAccount(ctx context.Context, id, password string) (*adminClient, error) {
	err := a.call(ctx, http.MethodPost, "/api/v1/accounts", map[string]string{"id": id, "name": id, "password": password}, nil, http.StatusCreated)
	if err != nil && !strings.Contains(err.Error(), "already_exists") {
		return nil, err
	}
	var login struct {
		Token string `json:"token"`
	}
	if err := a.with("").call(ctx, http.MethodPost, "/api/v1/login", map[string]string{"account": id, "password": password}, &login, http.StatusOK); err != nil {
		return nil, err
	}
	return a.with(login.Token), nil
}

// addRule allows cidr for account and returns the rule's id.
func (a *adminClient) addRule(ctx context.Context, account, cidr string) (string, error) {
	var rule struct {
		ID json.RawMessage `json:"id"`
	}
	err := a.call(ctx, http.MethodPost, "/api/v1/accounts/"+account+"/firewall/rules",
		map[string]string{"cidr": cidr, "note": "gkbench"}, &rule, http.StatusCreated)
	if err != nil {
		return "", err
	}
	return strings.Trim(string(rule.ID), `"`), nil
}

func (a *adminClient) deleteRule(ctx context.Context, account, id string) error {
	return a.call(ctx, http.MethodDelete, "/api/v1/accounts/"+account+"/firewall/rules/"+id, nil, nil, http.StatusNoContent)
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
