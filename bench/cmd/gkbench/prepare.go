package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// The loopback addresses of the run. Linux routes all of 127.0.0.0/8 to
// lo, so clients can pick their source address.
const (
	allowedNet   = "127.0.0.0/25" // the bench account's rule; HAProxy's allow.lst
	allowedFirst = "127.0.0.2"    // allowed clients
	allowedLast  = "127.0.0.126"  //
	deniedFirst  = "127.0.0.128"  // flooders
	deniedLast   = "127.0.0.254"  //
	probeNet     = "127.0.1.0/24" // propagation probes, one address each
	serverName   = "bench.gatekeeper.test"
	benchAccount = "bench"
	propAccount  = "prop"
)

// env is the run's settings, written by prepare as KEY=value lines that
// bench/run sources and measure reads back.
type env map[string]string

func (e env) get(k string) string {
	v, ok := e[k]
	if !ok {
		panic("gkbench: env has no " + k)
	}
	return v
}

func (e env) addr(k string) string { return net.JoinHostPort("127.0.0.1", e.get(k)) }

func (e env) int(k string) int {
	n, err := strconv.Atoi(e.get(k))
	if err != nil {
		panic(fmt.Sprintf("gkbench: env %s=%q is not a number", k, e.get(k)))
	}
	return n
}

func (e env) write(path string) error {
	var b strings.Builder
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, e[k])
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

func readEnv(path string) (env, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	e := env{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			e[k] = v
		}
	}
	return e, sc.Err()
}

// ports are the listening ports of the run.
var ports = []string{
	"REDIS_PORT", "UP_RAW", "UP_HTTP", "UP_SPLICE",
	"HAP_TCP", "HAP_TLS", "HAP_HTTP", "HAP_ECHO",
	"GKA_TCP", "GKA_TLS", "GKA_HTTP", "GKA_PROP", "GKA_ADMIN", "GKA_OPS",
	"GKB_TCP", "GKB_TLS", "GKB_HTTP", "GKB_PROP", "GKB_ADMIN", "GKB_OPS",
	// The db group: both proxies in front of PostgreSQL, and one
	// gatekeeper connect for each tls listener (CONN_GK, CONN_HAP).
	"GKA_DB_TCP", "GKA_DB_TLS", "HAP_DB_TCP", "HAP_DB_TLS", "CONN_GK", "CONN_HAP",
}

// prepareCmd writes everything the run needs into a directory: the
// certificate, the configurations of both gatekeepers and HAProxy, and
// the env file with the ports picked.
func prepareCmd(args []string) error {
	fs := flag.NewFlagSet("prepare", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory to write into")
	pgPort := fs.Int("pg-port", 0, "`port` of a PostgreSQL on 127.0.0.1 that lets user postgres in (0: pick one for a private server, PG_PRIVATE=1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("prepare: -dir is required")
	}
	e := env{"DIR": *dir}
	free, err := freePorts(len(ports))
	if err != nil {
		return err
	}
	for i, k := range ports {
		e[k] = strconv.Itoa(free[i])
	}
	e["PG_PORT"], e["PG_PRIVATE"] = strconv.Itoa(*pgPort), "0"
	if *pgPort == 0 {
		p, err := freePorts(1)
		if err != nil {
			return err
		}
		e["PG_PORT"], e["PG_PRIVATE"] = strconv.Itoa(p[0]), "1"
	}
	// Every idle connection holds two descriptors in the proxy (client and
	// upstream): stay within the process limit, with room for HAProxy's
	// splice pipes (maxpipes, two descriptors each) and listeners.
	maxFiles, err := fileLimit()
	if err != nil {
		return err
	}
	headroom := min(1000, maxFiles/4)
	idle := min(10000, (maxFiles-headroom)/2/100*100)
	e["IDLE_CONNS"] = strconv.Itoa(idle)
	e["NOFILE"] = strconv.Itoa(maxFiles)

	if err := writeCert(*dir); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "allow.lst"), []byte(allowedNet+"\n"), 0o644); err != nil {
		return err
	}
	for _, inst := range []struct {
		name, prefix, curves string
		db                   bool
	}{
		{"gk-a", "GKA", "\n  curves: [X25519]", true}, // like for like with HAProxy
		{"gk-b", "GKB", "", false},                    // Go's default: X25519MLKEM768 first
	} {
		d := filepath.Join(*dir, inst.name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if err := writeTemplate(filepath.Join(d, "gatekeeper.yaml"), gatekeeperYAML, e, inst.prefix, map[string]any{
			"Dir": d, "Top": *dir, "Curves": inst.curves, "Bench": benchAccount, "Prop": propAccount, "DB": inst.db,
		}); err != nil {
			return err
		}
	}
	if err := writeTemplate(filepath.Join(*dir, "haproxy.cfg"), haproxyCfg, e, "HAP", map[string]any{
		"Top": *dir, "MaxConn": idle + 100, "MaxPipes": headroom / 4,
	}); err != nil {
		return err
	}
	return e.write(filepath.Join(*dir, "env"))
}

