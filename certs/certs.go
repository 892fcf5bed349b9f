// Package certs provides the TLS certificates of gatekeeper's listeners:
// certificates issued and renewed over ACME, certificates from PEM files,
// and a throwaway self-signed certificate for trying gatekeeper out. All of
// them live in one certmagic cache that this package configures explicitly
// (its own cache, storage and logger; certmagic's package defaults are
// never touched).
//
// A Manager does not listen for TLS itself. Listeners take
// [Manager.TLSConfig]; the tls and http listeners of the proxy answer
// TLS-ALPN-01 challenges with it, and the Manager answers HTTP-01 challenges
// on its own plain HTTP listener when tls.acme.http_addr is set.
//
// Typical use:
//
//	m, err := certs.New(ctx, certs.Options{TLS: cfg.TLS, ALPNAddr: ":443", Logger: log, Registerer: reg})
//	...
//	ln := tls.NewListener(inner, m.TLSConfig())
//	go m.Run(ctx) // ACME issuance and renewal, until ctx ends
//	...
//	m.Reload(ctx, newCfg.TLS) // on SIGHUP: re-read the certificate files
package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// ALPNChallenge is the ALPN protocol of an ACME TLS-ALPN-01 challenge
// (RFC 8737). A listener that should answer such challenges offers it in
// NextProtos; TLSConfig does so when TLS-ALPN-01 is enabled.
const ALPNChallenge = acmez.ACMETLS1Protocol

// SelfSignedNames are the names the self-signed certificate is made for.
var selfSignedNames = []string{"localhost", "127.0.0.1", "::1"}

// Options configure a Manager.
type Options struct {
	// TLS says where the certificates come from and how TLS is offered.
	// At least one of ACME, Certificates or SelfSigned should be set for
	// TLSConfig to have anything to serve.
	TLS TLS
	// ALPNAddr is the address of a listener that serves TLSConfig and so
	// answers TLS-ALPN-01 challenges; the CA connects to port 443, so in
	// production it is the listener on :443. If empty or its port is 0,
	// TLS-ALPN-01 is not used.
	ALPNAddr string
	// Logger; if nil, nothing is logged.
	Logger *zap.Logger
	// Registerer receives gatekeeper_certificate_expiry_timestamp_seconds.
	// If nil, no metric is registered.
	Registerer prometheus.Registerer
	// ObtainTimeout bounds one attempt to obtain a certificate. If zero,
	// certmagic's default (90s per ACME operation) applies.
	ObtainTimeout time.Duration
}

// Manager holds the certificates. Its methods are safe for concurrent use.
type Manager struct {
	opts   Options
	log    *zap.Logger
	cache  *certmagic.Cache
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer // nil without ACME
	curves []tls.CurveID
	suites []uint16 // TLS 1.2 cipher suites
	alpn   bool
	httpLn net.Listener // HTTP-01 listener, nil without one

	// fallback is served to a client whose server name no certificate
	// matches (or who sent none): the first certificate file, else the
	// self-signed certificate.
	fallback atomic.Pointer[tls.Certificate]
	// static serves the handshakes of a Manager without ACME; nil with it.
	static     atomic.Pointer[staticCerts]
	selfSigned *tls.Certificate

	mu         sync.Mutex // serialises Reload
	staticHash []string   // cache hashes of the certificate files' certificates
	staticName []string   // first name of each, for the expiry metric
	selfName   string

	pendingMu sync.Mutex
	pending   map[string]time.Time // identifiers being obtained, and since when
	anyPend   atomic.Bool

	stopOnce sync.Once
}

// pendingMax bounds how long an obtain attempt counts as pending if
// certmagic never reports its end.
const pendingMax = 10 * time.Minute

