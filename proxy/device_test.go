package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/device"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// deviceKey makes a device key and the certificate the connector shows.
func deviceKey(t testing.TB, id string) (ed25519.PublicKey, tls.Certificate) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := device.Identity{Account: "dev", DeviceID: id, Key: priv}.Certificate(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return pub, cert
}

// ecdsaCert is a client certificate whose key is no Ed25519 key.
func ecdsaCert(t testing.TB) tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// deviceClient is a TLS client from a loopback address that may present
// cert, and records whether the server asked for one and how many bytes
// the server sent.
type deviceClient struct {
	conn     *tls.Conn
	asked    atomic.Bool
	received atomic.Int64
	err      error
}

func dialDevice(t testing.TB, from, to string, cert *tls.Certificate) *deviceClient {
	t.Helper()
	dc := &deviceClient{}
	raw, err := tryDial(t, from, to)
	if err != nil {
		dc.err = err
		return dc
	}
	cfg := &tls.Config{
		InsecureSkipVerify: true,
		ServerName:         "db.test",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			dc.asked.Store(true)
			if cert == nil {
				return &tls.Certificate{}, nil
			}
			return cert, nil
		},
	}
	dc.conn = tls.Client(countingConn{Conn: raw, n: &dc.received}, cfg)
	dc.conn.SetDeadline(time.Now().Add(5 * time.Second))
	dc.err = dc.conn.Handshake()
	dc.conn.SetDeadline(time.Time{})
	return dc
}

// TestRequireKnownDevice: with require_device on, a tls listener admits a
// client whose address passed only if it shows an active device of a
// user with desktop access; every other case is refused and counted by
// outcome; a denied address is reset before any certificate request; a
// device made inactive loses its live connection.
func TestRequireKnownDevice(t *testing.T) {
	p := newPolicy(t)
	p.account("dev", policy.ModeOn, ipAllowed+"/32", ipOther+"/32")
	good, goodCert := deviceKey(t, "good")
	barred, barredCert := deviceKey(t, "barred")
	off, offCert := deviceKey(t, "off")
	_, strangerCert := deviceKey(t, "stranger")
	err := p.st.Update(context.Background(), "dev", func(tx policy.Tx) error {
		for _, u := range []policy.User{
			{Username: "alice", Active: true, DesktopAccess: true},
			{Username: "bob", Active: true}, // no desktop access
		} {
			if err := tx.PutUser(u); err != nil {
				return err
			}
		}
		for _, d := range []policy.Device{
			{ID: "good", Owner: "alice", Status: policy.DeviceActive, PublicKey: good},
			{ID: "barred", Owner: "bob", Status: policy.DeviceActive, PublicKey: barred},
			{ID: "off", Owner: "alice", Status: policy.DeviceInactive, PublicKey: off},
		} {
			if err := tx.PutDevice(d); err != nil {
				return err
			}
		}
		a, err := tx.Account()
		if err != nil {
			return err
		}
		a.Settings.RequireDevice = true
		return tx.PutAccount(a)
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the engine to know the devices", func() bool {
		return p.engine.Table().Device("dev", good) == policy.DeviceKnown
	})
	up := newUpstream(t, echo)
	px := startProxy(t, Options{Engine: p.engine, TLS: tlsConfig(t), Listeners: []Listener{
		{Name: "tls", Addr: "127.0.0.1:0", Mode: ModeTLS, Routes: []Route{{Account: "dev", Upstream: up.addr()}}},
	}})

	ecCert := ecdsaCert(t)
	for _, tc := range []struct {
		name    string
		cert    *tls.Certificate
		outcome string
	}{
		{"no certificate", nil, "no_certificate"},
		{"not ed25519", &ecCert, "not_ed25519"},
		{"unknown key", &strangerCert, "unknown_device"},
		{"inactive device", &offCert, "device_not_active"},
		{"owner without desktop access", &barredCert, "owner_not_allowed"},
	} {
		before := up.accepted.Load()
		dc := dialDevice(t, ipAllowed, px.addr("tls"), tc.cert)
		if !dc.asked.Load() {
			t.Errorf("%s: the allowed address was not asked for a certificate", tc.name)
		}
		if dc.err == nil {
			// TLS 1.3: the client's side of the handshake ends before the
			// server has checked its certificate; the refusal is the reset.
			expectClosed(t, dc.conn, 5*time.Second)
		}
		px.waitCounter("gatekeeper_device_checks_total", 1, "listener", "tls", "account", "dev", "outcome", tc.outcome)
		if got := up.accepted.Load() - before; got != 0 {
			t.Errorf("%s: %d connections reached the upstream", tc.name, got)
		}
	}

	// A denied address gets nothing: no certificate request, not a byte,
	// even holding a known device.
	dc := dialDevice(t, ipDenied, px.addr("tls"), &goodCert)
	if dc.err == nil {
		t.Error("denied address: handshake succeeded")
	}
	if dc.asked.Load() || dc.received.Load() != 0 {
		t.Errorf("denied address: asked for a certificate %v, sent %d bytes; want neither", dc.asked.Load(), dc.received.Load())
	}

	// The known device passes, from each allowed address.
	live := dialDevice(t, ipAllowed, px.addr("tls"), &goodCert)
	if live.err != nil {
		t.Fatalf("known device: %v", live.err)
	}
	if err := roundTrip(t, live.conn, "hello"); err != nil {
		t.Fatalf("known device: %v", err)
	}
	px.waitCounter("gatekeeper_device_checks_total", 1, "listener", "tls", "account", "dev", "outcome", "known")

	// Made inactive, its live connection is closed, and the next refused.
	err = p.st.Update(context.Background(), "dev", func(tx policy.Tx) error {
		return tx.PutDevice(policy.Device{ID: "good", Owner: "alice", Status: policy.DeviceInactive, PublicKey: good})
	})
	if err != nil {
		t.Fatal(err)
	}
	expectClosed(t, live.conn, 5*time.Second)
	px.waitCounter("gatekeeper_connections_revoked_total", 1, "account", "dev")
	again := dialDevice(t, ipOther, px.addr("tls"), &goodCert)
	if again.err == nil {
		expectClosed(t, again.conn, 5*time.Second)
	}
	px.waitCounter("gatekeeper_device_checks_total", 2, "listener", "tls", "account", "dev", "outcome", "device_not_active")
}