// freePorts returns n loopback ports nobody listens on now, all different.
func freePorts(n int) ([]int, error) {
	var out []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// writeTemplate writes text executed with data; in it, {{env "KEY"}} is a
// setting of e and {{port "KEY"}} the one of prefix_KEY.
func writeTemplate(path, text string, e env, prefix string, data any) error {
	t := template.Must(template.New(filepath.Base(path)).Funcs(template.FuncMap{
		"env":  e.get,
		"port": func(k string) string { return e.get(prefix + "_" + k) },
	}).Parse(text))
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

// writeCert writes the ECDSA P-256 certificate both proxies serve:
// cert.pem and key.pem for gatekeeper, haproxy.pem (both) for HAProxy.
func writeCert(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: serverName},
		DNSNames:     []string{serverName},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	for name, b := range map[string][]byte{
		"cert.pem": certPEM, "key.pem": keyPEM, "haproxy.pem": append(slices.Clone(certPEM), keyPEM...),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// gatekeeperYAML is the configuration of one gatekeeper instance: the
// listeners under test, all for the bench account except prop, whose
// rules the propagation measurement changes. Limits are raised for the
// idle-connection count but stay in force.
const gatekeeperYAML = `# written by gkbench prepare
store:
  url: "redis://127.0.0.1:{{env "REDIS_PORT"}}/0"
  snapshot: "{{.Dir}}/policy.snapshot"
tls:
  certificates: [{cert: "{{.Top}}/cert.pem", key: "{{.Top}}/key.pem"}]{{.Curves}}
listeners:
  - name: tcp
    addr: "127.0.0.1:{{port "TCP"}}"
    mode: tcp
    routes: [{account: "{{.Bench}}", upstream: "127.0.0.1:{{env "UP_RAW"}}"}]
    timeouts: {idle: 10m}
    limits: {per_ip: 1000, per_account: 20000}
  - name: tls
    addr: "127.0.0.1:{{port "TLS"}}"
    mode: tls
    routes: [{account: "{{.Bench}}", upstream: "127.0.0.1:{{env "UP_RAW"}}"}]
    timeouts: {idle: 10m}
    limits: {per_ip: 1000, per_account: 20000}
  - name: http
    addr: "127.0.0.1:{{port "HTTP"}}"
    mode: http
    routes: [{account: "{{.Bench}}", upstream: "127.0.0.1:{{env "UP_HTTP"}}"}]
    timeouts: {idle: 10m}
    limits: {per_ip: 1000, per_account: 20000}
  - name: prop
    addr: "127.0.0.1:{{port "PROP"}}"
    mode: tcp
    routes: [{account: "{{.Prop}}", upstream: "127.0.0.1:{{env "UP_RAW"}}"}]
{{- if .DB}}
  - name: db-tcp
    addr: "127.0.0.1:{{port "DB_TCP"}}"
    mode: tcp
    routes: [{account: "{{.Bench}}", upstream: "127.0.0.1:{{env "PG_PORT"}}"}]
    timeouts: {idle: 10m}
    limits: {per_ip: 1000, per_account: 20000}
  - name: db-tls
    addr: "127.0.0.1:{{port "DB_TLS"}}"
    mode: tls
    routes: [{account: "{{.Bench}}", upstream: "127.0.0.1:{{env "PG_PORT"}}"}]
    timeouts: {idle: 10m}
    limits: {per_ip: 1000, per_account: 20000}
{{- end}}
admin:
  addr: "127.0.0.1:{{port "ADMIN"}}"
  operator_token_file: "{{.Dir}}/operator.token"
  # One secrets key for every instance, as a fleet must have: the key ring
  # of the http listeners' assertions is sealed with it in the shared store.
  secrets_key_file: "{{.Top}}/secrets.key"
ops:
  addr: "127.0.0.1:{{port "OPS"}}"
  pprof: true   # for bench/run --hold and go tool pprof; idle otherwise
log: {level: info, format: json}
`

// haproxyCfg is HAProxy configured like gatekeeper: the same certificate,
// TLS 1.3 with TLS_AES_128_GCM_SHA256 and X25519 only, the same source
// ACL checked at accept, splice in tcp mode: forced both ways, since
// splice-auto rarely splices here and is slower (measured: 0.9–1.0 GiB/s
// with 2.5× the CPU, against 1.2 GiB/s forced).
const haproxyCfg = `# written by gkbench prepare
global
    maxconn {{.MaxConn}}
    maxpipes {{.MaxPipes}}
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-bind-curves X25519

defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
    maxconn {{.MaxConn}}

frontend tcp_in
    bind 127.0.0.1:{{env "HAP_TCP"}}
    tcp-request connection reject unless { src -f {{.Top}}/allow.lst }
    option splice-request
    option splice-response
    default_backend raw

frontend tls_in
    bind 127.0.0.1:{{env "HAP_TLS"}} ssl crt {{.Top}}/haproxy.pem curves X25519
    tcp-request connection reject unless { src -f {{.Top}}/allow.lst }
    default_backend raw

frontend http_in
    mode http
    bind 127.0.0.1:{{env "HAP_HTTP"}} ssl crt {{.Top}}/haproxy.pem curves X25519 alpn h2,http/1.1
    tcp-request connection reject unless { src -f {{.Top}}/allow.lst }
    option forwardfor
    timeout http-request 10s
    timeout http-keep-alive 10m
    default_backend web

# The echo and db groups: small messages, through HAProxy as one would
# configure it for them (no splice options: for messages of a few hundred
# bytes a splice is two system calls and a pipe where a recv and a send do).
frontend echo_tcp_in
    bind 127.0.0.1:{{env "HAP_ECHO"}}
    tcp-request connection reject unless { src -f {{.Top}}/allow.lst }
    default_backend raw_small

frontend db_tcp_in
    bind 127.0.0.1:{{env "HAP_DB_TCP"}}
    tcp-request connection reject unless { src -f {{.Top}}/allow.lst }
    default_backend pg

frontend db_tls_in
    bind 127.0.0.1:{{env "HAP_DB_TLS"}} ssl crt {{.Top}}/haproxy.pem curves X25519
    tcp-request connection reject unless { src -f {{.Top}}/allow.lst }
    default_backend pg

backend raw
    option splice-request
    option splice-response
    server up 127.0.0.1:{{env "UP_RAW"}}

backend raw_small
    server up 127.0.0.1:{{env "UP_RAW"}}

backend pg
    server pg 127.0.0.1:{{env "PG_PORT"}}

backend web
    mode http
    server up 127.0.0.1:{{env "UP_HTTP"}}
`
