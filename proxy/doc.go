// Package proxy is gatekeeper's data plane: the listeners desktop clients
// connect through, each of which lets a connection reach its upstream only
// if the client address is allowed by the account the connection is for.
//
//	srv, err := proxy.New(ctx, proxy.Options{
//		Listeners: listeners,      // []proxy.Listener
//		Engine:    engine,         // *policy.Engine
//		TLS:       certs.TLSConfig(),
//		Logger:    log,
//		Registerer: reg,
//	})
//	...
//	go srv.Run(ctx)              // serves until ctx ends, then drains
//	srv.Reload(ctx, newCfg.Listeners) // on SIGHUP
//
// What happens to a connection:
//
//  1. The client address is the socket peer, or the source in a PROXY
//     protocol v1 or v2 header when the listener has proxy_protocol and
//     the peer is one of its trusted load balancers. A trusted peer must
//     send a valid header in time; anyone else must not send one.
//  2. The account comes from the route: on a listener whose only route has
//     no sni, the check happens at accept, before a byte is read (after the
//     PROXY header, for a trusted balancer); otherwise in the ClientHello:
//     in GetConfigForClient for tls and http listeners, before any key
//     exchange or certificate, and from the peeked ClientHello in tcp mode.
//  3. A denied client is reset at once, counted in
//     gatekeeper_connections_total{verdict="denied"}, and logged at most
//     Options.DenyLogBurst times per interval (the rest are summed up).
//     Monitor mode lets it through, counted as monitored.
//  4. An admitted connection takes a slot within the per-IP and
//     per-account limits and is filed in a registry by account. It is then
//     joined to the upstream: tcp mode replays the bytes read, then copies
//     small messages by read and write and lets the kernel move bulk
//     (splice); tls mode copies the decrypted stream; http mode
//     serves HTTP/1.1 to a plain http:// upstream on a fast path of its
//     own (http1.go) and everything else with httputil.ReverseProxy. On a
//     tls listener of an account that requires a known device, the
//     handshake of an admitted client (only) asks for a certificate, whose
//     Ed25519 key must be a known device's (device.go).
//  5. Whenever the engine publishes a policy change, a goroutine of the
//     Server re-checks the live connections of the accounts it names
//     against the new table and closes those no longer allowed
//     (gatekeeper_connections_revoked_total), within milliseconds.
//
// Each connection's state is one phase (conn.go); each mode has a handler
// that owns the connection's end: serveTCP, serveTLS, serveHTTP1, or the
// listener's HTTP server.
//
// Client addresses sent upstream: PROXY protocol v2 when
// proxy_protocol.upstream is set (tcp and tls modes); X-Forwarded-For and
// Forwarded in http mode, where incoming ones are kept only from the
// listener's trusted proxies (proxy_protocol.trusted) and are never used
// for the check.
//
// Timeouts: the PROXY header, the ClientHello and the TLS handshake share
// the handshake timeout; upstream dials have theirs; a connection that
// moves no byte either way for the idle timeout is closed (to within a
// tenth of it); on shutdown, live connections get the drain timeout.
//
// The package neither stores nor decides policy (the policy package does)
// and does not manage certificates (the certs package does).
package proxy
