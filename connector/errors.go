package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Causes of a failed connection to gatekeeper. A *DialError wraps exactly
// one of them: test with errors.Is(err, connector.ErrNotAllowed).
var (
	// ErrNotAllowed: the server closed the connection after the ClientHello
	// without answering. That is how gatekeeper refuses a client address
	// its account does not allow: before sending any certificate.
	ErrNotAllowed = errors.New("not allowed")
	// ErrRefused: nothing accepts TCP connections at the server address.
	ErrRefused = errors.New("connection refused")
	// ErrUnresolved: the server's host name does not resolve.
	ErrUnresolved = errors.New("host not found")
	// ErrUnreachable: another failure to connect, such as no route to the
	// server's network.
	ErrUnreachable = errors.New("server unreachable")
	// ErrTimeout: no TCP answer, or no TLS answer, within the timeout.
	ErrTimeout = errors.New("timeout")
	// ErrCertificate: the server's certificate is not trusted for the name.
	ErrCertificate = errors.New("certificate not trusted")
	// ErrPin: the certificate is trusted but has none of the pinned keys.
	ErrPin = errors.New("public key pin mismatch")
	// ErrTLS: another TLS failure (an alert from the server, a peer that
	// does not speak TLS, a connection closed mid-handshake).
	ErrTLS = errors.New("TLS handshake failed")
)

// DialError is a failed connection to gatekeeper. Its message names the
// likely cause and what to do about it.
type DialError struct {
	// Cause is one of the Err* values of this package.
	Cause error
	// Server and ServerName are what was dialled.
	Server, ServerName string
	// AdminURL is where to unblock an address, if known.
	AdminURL string
	// Timeout is the timeout that expired, for ErrTimeout.
	Timeout time.Duration
	// Handshake is true when TCP connected and TLS failed.
	Handshake bool
	// Network is "tcp4" or "tcp6", the family the server was reached
	// over; empty when TCP did not connect.
	Network string
	// Err is the underlying error.
	Err error
}

func (e *DialError) Unwrap() []error { return []error{e.Cause, e.Err} }

func (e *DialError) Error() string {
	switch e.Cause {
	case ErrNotAllowed:
		where := "the gatekeeper admin page"
		if e.AdminURL != "" {
			where = e.AdminURL
		}
		return fmt.Sprintf("gatekeeper at %s closed the connection before sending its certificate: "+
			"this computer's IP address is probably not allowed for this account. "+
			"Unblock it at %s (log in and unblock your IP), or ask the account's master to add it (%v)",
			e.Server, where, e.Err)
	case ErrRefused:
		return fmt.Sprintf("nothing accepts connections at %s: gatekeeper is down, or the server address or port is wrong (%v)", e.Server, e.Err)
	case ErrUnresolved:
		return fmt.Sprintf("cannot resolve the server in %s: check the name and this computer's DNS (%v)", e.Server, e.Err)
	case ErrUnreachable:
		return fmt.Sprintf("cannot reach %s: is this computer online, or does it need a VPN? (%v)", e.Server, e.Err)
	case ErrTimeout:
		if e.Handshake {
			return fmt.Sprintf("%s accepted the connection but completed no TLS handshake within %s: is it a gatekeeper tls listener?", e.Server, e.Timeout)
		}
		return fmt.Sprintf("no answer from %s within %s: the host is down, or a firewall or the network drops the connection", e.Server, e.Timeout)
	case ErrCertificate:
		return fmt.Sprintf("the certificate of %s is not trusted for %q: %v (check -ca and -sni)", e.Server, e.ServerName, e.Err)
	case ErrPin:
		return fmt.Sprintf("the certificate of %s does not match -pin: %v (was the certificate replaced? check -pin)", e.Server, e.Err)
	}
	var rhe tls.RecordHeaderError
	if errors.As(e.Err, &rhe) {
		return fmt.Sprintf("%s does not speak TLS: is it a gatekeeper tls listener, not a tcp one or the database itself?", e.Server)
	}
	return fmt.Sprintf("TLS handshake with %s failed: %v", e.Server, e.Err)
}

// classifyDial turns an error from connecting over TCP into a cause.
func classifyDial(err error) error {
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr) && !dnsErr.IsTimeout:
		return ErrUnresolved
	case isTimeout(err):
		return ErrTimeout
	case isAny(err, errnoRefused):
		return ErrRefused
	}
	return ErrUnreachable
}

// classifyHandshake turns a TLS handshake error into a cause. answered
// reports whether any byte came back from the server.
func classifyHandshake(err error, answered bool) error {
	var (
		pinErr  *PinError
		verErr  *tls.CertificateVerificationError
		hostErr x509.HostnameError
		uaErr   x509.UnknownAuthorityError
		invErr  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &pinErr):
		return ErrPin
	case errors.As(err, &verErr), errors.As(err, &hostErr), errors.As(err, &uaErr), errors.As(err, &invErr):
		return ErrCertificate
	case isTimeout(err):
		return ErrTimeout
	case !answered && closedByPeer(err):
		return ErrNotAllowed
	}
	return ErrTLS
}

// closedByPeer reports whether err means the peer closed or reset the
// connection: EOF, a reset, or any other failure to read or write the
// socket (the error numbers differ between systems). Timeouts are tested
// before.
func closedByPeer(err error) bool {
	var op *net.OpError
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isAny(err, errnoClosed) ||
		(errors.As(err, &op) && (op.Op == "read" || op.Op == "write"))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || isAny(err, errnoTimedOut) || (errors.As(err, &ne) && ne.Timeout())
}

func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
