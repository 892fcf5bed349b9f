package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/connector"
	"github.com/gatekeeper-dev/gatekeeper/device"
)

const connectEnrollUsage = `Usage: gatekeeper connect enroll -admin-url URL -code CODE -name NAME -identity FILE

Enrols this computer as a device of the person who got the code (on the
"Add this computer" page, or from POST /api/v1/me/devices): makes a key pair
here, registers its public key with gatekeeper, and writes the identity
(private key included) to FILE with mode 0600. A code works once, within
10 minutes. An existing FILE is left alone unless -force is given.

Example:
  gatekeeper connect enroll -admin-url https://gate.example.com:8443/ \
      -code 10042.K7Q4-M9XD-2PLT-HW3C -name "Alice's laptop" -identity gatekeeper.identity

Flags:
`

func connectEnrollCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("connect enroll", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), connectEnrollUsage)
		fs.PrintDefaults()
	}
	adminURL := fs.String("admin-url", "", "`URL` of the gatekeeper admin listener, https://HOST[:PORT]/ (required)")
	code := fs.String("code", "", "the one-time enrolment `code` (required)")
	name := fs.String("name", "", "a `name` for this computer, as the account's device list shows it")
	identity := fs.String("identity", "", "`file` to write this device's identity to (required)")
	force := fs.Bool("force", false, "replace an existing identity file")
	caFile := fs.String("ca", "", "PEM `file` of CA certificates to verify the admin listener with, instead\nof the system's roots")
	var pins pinList
	fs.Var(&pins, "pin", "require this public key in the admin listener's certificate chain:\n`sha256//BASE64`, repeatable or separated by ; (gatekeeper connect -check\nprints a server's pins)")
	insecure := fs.Bool("insecure-skip-verify", false, "do not verify the admin listener's certificate: only for trying gatekeeper\nout with its throwaway self-signed certificate")
	timeout := fs.Duration("timeout", 30*time.Second, "bound on the whole enrolment")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *adminURL == "":
		return usageError{"connect enroll: -admin-url is required"}
	case *code == "":
		return usageError{"connect enroll: -code is required"}
	case *identity == "":
		return usageError{"connect enroll: -identity is required"}
	}
	if _, err := device.AdminBase(*adminURL); err != nil {
		return usageError{"connect enroll: -admin-url: " + err.Error()}
	}
	if _, _, err := device.ParseCode(*code); err != nil {
		return usageError{"connect enroll: -code: not an enrolment code (it looks like 10042.ABCD-EFGH-JKLM-NPQR)"}
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: *insecure}
	if *caFile != "" {
		pool, err := loadCAs(*caFile)
		if err != nil {
			return err
		}
		tc.RootCAs = pool
	}
	if len(pins) > 0 {
		tc.VerifyConnection = connector.VerifyPins(pins, *insecure)
	}
	switch {
	case *insecure && len(pins) > 0:
		fmt.Fprintln(stderr, "warning: -insecure-skip-verify: the admin listener's certificate is not verified, only its pinned key")
	case *insecure:
		fmt.Fprintln(stderr, "warning: -insecure-skip-verify: the admin listener's certificate is not verified")
	}
	// The file first: a code is spent only when the identity can be kept.
	undo, err := device.Reserve(*identity, *force)
	if err != nil {
		return fmt.Errorf("connect enroll: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}}
	id, err := device.Enroll(ctx, hc, *adminURL, *code, *name, runtime.GOOS+"/"+runtime.GOARCH)
	if err == nil {
		err = id.Write(*identity)
	}
	if err != nil {
		undo()
		var ae *device.APIError
		if errors.As(err, &ae) && ae.Code == "invalid_enrollment_code" {
			return errors.New("connect enroll: the code is wrong, used or expired: ask for a new one on the admin page")
		}
		return fmt.Errorf("connect enroll: %w", err)
	}
	fmt.Fprintf(stdout, "enrolled: device %s of account %s; identity written to %s\n", id.DeviceID, id.Account, *identity)
	return nil
}
