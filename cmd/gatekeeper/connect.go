package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/config"
	"github.com/gatekeeper-dev/gatekeeper/connector"
)

const connectUsage = `Usage: gatekeeper connect -server HOST:PORT [flags]

Runs on a desktop computer, for an application that cannot speak TLS: it
listens on a local address in plain TCP and carries each connection over
TLS to a gatekeeper tls listener, sending -sni as the server name and
verifying the server's certificate. Point the application at -listen.

When gatekeeper refuses this computer's IP address, it closes the connection
before sending its certificate; the connector then says so and names the
admin page (-admin-url) where a user unblocks the address. It also tells
apart gatekeeper being down, a certificate it does not trust, a pin that
does not match, and a timeout. Logs go to standard error; SIGINT or SIGTERM
stops it.

Example:
  gatekeeper connect -server gate.example.com:5433 -sni 10042.db.example.com \
      -listen 127.0.0.1:5432 -admin-url https://gate.example.com:8443/

Flags:
`

func connectCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("connect", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), connectUsage)
		fs.PrintDefaults()
	}
	server := fs.String("server", "", "gatekeeper tls listener to connect to, `host:port` (required)")
	listen := fs.String("listen", "", "local `address` to accept the application's plain TCP connections on;\na bare port means 127.0.0.1:PORT (default 127.0.0.1 and the port of -server)")
	sni := fs.String("sni", "", "TLS server `name` to send, which gatekeeper routes by and the certificate\nmust name (default the host of -server)")
	caFile := fs.String("ca", "", "PEM `file` of CA certificates to verify the server with, instead of the\nsystem's roots")
	var pins []connector.Pin
	fs.Func("pin", "require this public key in the server's certificate chain: `sha256//BASE64`,\nthe SHA-256 of a SubjectPublicKeyInfo as curl's --pinnedpubkey takes it;\nrepeat it or separate pins with ; to allow several (say, the current and\nthe next key). gatekeeper connect -check prints the server's pins", func(s string) error {
		p, err := connector.ParsePins(s)
		pins = append(pins, p...)
		return err
	})
	insecure := fs.Bool("insecure-skip-verify", false, "do not verify the server's certificate: only for trying gatekeeper out with\nits throwaway self-signed certificate (with -pin, the pin is still required)")
	adminURL := fs.String("admin-url", "", "`URL` of the gatekeeper admin page, named in the error when this\ncomputer's address is not allowed")
	timeout := fs.Duration("timeout", connector.DefaultTimeout, "bound on connecting to gatekeeper, and on the TLS handshake")
	drain := fs.Duration("drain", 0, "on SIGINT or SIGTERM, how long to let live connections finish before\nclosing them")
	check := fs.Bool("check", false, "connect once, report what happened, and exit (0 when let through)")
	level := fs.String("log-level", "info", "`level` of logging: debug (every connection), info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *server == "" {
		return usageError{"connect: -server is required (the gatekeeper tls listener, host:port)"}
	}
	_, serverPort, err := net.SplitHostPort(*server)
	if err != nil {
		return usageError{fmt.Sprintf("connect: -server %q: not host:port", *server)}
	}
	log, err := newLogger(config.Log{Level: *level, Format: "console"}, stderr)
	if err != nil {
		return usageError{"connect: -log-level: " + err.Error()}
	}
	defer log.Sync()

	opts := connector.Options{
		Server: *server, ServerName: *sni, Pins: pins, InsecureSkipVerify: *insecure,
		AdminURL: *adminURL, Timeout: *timeout, Drain: *drain, Logger: log,
	}
	if *caFile != "" {
		if opts.RootCAs, err = loadCAs(*caFile); err != nil {
			return err
		}
	}
	c, err := connector.New(opts)
	if err != nil {
		return usageError{"connect: " + err.Error()}
	}
	switch {
	case *insecure && len(pins) > 0:
		log.Warn("-insecure-skip-verify: the server's certificate is not verified, only its pinned key")
	case *insecure:
		log.Warn("-insecure-skip-verify: the server's certificate is not verified; anyone on the path can read and change the traffic")
	}
	if *check {
		return connectCheck(ctx, c, *server, stdout)
	}

	addr, err := listenAddr(*listen, serverPort)
	if err != nil {
		return usageError{"connect: -listen: " + err.Error()}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("connect: listen: %w", err)
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !ap.Addr().IsLoopback() {
		log.Warn("listening beyond this computer: whoever reaches this address goes through gatekeeper with this computer's IP",
			zap.Stringer("listen", ln.Addr()))
	}
	log.Info("accepting plain TCP connections, carrying them to gatekeeper over TLS",
		zap.Stringer("listen", ln.Addr()), zap.String("server", *server), zap.String("sni", sniOrHost(*sni, *server)))
	err = c.Serve(ctx, ln)
	log.Info("stopped")
	return err
}

// connectCheck dials once and reports the connection's TLS details.
func connectCheck(ctx context.Context, c *connector.Connector, server string, stdout io.Writer) error {
	conn, err := c.Dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	fmt.Fprintf(stdout, "ok: gatekeeper at %s let this computer through (%s, server name %q)\n",
		server, tls.VersionName(cs.Version), cs.ServerName)
	for i, cert := range cs.PeerCertificates {
		role := "certificate"
		if i > 0 {
			role = "issuer"
		}
		fmt.Fprintf(stdout, "  %-11s %s, expires %s\n              pin %s\n", role, cert.Subject, cert.NotAfter.Format(time.DateOnly), connector.PinOf(cert))
	}
	return nil
}

// listenAddr applies -listen's defaults: 127.0.0.1, and the server's port.
func listenAddr(s, serverPort string) (string, error) {
	switch {
	case s == "":
		return net.JoinHostPort("127.0.0.1", serverPort), nil
	case !strings.Contains(s, ":"):
		return net.JoinHostPort("127.0.0.1", s), nil
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return "", fmt.Errorf("%q: not host:port or a port", s)
	}
	return s, nil
}

func sniOrHost(sni, server string) string {
	if sni != "" {
		return sni
	}
	host, _, _ := net.SplitHostPort(server)
	return host
}

// loadCAs reads a PEM bundle of CA certificates.
func loadCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("connect: -ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("connect: -ca " + path + ": no PEM certificate in it")
	}
	return pool, nil
}
