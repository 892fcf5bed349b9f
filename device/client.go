package device

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// EnrollRequest is the body of POST /api/v1/devices/enroll.
type EnrollRequest struct {
	Code     string `json:"code"`
	Name     string `json:"name,omitempty"`
	Platform string `json:"platform,omitempty"`
	// PublicKey is a DER SubjectPublicKeyInfo; base64 in JSON.
	PublicKey []byte `json:"public_key"`
}

// APIError is an error answer of the admin API.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("the admin listener answered %d", e.Status)
	}
	return fmt.Sprintf("%s (%s, %d)", e.Message, e.Code, e.Status)
}

// Enroll makes a key pair here and registers its public half with code.
// The identity it returns holds the private key; the caller writes it.
func Enroll(ctx context.Context, hc *http.Client, adminURL, code, name, platform string) (Identity, error) {
	base, err := AdminBase(adminURL)
	if err != nil {
		return Identity{}, fmt.Errorf("admin URL: %w", err)
	}
	account, _, err := ParseCode(code)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: it looks like 10042.ABCD-EFGH-JKLM-NPQR", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Identity{}, fmt.Errorf("make device key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return Identity{}, fmt.Errorf("encode device key: %w", err)
	}
	body, _ := json.Marshal(EnrollRequest{Code: code, Name: name, Platform: platform, PublicKey: der})
	var d struct {
		ID      string `json:"id"`
		Account string `json:"account"`
		Status  string `json:"status"`
	}
	if err := call(ctx, hc, base.JoinPath("/api/v1/devices/enroll").String(), body, nil, &d); err != nil {
		return Identity{}, fmt.Errorf("enrol: %w", err)
	}
	if d.Account != account {
		return Identity{}, fmt.Errorf("enrol: the server enrolled the device in account %q, not %q", d.Account, account)
	}
	return Identity{AdminURL: base.String() + "/", Account: account, DeviceID: d.ID, Key: priv}, nil
}

// call POSTs a JSON body, with the headers given, and decodes a 2xx
// answer into out; any other answer is an *APIError.
func call(ctx context.Context, hc *http.Client, url string, body []byte, header http.Header, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("read the answer: %w", err)
	}
	if res.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		json.Unmarshal(b, &e)
		return &APIError{Status: res.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the answer is not what was expected: %w", err)
	}
	return nil
}

// LeasePath is the lease endpoint.
const LeasePath = "/api/v1/devices/lease"

// Lease is what the server answers a lease request with.
type Lease struct {
	Rule struct {
		ID        uint64    `json:"id"`
		CIDR      string    `json:"cidr"`
		ExpiresAt time.Time `json:"expires_at"`
	} `json:"rule"`
	Renewed bool `json:"renewed"`
}

// RequestLease asks the admin listener for a lease of the address it sees
// this computer at, over network ("tcp4", "tcp6", or "tcp" for either),
// signed with id's key. tc verifies the admin listener (nil: the system
// roots).
func RequestLease(ctx context.Context, id Identity, network string, tc *tls.Config) (Lease, error) {
	base, err := AdminBase(id.AdminURL)
	if err != nil {
		return Lease{}, fmt.Errorf("admin URL: %w", err)
	}
	var d net.Dialer
	tr := &http.Transport{
		TLSClientConfig:   tc,
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr) // the family the gate was reached over
		},
	}
	defer tr.CloseIdleConnections()
	body := []byte("{}")
	h := http.Header{"Authorization": {Sign(id, http.MethodPost, LeasePath, body, time.Now())}}
	var l Lease
	if err := call(ctx, &http.Client{Transport: tr}, base.JoinPath(LeasePath).String(), body, h, &l); err != nil {
		return Lease{}, fmt.Errorf("ask for a lease: %w", err)
	}
	return l, nil
}
