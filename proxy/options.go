package proxy

import "time"

// Listener modes.
const (
	// ModeTCP passes bytes untouched, routing by the ClientHello's server
	// name when it has sni routes.
	ModeTCP = "tcp"
	// ModeTLS terminates TLS and pipes the plaintext to the upstream.
	ModeTLS = "tls"
	// ModeHTTP terminates TLS and proxies HTTP requests.
	ModeHTTP = "http"
)

// Listener is one address the proxy serves. Name, Addr, Mode and at least
// one route are required; every other field's zero value takes the
// default its documentation names.
type Listener struct {
	Name string
	// Addr is host:port; port 0 picks one (Server.Addr says which).
	Addr string
	// Mode is ModeTCP, ModeTLS or ModeHTTP.
	Mode string
	// ProxyProtocol, if not nil, believes a PROXY header from its trusted
	// peers (and refuses one from anyone else).
	ProxyProtocol *ProxyProtocol
	Routes        []Route
	Timeouts      Timeouts
	Limits        Limits
}

// ProxyProtocol configures PROXY protocol on a listener.
type ProxyProtocol struct {
	// Trusted are the load balancers whose PROXY header is believed, as
	// policy.ParsePrefixes reads them.
	Trusted []string
	// Upstream sends a PROXY protocol v2 header to the upstream.
	Upstream bool
}

// Route joins clients of one account to an upstream.
type Route struct {
	// SNI selects the route by TLS server name ("*.parent" for one label
	// under parent); empty is the listener's default route.
	SNI     string
	Account string
	// Upstream is host:port, or in http mode an http(s) URL.
	Upstream string
	// Access is AccessAddress (or ""), AccessLogin or AccessAddressLogin;
	// a login needs http mode and an sni.
	Access string
}

// Timeouts of a listener. A zero field takes its default.
type Timeouts struct {
	// Handshake bounds the PROXY header, ClientHello and TLS handshake,
	// and in http mode a request head. If zero, DefaultHandshakeTimeout.
	Handshake time.Duration
	// Dial bounds connecting to the upstream. If zero, DefaultDialTimeout.
	Dial time.Duration
	// Idle closes a connection that moved no byte either way. If zero,
	// DefaultIdleTimeout.
	Idle time.Duration
	// Drain is how long shutdown waits for live connections. If zero,
	// DefaultDrainTimeout.
	Drain time.Duration
}

// Limits of a listener. A zero field takes its default; -1 is unlimited.
type Limits struct {
	// PerIP caps live connections from one client address. If zero,
	// DefaultPerIPLimit.
	PerIP int
	// PerAccount caps live connections to one account. If zero,
	// DefaultPerAccountLimit.
	PerAccount int
	// Pending caps connections not yet checked (awaiting their PROXY
	// header or ClientHello). If zero, DefaultPendingLimit.
	Pending int
	// PendingPerIP caps them per socket peer, trusted balancers aside. If
	// zero, DefaultPendingPerIPLimit.
	PendingPerIP int
}

// Defaults of a listener's timeouts and limits: the one place they are
// decided (the configuration leaves a key it does not set at zero).
const (
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultDialTimeout       = 5 * time.Second
	DefaultIdleTimeout       = time.Hour
	DefaultDrainTimeout      = 30 * time.Second
	DefaultPerIPLimit        = 256
	DefaultPerAccountLimit   = 4096
	DefaultPendingLimit      = 4096
	DefaultPendingPerIPLimit = 64
)

// withDefaults returns t with its zero fields set to their defaults.
func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Handshake, DefaultHandshakeTimeout)
	def(&t.Dial, DefaultDialTimeout)
	def(&t.Idle, DefaultIdleTimeout)
	def(&t.Drain, DefaultDrainTimeout)
	return t
}

// withDefaults returns l with its zero fields set to their defaults.
func (l Limits) withDefaults() Limits {
	def := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	def(&l.PerIP, DefaultPerIPLimit)
	def(&l.PerAccount, DefaultPerAccountLimit)
	def(&l.Pending, DefaultPendingLimit)
	def(&l.PendingPerIP, DefaultPendingPerIPLimit)
	return l
}
