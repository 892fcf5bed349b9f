package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatekeeper-dev/gatekeeper/config"
	"github.com/gatekeeper-dev/gatekeeper/connector"
	"github.com/gatekeeper-dev/gatekeeper/connector/service"
	"github.com/gatekeeper-dev/gatekeeper/connector/state"
	"github.com/gatekeeper-dev/gatekeeper/device"
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

To run it as a service of this computer (Windows, macOS, Linux), started
with the machine, and to see what it last saw:
  gatekeeper connect service install [-name NAME] [-print] FLAGS   (gatekeeper connect service -h)
  gatekeeper connect service uninstall|start|stop|status [-name NAME]
  gatekeeper connect status [-name NAME] [-status FILE]

Flags:
`

func connectCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "service":
			return connectServiceCmd(ctx, args[1:], stdout, stderr)
		case "status":
			return connectStatusCmd(ctx, "connect status", args[1:], stdout, stderr)
		case "enroll":
			return connectEnrollCmd(ctx, args[1:], stdout, stderr)
		}
	}
	fs := newFlags("connect", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), connectUsage)
		fs.PrintDefaults()
	}
	var f connectFlags
	f.register(fs)
	check := fs.Bool("check", false, "connect once, report what happened, and exit (0 when let through)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	opts, err := f.options()
	if err != nil {
		return err
	}
	log, closeLog, err := newConnectLogger(f.level, f.logFile, stderr, nil)
	if err != nil {
		return err
	}
	defer closeLog()
	opts.Logger = log
	var rec *state.Recorder
	if f.statusFile != "" && !*check {
		if rec, err = f.recorder("", log); err != nil {
			return err
		}
		opts.Dialed = rec.Dialed
		f.recordLeases(rec, deviceID(f.identity))
	}
	c, err := connector.New(opts)
	if err != nil {
		return usageError{"connect: " + err.Error()}
	}
	f.warnInsecure(log)
	if *check {
		return connectCheck(ctx, c, f.server, f.adminURL, stdout)
	}
	return serveConnect(ctx, c, f, rec, log)
}

// connectFlags are the flags of "gatekeeper connect" that say what to
// connect and how: the same for a run by hand, the saved flags of a
// service ("connect service install") and the service's own run.
type connectFlags struct {
	server, listen, sni, caFile, adminURL string
	pins, adminPins                       pinList
	insecure                              bool
	timeout, drain                        time.Duration
	level, logFile, statusFile            string
	identity                              string
	// leased, if set before the connector runs, is told each lease answer:
	// the lease, or the admin listener's refusal.
	leased func(device.Lease, error)
}

func (f *connectFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.server, "server", "", "gatekeeper tls listener to connect to, `host:port` (required)")
	fs.StringVar(&f.listen, "listen", "", "local `address` to accept the application's plain TCP connections on;\na bare port means 127.0.0.1:PORT (default 127.0.0.1 and the port of -server)")
	fs.StringVar(&f.sni, "sni", "", "TLS server `name` to send, which gatekeeper routes by and the certificate\nmust name (default the host of -server)")
	fs.StringVar(&f.caFile, "ca", "", "PEM `file` of CA certificates to verify the server with, instead of the\nsystem's roots")
	fs.Var(&f.pins, "pin", "require this public key in the server's certificate chain: `sha256//BASE64`,\nthe SHA-256 of a SubjectPublicKeyInfo as curl's --pinnedpubkey takes it;\nrepeat it or separate pins with ; to allow several (say, the current and\nthe next key). gatekeeper connect -check prints the server's pins")
	fs.Var(&f.adminPins, "admin-pin", "with -identity, require this public key in the admin listener's certificate\nchain when asking for a lease, as -pin does for the gate: `sha256//BASE64`,\nrepeatable or separated by ;")
	fs.BoolVar(&f.insecure, "insecure-skip-verify", false, "do not verify the server's certificate: only for trying gatekeeper out with\nits throwaway self-signed certificate (with -pin, the pin is still required)")
	fs.StringVar(&f.adminURL, "admin-url", "", "`URL` of the gatekeeper admin page, named in the error when this\ncomputer's address is not allowed")
	fs.DurationVar(&f.timeout, "timeout", connector.DefaultTimeout, "bound on connecting to gatekeeper, and on the TLS handshake")
	fs.DurationVar(&f.drain, "drain", 0, "on SIGINT or SIGTERM (a service: on stop), how long to let live\nconnections finish before closing them")
	fs.StringVar(&f.level, "log-level", "info", "`level` of logging: debug (every connection), info, warn, error")
	fs.StringVar(&f.logFile, "log-file", "", "log to this `file` instead of standard error, rotated at 10 MB with 5\nold files kept (a service on Windows or macOS: connect.log in its directory)")
	fs.StringVar(&f.identity, "identity", "", "this computer's device identity `file` (from gatekeeper connect enroll): when\nthe gate refuses this computer's address, ask the admin listener for a\nlease of it, and renew it while the application is connected; and show\nthe gate this device's certificate when its account requires a known device")
	fs.StringVar(&f.statusFile, "status", "", "keep what the connector last saw (let through, refused, and why) in this\n`file`, for gatekeeper connect status (a service: in its directory)")
}