// TestRequireDeviceTurnedOn: a client admitted without a device loses its
// connection when its account begins to require one, and in monitor mode
// a client without a known device passes, counted.
func TestRequireDeviceTurnedOn(t *testing.T) {
	p := newPolicy(t)
	p.account("dev", policy.ModeOn, ipAllowed+"/32")
	up := newUpstream(t, echo)
	px := startProxy(t, Options{Engine: p.engine, TLS: tlsConfig(t), Listeners: []Listener{
		{Name: "tls", Addr: "127.0.0.1:0", Mode: ModeTLS, Routes: []Route{{Account: "dev", Upstream: up.addr()}}},
	}})
	plain := dialDevice(t, ipAllowed, px.addr("tls"), nil)
	if plain.err != nil || plain.asked.Load() {
		t.Fatalf("before the setting: err %v, asked %v; want no error, not asked", plain.err, plain.asked.Load())
	}
	if err := roundTrip(t, plain.conn, "hello"); err != nil {
		t.Fatal(err)
	}
	setRequire := func(mode policy.Mode) {
		t.Helper()
		err := p.st.Update(context.Background(), "dev", func(tx policy.Tx) error {
			a, err := tx.Account()
			if err != nil {
				return err
			}
			a.Mode, a.Settings.RequireDevice = mode, true
			return tx.PutAccount(a)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setRequire(policy.ModeOn)
	expectClosed(t, plain.conn, 5*time.Second)
	px.waitCounter("gatekeeper_connections_revoked_total", 1, "account", "dev")

	setRequire(policy.ModeMonitor)
	p.waitMode("dev", policy.ModeMonitor)
	mon := dialDevice(t, ipAllowed, px.addr("tls"), nil)
	if mon.err != nil || !mon.asked.Load() {
		t.Fatalf("monitor: err %v, asked %v; want no error, asked", mon.err, mon.asked.Load())
	}
	if err := roundTrip(t, mon.conn, "hello"); err != nil {
		t.Fatalf("monitor: %v", err)
	}
	px.waitCounter("gatekeeper_device_checks_total", 1, "listener", "tls", "account", "dev", "outcome", "no_certificate")
}
