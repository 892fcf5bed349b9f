package proxy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a connection ends early, the reason label of
// gatekeeper_connection_errors_total.
const (
	reasonProxyHeader = "proxy_header" // missing, broken or untrusted PROXY header
	reasonClientHello = "client_hello" // tcp mode: no readable ClientHello in time
	reasonNoRoute     = "no_route"     // no route for the server name
	reasonLimit       = "limit"        // per-IP or per-account limit reached
	reasonHandshake   = "handshake"    // TLS handshake failed (denials aside)
	reasonUpstream    = "upstream"     // upstream unreachable
	reasonIdle        = "idle"         // closed after the idle timeout
	reasonBadRequest  = "bad_request"  // http mode: a malformed or ambiguous request head, answered 400
	reasonPending     = "pending"      // too many connections awaiting their PROXY header or ClientHello
)

var reasons = []string{reasonProxyHeader, reasonClientHello, reasonNoRoute, reasonLimit, reasonHandshake, reasonUpstream, reasonIdle, reasonBadRequest, reasonPending}

type metrics struct {
	conns     *prometheus.CounterVec
	active    *prometheus.GaugeVec
	revoked   *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	errors    *prometheus.CounterVec
	handshake *prometheus.HistogramVec
	dial      *prometheus.HistogramVec
	pending   *prometheus.GaugeVec
	devices   *prometheus.CounterVec
	requests  *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_connections_total",
			Help: "Connections whose client address was checked, by listener, account and verdict (allowed, denied, monitored).",
		}, []string{"listener", "account", "verdict"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatekeeper_connections_active",
			Help: "Connections let through and still open.",
		}, []string{"listener", "account"}),
		revoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_connections_revoked_total",
			Help: "Live connections closed because a policy change no longer allows them.",
		}, []string{"account"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_transferred_bytes_total",
			Help: "Bytes carried, by listener and direction: in is client to upstream, out is upstream to client (TLS payload, not ciphertext, for tls and http listeners).",
		}, []string{"listener", "direction"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_connection_errors_total",
			Help: "Connections that ended early for a reason other than a denial: proxy_header, client_hello, no_route, limit, handshake, upstream, idle, bad_request, pending.",
		}, []string{"listener", "reason"}),
		handshake: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatekeeper_tls_handshake_seconds",
			Help:    "Time from accepting a connection to a completed TLS handshake.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"listener"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatekeeper_connections_pending",
			Help: "Connections accepted and not yet checked: awaiting their PROXY header or ClientHello (limits.pending bounds them).",
		}, []string{"listener"}),
		devices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_device_checks_total",
			Help: "Device checks of tls clients whose address passed, for accounts that require a known device, by listener, account and outcome: known, no_certificate, not_ed25519, unknown_device, device_not_active, owner_not_allowed.",
		}, []string{"listener", "account", "outcome"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_http_requests_total",
			Help: "Requests to routes whose access needs a login, by listener, account and verdict: allowed (signed in), sign_in (sent to sign in), signed_in (a hand-off taken), refused, signed_out.",
		}, []string{"listener", "account", "verdict"}),
		dial: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatekeeper_upstream_dial_seconds",
			Help:    "Time to connect to an upstream, failed attempts included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17),
		}, []string{"listener"}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.conns, m.active, m.revoked, m.bytes, m.errors, m.handshake, m.dial, m.pending, m.devices, m.requests} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("register proxy metrics: %w", err)
		}
	}
	return nil
}

// listenerMetrics are one listener's children, resolved once so that the
// per-connection path does no label lookups.
type listenerMetrics struct {
	in, out   prometheus.Counter
	errors    map[string]prometheus.Counter
	handshake prometheus.Observer
	dial      prometheus.Observer
	pending   prometheus.Gauge
}

func (m *metrics) forListener(name string) *listenerMetrics {
	lm := &listenerMetrics{
		in:        m.bytes.WithLabelValues(name, "in"),
		out:       m.bytes.WithLabelValues(name, "out"),
		errors:    make(map[string]prometheus.Counter, len(reasons)),
		handshake: m.handshake.WithLabelValues(name),
		dial:      m.dial.WithLabelValues(name),
		pending:   m.pending.WithLabelValues(name),
	}
	for _, r := range reasons {
		lm.errors[r] = m.errors.WithLabelValues(name, r)
	}
	return lm
}

// routeMetrics are one route's children.
type routeMetrics struct {
	allowed, denied, monitored prometheus.Counter
	active                     prometheus.Gauge
	revoked                    prometheus.Counter
}

func (m *metrics) forRoute(listener, account string) routeMetrics {
	return routeMetrics{
		allowed:   m.conns.WithLabelValues(listener, account, "allowed"),
		denied:    m.conns.WithLabelValues(listener, account, "denied"),
		monitored: m.conns.WithLabelValues(listener, account, "monitored"),
		active:    m.active.WithLabelValues(listener, account),
		revoked:   m.revoked.WithLabelValues(account),
	}
}