// options checks the flags and returns the connector's options, without
// a logger.
func (f *connectFlags) options() (connector.Options, error) {
	if f.server == "" {
		return connector.Options{}, usageError{"connect: -server is required (the gatekeeper tls listener, host:port)"}
	}
	if _, _, err := net.SplitHostPort(f.server); err != nil {
		return connector.Options{}, usageError{fmt.Sprintf("connect: -server %q: not host:port", f.server)}
	}
	if _, err := zapcore.ParseLevel(f.level); err != nil {
		return connector.Options{}, usageError{"connect: -log-level: " + err.Error()}
	}
	if _, err := f.listenAddr(); err != nil {
		return connector.Options{}, err
	}
	opts := connector.Options{
		Server: f.server, ServerName: f.sni, Pins: f.pins, InsecureSkipVerify: f.insecure,
		AdminURL: f.adminURL, Timeout: f.timeout, Drain: f.drain,
	}
	if f.caFile != "" {
		var err error
		if opts.RootCAs, err = loadCAs(f.caFile); err != nil {
			return connector.Options{}, err
		}
	}
	if f.identity != "" {
		id, err := device.ReadIdentity(f.identity)
		if err != nil {
			return connector.Options{}, usageError{"connect: -identity: " + err.Error()}
		}
		tc := &tls.Config{RootCAs: opts.RootCAs, InsecureSkipVerify: f.insecure, MinVersion: tls.VersionTLS12}
		if len(f.adminPins) > 0 {
			tc.VerifyConnection = connector.VerifyPins(f.adminPins, f.insecure)
		}
		opts.Lease = f.leaseFunc(id, tc)
		cert, err := id.Certificate(time.Now())
		if err != nil {
			return connector.Options{}, fmt.Errorf("connect: -identity: %w", err)
		}
		opts.Certificate = &cert
	} else if len(f.adminPins) > 0 {
		return connector.Options{}, usageError{"connect: -admin-pin pins the admin listener for leases, so it needs -identity"}
	}
	// New checks the rest; the logger comes later.
	if _, err := connector.New(opts); err != nil {
		return connector.Options{}, usageError{"connect: " + err.Error()}
	}
	return opts, nil
}

func (f *connectFlags) listenAddr() (string, error) {
	_, serverPort, err := net.SplitHostPort(f.server)
	if err != nil {
		return "", usageError{fmt.Sprintf("connect: -server %q: not host:port", f.server)}
	}
	addr, err := listenAddr(f.listen, serverPort)
	if err != nil {
		return "", usageError{"connect: -listen: " + err.Error()}
	}
	return addr, nil
}

func (f *connectFlags) warnInsecure(log *zap.Logger) {
	switch {
	case f.insecure && len(f.pins) > 0:
		log.Warn("-insecure-skip-verify: the server's certificate is not verified, only its pinned key")
	case f.insecure:
		log.Warn("-insecure-skip-verify: the server's certificate is not verified; anyone on the path can read and change the traffic")
	}
}

// recorder starts keeping the status file.
func (f *connectFlags) recorder(service string, log *zap.Logger) (*state.Recorder, error) {
	listen, _ := f.listenAddr()
	rec, err := state.NewRecorder(state.RecorderOptions{Path: f.statusFile, Logger: log}, state.Status{
		Service: service, Server: f.server, ServerName: sniOrHost(f.sni, f.server),
		Listen: listen, AdminURL: f.adminURL,
	})
	if err != nil {
		return nil, fmt.Errorf("connect: -status: %w", err)
	}
	return rec, nil
}

