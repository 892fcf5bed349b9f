package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// SignatureHeader is the header a webhook's signature travels in.
const SignatureHeader = "Gatekeeper-Signature"

// Sign returns the Gatekeeper-Signature value of body sent at t:
// "t=UNIX,v1=HEX(HMAC-SHA256(secret, "UNIX.body"))".
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Verify checks a Gatekeeper-Signature header against body, as a receiver
// does, and that it was made within tolerance of now.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, v1 string
	for _, part := range bytes.Split([]byte(header), []byte(",")) {
		k, v, _ := bytes.Cut(part, []byte("="))
		switch string(k) {
		case "t":
			ts = string(v)
		case "v1":
			v1 = string(v)
		}
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || v1 == "" {
		return errors.New("malformed signature header")
	}
	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return errors.New("signature too old or from the future")
	}
	if !hmac.Equal([]byte(v1), []byte(mac(secret, ts, body))) {
		return errors.New("signature does not match")
	}
	return nil
}

// Body is what a webhook receives: the audit entry with its id and the
// event type.
type Body struct {
	Type string `json:"type"`
	policy.AuditEntry
}

// ErrRefusedDestination is what dialling a loopback, private, link-local,
// multicast or unspecified address returns when those are not allowed.
var ErrRefusedDestination = errors.New("destination address refused: loopback, private, link-local and multicast addresses need notify.allow_private_destinations")

// internalNets are the networks besides those netip classifies that reach
// internal or no hosts: carrier-grade NAT, "this network", IETF protocol
// assignments, benchmarking, reserved and broadcast, and IPv6 site-local
// (deprecated, still routed inside some networks).
var internalNets = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("fec0::/10"),
}

// IPv6 forms that carry an IPv4 address a gateway will dial: NAT64 (the
// well-known and the local-use prefixes, the address in the last 32 bits)
// and 6to4 (the address in bits 16-47).
var (
	nat64Nets = []netip.Prefix{netip.MustParsePrefix("64:ff9b::/96"), netip.MustParsePrefix("64:ff9b:1::/48")}
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// refused reports whether a is an address a notification may not go to.
func refused(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return true
	}
	for _, p := range internalNets {
		if p.Contains(a) {
			return true
		}
	}
	if a.Is6() {
		b := a.As16()
		for _, p := range nat64Nets {
			if p.Contains(a) {
				return refused(netip.AddrFrom4([4]byte(b[12:16])))
			}
		}
		if sixToFour.Contains(a) {
			return refused(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	return false
}

// dialControl checks the address actually being dialled, after DNS, so a
// name that resolves (or is rebound) to an internal address is refused.
func dialControl(allowPrivate bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("dial %s: %w", address, ErrRefusedDestination)
		}
		if !allowPrivate && refused(ap.Addr()) {
			return fmt.Errorf("dial %s: %w", address, ErrRefusedDestination)
		}
		return nil
	}
}

// Webhooks posts notifications to webhook destinations.
type Webhooks struct {
	client *http.Client
	now    func() time.Time
}

// WebhookOptions configure Webhooks. The zero value works.
type WebhookOptions struct {
	// AllowPrivate lets webhooks reach loopback, private, link-local and
	// multicast addresses (notify.allow_private_destinations).
	AllowPrivate bool
	// Timeout bounds one delivery, connection to answer. If zero, 10s.
	Timeout time.Duration
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
}

// NewWebhooks returns a webhook sender. It follows no redirect and uses
// no proxy from the environment, which would dial for it unchecked.
func NewWebhooks(o WebhookOptions) *Webhooks {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &net.Dialer{Timeout: o.Timeout, Control: dialControl(o.AllowPrivate)}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   o.Timeout,
		ResponseHeaderTimeout: o.Timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       time.Minute,
		ForceAttemptHTTP2:     true,
	}
	return &Webhooks{
		now: o.Now,
		client: &http.Client{
			Transport: tr,
			Timeout:   o.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

// Send posts o to webhook d and returns the HTTP status; a status other
// than 2xx is an error.
func (w *Webhooks) Send(ctx context.Context, d policy.Destination, o policy.OutboxEntry) (string, error) {
	body, err := json.Marshal(Body{Type: o.Event, AuditEntry: o.Entry})
	if err != nil {
		return "", fmt.Errorf("encode webhook body: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gatekeeper-webhook")
	req.Header.Set(SignatureHeader, Sign(d.Secret, w.now(), body))
	res, err := w.client.Do(req)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	status := strconv.Itoa(res.StatusCode)
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return status, fmt.Errorf("webhook answered %s", res.Status)
	}
	return status, nil
}
