package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Let's Encrypt's test CA, built from the Go module proxy; it is kept out
// of go.mod.
const pebbleModule = "github.com/letsencrypt/pebble/v2"
const pebbleVersion = "v2.10.1"

var pebbleBuild struct {
	once          sync.Once
	pebble, chall string
	err           error
	out           []byte
}

// pebbleBinaries installs pebble and pebble-challtestsrv into the test's
// work directory, once per run.
func pebbleBinaries(t *testing.T) (pebble, challtestsrv string) {
	t.Helper()
	b := &pebbleBuild
	b.once.Do(func() {
		dir := filepath.Join(workDir, "pebble-bin")
		cmd := exec.Command("go", "install",
			pebbleModule+"/cmd/pebble@"+pebbleVersion, pebbleModule+"/cmd/pebble-challtestsrv@"+pebbleVersion)
		cmd.Dir = workDir // outside this module: nothing touches go.mod
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
		b.out, b.err = cmd.CombinedOutput()
		b.pebble, b.chall = filepath.Join(dir, "pebble"), filepath.Join(dir, "pebble-challtestsrv")
	})
	if b.err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("build pebble: %v\n%s", b.err, b.out)
		}
		t.Skipf("cannot build pebble (no module proxy?): %v\n%s", b.err, b.out)
	}
	return b.pebble, b.chall
}

// runProcess starts a helper process that dies with the test.
func runProcess(t *testing.T, name string, env []string, args ...string) *syncBuffer {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), out.String())
		}
	})
	return out
}

// pebbleCA writes a CA and a certificate for 127.0.0.1 signed by it, for
// pebble's own HTTPS, and returns the paths.
func pebbleCA(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e pebble CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "pebble"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, b := range map[string][]byte{
		caFile:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// TestACME has certmagic in gatekeeper obtain certificates from pebble on
// loopback: TLS-ALPN-01 answered by a tls listener whose account does not
// allow the CA's address (it gets the challenge and nothing else), and
// HTTP-01 answered on tls.acme.http_addr by a gatekeeper with only a tcp
// listener.
func TestACME(t *testing.T) {
	pebble, chall := pebbleBinaries(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := pebbleCA(t, dir)
	acmeAddr, mgmtAddr, dnsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	alpnAddr, httpAddr := freeAddr(t), freeAddr(t)
	_, alpnPort, _ := net.SplitHostPort(alpnAddr)
	_, httpPort, _ := net.SplitHostPort(httpAddr)

	runProcess(t, chall, nil, "-dnsserver", dnsAddr, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "", "-management", freeAddr(t))
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress": acmeAddr, "managementListenAddress": mgmtAddr,
		"certificate": certFile, "privateKey": keyFile,
		"httpPort": mustAtoi(t, httpPort), "tlsPort": mustAtoi(t, alpnPort),
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
		"retryAfter": map[string]int{"authz": 1, "order": 1}, "keyAlgorithm": "ecdsa",
		"profiles": map[string]any{"default": map[string]any{"description": "e2e", "validityPeriod": 7776000}},
	}}
	b, _ := json.Marshal(cfg)
	pebbleConfig := filepath.Join(dir, "pebble.json")
	os.WriteFile(pebbleConfig, b, 0o600)
	runProcess(t, pebble, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"},
		"-config", pebbleConfig, "-dnsserver", dnsAddr)

	caPEM, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	waitHTTP(t, client, "https://"+acmeAddr+"/dir")

	acme := func(domain, extra string) string {
		return fmt.Sprintf(`tls:
  acme: {email: ops@example.com, ca: "https://%s/dir", domains: [%s], storage: ./data/certmagic, ca_root: "%s"%s}
`, acmeAddr, domain, caFile, extra)
	}
	upstream := echoServer(t)
	gdir := t.TempDir()
	seed(t, gdir, map[string][]string{"acct": {ipAllowed + "/32"}}, nil) // not 127.0.0.1, where the CA connects from
	adminAddr := freeAddr(t)
	alpnGK := startGatekeeper(t, gdir, storeConfig+acme("gate.test", "")+fmt.Sprintf(`listeners:
  - {name: db, addr: "%s", mode: tls, routes: [{account: acct, upstream: "%s"}]}
admin: {addr: "%s"}
`, alpnAddr, upstream, adminAddr))
	hdir := t.TempDir()
	seed(t, hdir, map[string][]string{"acct": {ipAllowed + "/32"}}, nil)
	httpGK := startGatekeeper(t, hdir, storeConfig+acme("http.test", fmt.Sprintf(`, http_addr: "%s"`, httpAddr))+fmt.Sprintf(`listeners:
  - {name: db, addr: "%s", mode: tcp, routes: [{account: acct, upstream: "%s"}]}
`, freeAddr(t), upstream))

	roots := pebbleRoots(t, client, mgmtAddr)
	deadline := time.Now().Add(90 * time.Second)
	for {
		c, _, err := tlsDial(ipAllowed, alpnAddr, "gate.test", nil)
		if err == nil {
			state := c.ConnectionState()
			leaf := state.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, ic := range state.PeerCertificates[1:] {
				inter.AddCert(ic)
			}
			_, verr := leaf.Verify(x509.VerifyOptions{DNSName: "gate.test", Roots: roots, Intermediates: inter})
			if verr == nil {
				if err := roundTrip(c, "over a certificate from pebble"); err != nil {
					t.Error(err)
				}
				c.Close()
				t.Logf("TLS-ALPN-01: certificate for gate.test issued by %q", leaf.Issuer.CommonName)
				break
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate from pebble for gate.test within 90s (last: %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The CA connects from 127.0.0.1, which the account does not allow:
	// it got the challenge certificate, and nothing else.
	answered := false
	for _, line := range strings.Split(alpnGK.log.String(), "\n") {
		answered = answered || (strings.Contains(line, "answered an ACME TLS-ALPN-01 validation") &&
			strings.Contains(line, `"client":"127.0.0.1"`))
	}
	if !answered {
		t.Error("no TLS-ALPN-01 validation from 127.0.0.1 was answered by the tls listener")
	}
	// The admin listener serves the same certificate.
	if c, _, err := tlsDial(ipAllowed, adminAddr, "gate.test", roots); err != nil {
		t.Errorf("admin listener with the ACME certificate: %v", err)
	} else {
		c.Close()
	}
	if c, certs, err := tlsDial(ipDenied, alpnAddr, "gate.test", nil); err == nil || certs > 0 {
		if c != nil {
			c.Close()
		}
		t.Errorf("after issuance a denied client got %d certificates (%v)", certs, err)
	}

	for {
		if httpGK.metric("gatekeeper_certificate_expiry_timestamp_seconds", "name", "http.test") > float64(time.Now().Unix()) {
			t.Log("HTTP-01: certificate for http.test issued")
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no certificate from pebble for http.test within 90s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func mustAtoi(t *testing.T, s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func waitHTTP(t *testing.T, c *http.Client, url string) {
	t.Helper()
	for i := 0; i < 300; i++ {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not answering", url)
}

// pebbleRoots fetches the root pebble issues under from its management
// API.
func pebbleRoots(t *testing.T, c *http.Client, mgmt string) *x509.CertPool {
	t.Helper()
	resp, err := c.Get("https://" + mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no root from pebble: %s", b)
	}
	return pool
}