// pinList is the -pin flag: repeatable, each value one or more pins
// separated by ";". Its String is a value that parses back to the same
// pins, so that the saved flags of a service keep them all.
type pinList []connector.Pin

func (p *pinList) String() string {
	if p == nil {
		return ""
	}
	s := make([]string, len(*p))
	for i, pin := range *p {
		s[i] = pin.String()
	}
	return strings.Join(s, ";")
}

func (p *pinList) Set(s string) error {
	pins, err := connector.ParsePins(s)
	if err != nil {
		return err
	}
	*p = append(*p, pins...)
	return nil
}

// serveConnect listens and carries connections until ctx ends; rec, if
// not nil, keeps the status file.
func serveConnect(ctx context.Context, c *connector.Connector, f connectFlags, rec *state.Recorder, log *zap.Logger) error {
	addr, err := f.listenAddr()
	if err != nil {
		return err
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
		zap.Stringer("listen", ln.Addr()), zap.String("server", f.server), zap.String("sni", sniOrHost(f.sni, f.server)))
	err = c.Serve(ctx, ln)
	if rec != nil {
		rec.Stop()
	}
	log.Info("stopped")
	return err
}

// newConnectLogger logs to file (rotating) when one is given, else to
// stderr, and also to extra (the Event Log) when it is not nil. close
// flushes and closes the file.
func newConnectLogger(level, file string, stderr io.Writer, extra zapcore.Core) (log *zap.Logger, close func(), err error) {
	var w io.Writer = stderr
	var rf *service.RotatingFile
	if file != "" {
		if rf, err = service.OpenRotating(file, 0, 0); err != nil {
			return nil, nil, fmt.Errorf("connect: -log-file: %w", err)
		}
		w = rf
	}
	log, err = newLogger(config.Log{Level: level, Format: "console"}, w)
	if err != nil {
		if rf != nil {
			rf.Close()
		}
		return nil, nil, usageError{"connect: -log-level: " + err.Error()}
	}
	if extra != nil {
		log = zap.New(zapcore.NewTee(log.Core(), extra))
	}
	return log, func() {
		log.Sync()
		if rf != nil {
			rf.Close()
		}
	}, nil
}

// connectCheck dials once and reports the connection's TLS details.
func connectCheck(ctx context.Context, c *connector.Connector, server, adminURL string, stdout io.Writer) error {
	conn, err := c.Dial(ctx)
	if errors.Is(err, connector.ErrNotAllowed) && adminURL == "" {
		return fmt.Errorf("%w\n(run it with -admin-url set to your gatekeeper admin page, as the service has it, and this message names the page)", err)
	}
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

// leaseFunc asks for a lease as id, verifying the admin listener with tc,
// and tells f.leased.
func (f *connectFlags) leaseFunc(id device.Identity, tc *tls.Config) func(context.Context, string) (time.Time, error) {
	return func(ctx context.Context, network string) (time.Time, error) {
		l, err := device.RequestLease(ctx, id, network, tc)
		if f.leased != nil {
			f.leased(l, err)
		}
		return l.Rule.ExpiresAt, err
	}
}

// deviceID is the device ID in an identity file, "" without one.
func deviceID(path string) string {
	if path == "" {
		return ""
	}
	id, err := device.ReadIdentity(path)
	if err != nil {
		return "" // options() has read it already and said what is wrong
	}
	return id.DeviceID
}

// recordLeases keeps the status file's lease: set by each lease, cleared
// when the admin listener refuses one (a failure to reach it says
// nothing about the lease).
func (f *connectFlags) recordLeases(rec *state.Recorder, deviceID string) {
	f.leased = func(l device.Lease, err error) {
		var ae *device.APIError
		switch {
		case err == nil:
			addr := strings.TrimSuffix(strings.TrimSuffix(l.Rule.CIDR, "/32"), "/128")
			rec.SetLease(&state.Lease{Rule: strconv.FormatUint(l.Rule.ID, 10), Addr: addr, Device: deviceID, ExpiresAt: l.Rule.ExpiresAt})
		case errors.As(err, &ae):
			rec.SetLease(nil)
		}
	}
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