// New loads the certificate files, makes the self-signed certificate if
// asked and prepares ACME. It binds the HTTP-01 listener if one is
// configured but starts no issuance: Run does that.
func New(ctx context.Context, opts Options) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	curves, err := Curves(opts.TLS.Curves)
	if err != nil {
		return nil, err
	}
	suites, err := CipherSuites(opts.TLS.CipherSuites)
	if err != nil {
		return nil, err
	}
	m := &Manager{opts: opts, log: opts.Logger, curves: curves, suites: suites, pending: make(map[string]time.Time)}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		Logger:           m.log.Named("cache"),
	})
	ok := false
	defer func() {
		if !ok {
			m.Close()
		}
	}()
	tmpl := certmagic.Config{
		Logger:    m.log,
		KeySource: certmagic.StandardKeyGenerator{KeyType: certmagic.P256},
		OnEvent:   m.onEvent,
		Issuers:   []certmagic.Issuer{}, // not nil: no default issuer creeps in
	}
	if a := opts.TLS.ACME; a != nil {
		tmpl.Storage = &certmagic.FileStorage{Path: a.Storage}
		if len(a.Domains) > 0 {
			// A client that sends no server name, or one that matches no
			// certificate, gets the first domain's.
			tmpl.DefaultServerName = a.Domains[0]
			tmpl.FallbackServerName = a.Domains[0]
		}
	} else {
		// Nothing is written without ACME, but certmagic wants a storage;
		// never its default one in the home directory.
		tmpl.Storage = &certmagic.FileStorage{Path: os.TempDir()}
	}
	m.magic = certmagic.New(m.cache, tmpl)
	if opts.TLS.ACME != nil {
		if err := m.setupACME(opts.TLS.ACME); err != nil {
			return nil, err
		}
	}
	if opts.TLS.SelfSigned {
		cert, err := selfSigned(time.Now())
		if err != nil {
			return nil, err
		}
		if _, err := m.magic.CacheUnmanagedTLSCertificate(ctx, cert, []string{"self_signed"}); err != nil {
			return nil, fmt.Errorf("cache self-signed certificate: %w", err)
		}
		m.selfName = selfSignedNames[0]
		m.selfSigned = &cert
		m.fallback.Store(&cert)
		m.log.Warn("serving a self-signed certificate: clients cannot verify it; use it only to try gatekeeper out")
	}
	if err := m.loadFiles(ctx, opts.TLS.Certificates); err != nil {
		return nil, err
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(&expiryCollector{m: m, desc: expiryDesc}); err != nil {
			return nil, fmt.Errorf("register certificate metrics: %w", err)
		}
	}
	ok = true
	return m, nil
}

func (m *Manager) setupACME(a *ACME) error {
	tmpl := certmagic.ACMEIssuer{
		CA:                      a.CA,
		Email:                   a.Email,
		Agreed:                  true, // configuring a CA is agreeing to its terms
		Logger:                  m.log.Named("acme"),
		DisableHTTPChallenge:    true,
		DisableTLSALPNChallenge: true,
		CertObtainTimeout:       m.opts.ObtainTimeout,
	}
	if tmpl.CA == "" {
		tmpl.CA = certmagic.LetsEncryptProductionCA
	}
	if a.CARoot != "" {
		pem, err := os.ReadFile(a.CARoot)
		if err != nil {
			return fmt.Errorf("read tls.acme.ca_root: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("tls.acme.ca_root %s: no PEM certificate in it", a.CARoot)
		}
		tmpl.TrustedRoots = pool
	}
	// certmagic starts a challenge server of its own on the challenge port
	// when nothing listens there. Point it at our own listeners, which are
	// bound before Run starts issuing, so that it never does.
	if host, port, ok := splitPort(m.opts.ALPNAddr); ok {
		tmpl.DisableTLSALPNChallenge = false
		tmpl.ListenHost = host
		tmpl.AltTLSALPNPort = port
		m.alpn = true
	}
	if a.HTTPAddr != "" {
		ln, err := net.Listen("tcp", a.HTTPAddr)
		if err != nil {
			return fmt.Errorf("acme http-01 listener: %w", err)
		}
		m.httpLn = ln
		host, port, _ := splitPort(ln.Addr().String())
		tmpl.DisableHTTPChallenge = false
		tmpl.ListenHost = host
		tmpl.AltHTTPPort = port
	}
	if tmpl.DisableHTTPChallenge && tmpl.DisableTLSALPNChallenge {
		return errors.New("tls.acme: no challenge can be answered: set tls.acme.http_addr or have a tls or http listener")
	}
	m.issuer = certmagic.NewACMEIssuer(m.magic, tmpl)
	m.magic.Issuers = []certmagic.Issuer{m.issuer}
	return nil
}

// splitPort splits host:port and reports whether the port is set.
func splitPort(addr string) (string, int, bool) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, false
	}
	port, err := strconv.Atoi(p)
	if err != nil || port == 0 {
		return "", 0, false
	}
	return host, port, true
}

// Curves maps tls.curves names to Go's identifiers; nil for none, which
// leaves Go's defaults (X25519MLKEM768 first).
func Curves(names []string) ([]tls.CurveID, error) {
	var ids []tls.CurveID
	for _, n := range names {
		id, ok := curveIDs[n]
		if !ok {
			return nil, fmt.Errorf("tls.curves: %q is not a known group", n)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// DefaultCipherSuites are the TLS 1.2 suites offered when
// tls.cipher_suites is empty: forward secret and AEAD only, Mozilla's
// "intermediate" profile. Go's own default adds CBC suites (LUCKY13 to
// testssl.sh) and RSA key exchange.
var DefaultCipherSuites = []string{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

// CipherSuites maps tls.cipher_suites names to identifiers
// (CipherSuiteID); DefaultCipherSuites when names is empty.
func CipherSuites(names []string) ([]uint16, error) {
	if len(names) == 0 {
		names = DefaultCipherSuites
	}
	var ids []uint16
	for _, n := range names {
		id, ok := CipherSuiteID(n)
		if !ok {
			return nil, fmt.Errorf("tls.cipher_suites: %q is not a secure TLS 1.2 cipher suite Go knows", n)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// CipherSuiteID returns the identifier of a tls.cipher_suites name: one
// of Go's secure suites (tls.CipherSuites, no insecure one) that TLS 1.2
// uses; TLS 1.3's are not configurable in Go.
func CipherSuiteID(name string) (uint16, bool) {
	for _, s := range tls.CipherSuites() {
		if s.Name == name && slices.Contains(s.SupportedVersions, tls.VersionTLS12) {
			return s.ID, true
		}
	}
	return 0, false
}

// KnownCurves are the key-exchange group names Curves accepts, in
// preference order.
var KnownCurves = []string{"X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024", "X25519", "P256", "P384", "P521"}

var curveIDs = map[string]tls.CurveID{
	"X25519MLKEM768":     tls.X25519MLKEM768,
	"SecP256r1MLKEM768":  tls.SecP256r1MLKEM768,
	"SecP384r1MLKEM1024": tls.SecP384r1MLKEM1024,
	"X25519":             tls.X25519,
	"P256":               tls.CurveP256,
	"P384":               tls.CurveP384,
	"P521":               tls.CurveP521,
}

// TLSConfig returns a new server configuration that serves the managed
// certificates: TLS 1.2 at least, with AEAD suites only unless
// tls.cipher_suites says otherwise (TLS 1.3's are Go's, which has only
// AEAD ones), the configured key-exchange groups, and
// NextProtos holding ALPNChallenge when TLS-ALPN-01 is in use (callers
// append their own protocols). Certificates are looked up at each
// handshake, so a reload or renewal needs no new configuration.
func (m *Manager) TLSConfig() *tls.Config {
	c := &tls.Config{
		GetCertificate:   m.certificate,
		MinVersion:       tls.VersionTLS12,
		CurvePreferences: slices.Clone(m.curves),
		CipherSuites:     slices.Clone(m.suites),
	}
	if m.alpn {
		c.NextProtos = []string{ALPNChallenge}
	}
	return c
}

// certificate picks the certificate for a handshake: certmagic's choice by
// server name, else the fallback, except for ACME challenges, which get
// their challenge certificate or nothing.
func (m *Manager) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if st := m.static.Load(); st != nil {
		if isChallenge(hello) {
			return nil, fmt.Errorf("no ACME challenge pending for %q", hello.ServerName)
		}
		if c := st.pick(hello); c != nil {
			return c, nil
		}
		if f := m.fallback.Load(); f != nil {
			return f, nil
		}
		return nil, fmt.Errorf("certificate for %q: no certificate", hello.ServerName)
	}
	c, err := m.magic.GetCertificate(hello)
	if err == nil && c != nil && len(c.Certificate) > 0 {
		return c, nil
	}
	if isChallenge(hello) {
		return nil, fmt.Errorf("no ACME challenge pending for %q", hello.ServerName)
	}
	if f := m.fallback.Load(); f != nil {
		return f, nil
	}
	if err == nil {
		err = errors.New("no certificate")
	}
	return nil, fmt.Errorf("certificate for %q: %w", hello.ServerName, err)
}

func isChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ALPNChallenge
}

// ChallengePending reports whether a certificate is being obtained, so
// that a TLS-ALPN-01 validation may arrive. Listeners use it to decide
// whether a client they would otherwise drop at once may be the CA.
func (m *Manager) ChallengePending() bool { return m.anyPend.Load() }

func (m *Manager) onEvent(ctx context.Context, event string, data map[string]any) error {
	id, _ := data["identifier"].(string)
	switch event {
	case "cert_obtaining":
		m.setPending(id, true)
	case "cert_obtained":
		m.setPending(id, false)
		m.log.Info("certificate obtained", zap.String("identifier", id), zap.Any("renewal", data["renewal"]))
	case "cert_failed":
		m.setPending(id, false)
		m.log.Error("could not obtain certificate", zap.String("identifier", id), zap.Any("renewal", data["renewal"]), zap.Any("error", data["error"]))
	}
	return nil
}

func (m *Manager) setPending(id string, on bool) {
	m.pendingMu.Lock()
	defer m.pendingMu.Unlock()
	now := time.Now()
	if on {
		m.pending[id] = now
	} else {
		delete(m.pending, id)
	}
	for k, since := range m.pending {
		if now.Sub(since) > pendingMax {
			delete(m.pending, k)
		}
	}
	m.anyPend.Store(len(m.pending) > 0)
}

// Run obtains and renews the ACME certificates and answers HTTP-01
// challenges until ctx ends, then stops the certificate cache. Without
// ACME it only waits for ctx. Call it after the listeners that answer
// TLS-ALPN-01 are bound.
func (m *Manager) Run(ctx context.Context) error {
	defer m.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	if m.httpLn != nil {
		srv := &http.Server{
			Handler:           m.issuer.HTTPChallengeHandler(http.NotFoundHandler()),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
			ErrorLog:          zap.NewStdLog(m.log.Named("http01")),
		}
		wg.Add(1)
		go func() { defer wg.Done(); serveChallenges(srv, m.httpLn) }()
		defer srv.Close()
		m.log.Info("answering ACME HTTP-01 challenges", zap.String("addr", m.httpLn.Addr().String()))
	}
	if a := m.opts.TLS.ACME; a != nil && len(a.Domains) > 0 {
		if err := m.magic.ManageAsync(ctx, a.Domains); err != nil {
			return fmt.Errorf("manage certificates for %v: %w", a.Domains, err)
		}
	}
	<-ctx.Done()
	return nil
}

func serveChallenges(srv *http.Server, ln net.Listener) {
	srv.Serve(ln)
}

// Close stops the certificate cache's maintenance and the HTTP-01
// listener. Run calls it on its way out; call it only if Run never runs.
func (m *Manager) Close() {
	m.stopOnce.Do(func() {
		if m.httpLn != nil {
			m.httpLn.Close()
		}
		m.cache.Stop()
	})
}

// Reload re-reads the certificate files named in c.Certificates and swaps
// them in at once; on any error the old ones stay. Changes to tls.acme,
// tls.self_signed, tls.curves and tls.cipher_suites need a restart and
// are only logged.
func (m *Manager) Reload(ctx context.Context, c TLS) error {
	if !reflect.DeepEqual(c.ACME, m.opts.TLS.ACME) || c.SelfSigned != m.opts.TLS.SelfSigned || !slices.Equal(c.Curves, m.opts.TLS.Curves) ||
		!slices.Equal(c.CipherSuites, m.opts.TLS.CipherSuites) {
		m.log.Warn("changes to tls.acme, tls.self_signed, tls.curves and tls.cipher_suites take effect at the next restart")
	}
	return m.loadFiles(ctx, c.Certificates)
}

// loadFiles caches the certificates of files and drops the ones cached
// from the previous list.
func (m *Manager) loadFiles(ctx context.Context, files []CertFile) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	type loaded struct {
		cert      tls.Certificate
		certPEM   []byte
		keyPEM    []byte
		firstName string
	}
	var all []loaded
	for i, f := range files {
		certPEM, err := os.ReadFile(f.Cert)
		if err != nil {
			return fmt.Errorf("tls.certificates[%d]: %w", i, err)
		}
		keyPEM, err := os.ReadFile(f.Key)
		if err != nil {
			return fmt.Errorf("tls.certificates[%d]: %w", i, err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("tls.certificates[%d] (%s, %s): %w", i, f.Cert, f.Key, err)
		}
		all = append(all, loaded{cert: cert, certPEM: certPEM, keyPEM: keyPEM, firstName: firstName(cert.Leaf)})
	}
	var hashes, names []string
	for i, l := range all {
		h, err := m.magic.CacheUnmanagedCertificatePEMBytes(ctx, l.certPEM, l.keyPEM, []string{"file"})
		if err != nil {
			m.cache.Remove(hashes)
			return fmt.Errorf("tls.certificates[%d]: %w", i, err)
		}
		hashes = append(hashes, h)
		names = append(names, l.firstName)
	}
	var gone []string
	for _, h := range m.staticHash {
		if !slices.Contains(hashes, h) {
			gone = append(gone, h)
		}
	}
	if len(all) > 0 {
		c := all[0].cert
		m.fallback.Store(&c)
	}
	if m.issuer == nil {
		var certs []*tls.Certificate
		if m.selfSigned != nil {
			certs = append(certs, m.selfSigned)
		}
		for _, l := range all {
			certs = append(certs, &l.cert)
		}
		m.static.Store(newStaticCerts(certs))
	}
	m.cache.Remove(gone)
	m.staticHash, m.staticName = hashes, names
	for i, l := range all {
		m.log.Info("loaded certificate file", zap.String("cert", files[i].Cert), zap.String("name", l.firstName),
			zap.Time("not_after", l.cert.Leaf.NotAfter))
	}
	return nil
}

func firstName(c *x509.Certificate) string {
	switch {
	case c == nil:
		return ""
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.IPAddresses) > 0:
		return c.IPAddresses[0].String()
	}
	return c.Subject.CommonName
}

// selfSigned makes an ECDSA P-256 certificate for localhost, valid for 90
// days from now.
func selfSigned(now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "gatekeeper self-signed"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(90 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, n := range selfSignedNames {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

var expiryDesc = prometheus.NewDesc("gatekeeper_certificate_expiry_timestamp_seconds",
	"When a served certificate expires (its NotAfter), in Unix seconds, by its first name; 0 for an ACME domain with no certificate yet.",
	[]string{"name"}, nil)

// expiryCollector reads expiry times from the cache at scrape time.
type expiryCollector struct {
	m    *Manager
	desc *prometheus.Desc
}

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	for name, t := range c.m.Expiries() {
		var v float64
		if !t.IsZero() {
			v = float64(t.Unix())
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, name)
	}
}

// Expiries returns, for each name a certificate is configured for (ACME
// domains, the first name of each certificate file, the self-signed
// certificate), the latest expiry among the cached certificates for it;
// the zero time when none is cached.
func (m *Manager) Expiries() map[string]time.Time {
	m.mu.Lock()
	names := slices.Clone(m.staticName)
	m.mu.Unlock()
	if a := m.opts.TLS.ACME; a != nil {
		names = append(names, a.Domains...)
	}
	if m.selfName != "" {
		names = append(names, m.selfName)
	}
	out := make(map[string]time.Time, len(names))
	for _, n := range names {
		var latest time.Time
		for _, c := range m.cache.AllMatchingCertificates(n) {
			if c.Leaf != nil && c.Leaf.NotAfter.After(latest) {
				latest = c.Leaf.NotAfter
			}
		}
		if cur, seen := out[n]; !seen || latest.After(cur) {
			out[n] = latest
		}
	}
	return out
}
