// Package config reads and validates gatekeeper's YAML configuration file.
//
// Decoding is strict: an unknown key is an error. Validation reports every
// problem at once, each with the path of the key it concerns, e.g.
// "listeners[0].addr: port 99999 out of range". The package only describes
// configuration; it starts nothing.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole file. See configs/ for examples.
type Config struct {
	Store     Store      `yaml:"store"`
	TLS       TLS        `yaml:"tls"`
	Listeners []Listener `yaml:"listeners"`
	Admin     Admin      `yaml:"admin"`
	Assertion Assertion  `yaml:"assertion"`
	Notify    Notify     `yaml:"notify"`
	Ops       Ops        `yaml:"ops"`
	Log       Log        `yaml:"log"`
	Bootstrap *Bootstrap `yaml:"bootstrap"`
}

// Store selects the policy store.
type Store struct {
	// URL is file:PATH for the embedded store, or redis:// / rediss://.
	// Default file:./data/gatekeeper.db.
	URL string `yaml:"url"`
	// Snapshot is the last-good-policy file. Default ./data/policy.snapshot.
	Snapshot string `yaml:"snapshot"`
	// Timeout bounds each store call an admin request or web page makes,
	// so that a hung store answers 503 quickly instead of holding the
	// caller. It does not apply to the policy engine, which keeps
	// enforcing what it has. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
	// Backup, when set, has serve take backups on a schedule (backup.go).
	Backup *StoreBackup `yaml:"backup"`
}

// TLS holds the certificates used by tls and http listeners and the admin
// listener.
type TLS struct {
	ACME         *ACME         `yaml:"acme"`
	Certificates []Certificate `yaml:"certificates"`
	// SelfSigned makes a throwaway certificate, for trying gatekeeper out.
	SelfSigned bool `yaml:"self_signed"`
	// Curves are key-exchange groups in preference order; Go's defaults
	// (X25519MLKEM768 first) when empty.
	Curves []string `yaml:"curves"`
	// CipherSuites are the TLS 1.2 cipher suites offered, by Go's names
	// (TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, …), to widen the default:
	// forward-secret AEAD suites only. TLS 1.3's are always Go's.
	CipherSuites []string `yaml:"cipher_suites"`
}

// ACME issues certificates from an ACME CA (Let's Encrypt by default).
type ACME struct {
	Email   string   `yaml:"email"`
	CA      string   `yaml:"ca"`
	Domains []string `yaml:"domains"`
	// Storage is where certificates and the ACME account are kept.
	// Default ./data/certmagic.
	Storage string `yaml:"storage"`
	// CARoot is a PEM file to trust for the CA's own TLS (a test CA).
	CARoot string `yaml:"ca_root"`
	// HTTPAddr is where the HTTP-01 challenge is answered; empty leaves
	// only TLS-ALPN-01 on the tls listeners.
	HTTPAddr string `yaml:"http_addr"`
}

// Certificate is a certificate and key in PEM files.
type Certificate struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Listener modes.
const (
	ModeTLS  = "tls"
	ModeTCP  = "tcp"
	ModeHTTP = "http"
)

// Access settings of a route (Route.Access).
const (
	AccessAddress      = "address"
	AccessLogin        = "login"
	AccessAddressLogin = "address+login"
)

// Listener is one address the proxy accepts desktop clients on.
type Listener struct {
	Name          string         `yaml:"name"`
	Addr          string         `yaml:"addr"`
	Mode          string         `yaml:"mode"`
	ProxyProtocol *ProxyProtocol `yaml:"proxy_protocol"`
	Routes        []Route        `yaml:"routes"`
	Timeouts      Timeouts       `yaml:"timeouts"`
	Limits        Limits         `yaml:"limits"`
}

// ProxyProtocol configures PROXY protocol on a listener.
type ProxyProtocol struct {
	// Trusted are the load balancers whose PROXY header is believed; a
	// connection from anyone else that sends one is refused.
	Trusted []string `yaml:"trusted"`
	// Upstream sends a PROXY protocol v2 header to the upstream.
	Upstream bool `yaml:"upstream"`
}

// Route joins clients of one account to an upstream.
type Route struct {
	// SNI selects the route by TLS server name; empty is the listener's
	// default route.
	SNI      string `yaml:"sni"`
	Account  string `yaml:"account"`
	Upstream string `yaml:"upstream"`
	// Access (http listeners): address (the default: the account's
	// address rules), login (anywhere, signed in at gatekeeper as a person
	// with web access) or address+login (both). A login needs an sni and
	// admin.public_url.
	Access string `yaml:"access"`
}

// Timeouts of a listener. Zero fields take the defaults shown, which the
// proxy applies (proxy.Timeouts).
type Timeouts struct {
	// Handshake bounds the PROXY header, ClientHello and TLS handshake. 10s.
	Handshake time.Duration `yaml:"handshake"`
	// Dial bounds connecting to the upstream. 5s.
	Dial time.Duration `yaml:"dial"`
	// Idle closes a connection with no traffic either way. 1h.
	Idle time.Duration `yaml:"idle"`
	// Drain is how long shutdown waits for live connections. 30s.
	Drain time.Duration `yaml:"drain"`
}

// Limits of a listener. Zero fields take the defaults shown, which the
// proxy applies (proxy.Limits); -1 is unlimited.
type Limits struct {
	// PerIP caps live connections from one client address. 256.
	PerIP int `yaml:"per_ip"`
	// PerAccount caps live connections to one account. 4096.
	PerAccount int `yaml:"per_account"`
	// Pending caps connections not yet checked: accepted, still awaiting
	// their PROXY header or ClientHello (each holds about 15 KiB). 4096;
	// -1 for unlimited. One over it is reset at once.
	Pending int `yaml:"pending"`
	// PendingPerIP caps them per socket peer (a trusted load balancer
	// aside, which carries many clients). 64; -1 for unlimited.
	PendingPerIP int `yaml:"pending_per_ip"`
}

// Admin is the HTTPS admin API and web pages.
type Admin struct {
	// Addr of the admin listener; empty disables it.
	Addr string `yaml:"addr"`
	// TrustedProxies are peers whose X-Forwarded-For is believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// OperatorTokenFile holds the operator's bearer token. If the file does
	// not exist at start, a random token is written to it (mode 0600).
	// Default ./data/operator.token.
	OperatorTokenFile string `yaml:"operator_token_file"`
	// SecretsKeyFile holds the key that seals second-factor secrets (TOTP)
	// in the store. If the file does not exist at start, a random key is
	// written to it (mode 0600). Every instance of a fleet needs the same
	// file. Default: secrets.key in the directory of OperatorTokenFile.
	SecretsKeyFile string `yaml:"secrets_key_file"`
	// PublicURL is the admin pages' address as people reach it
	// ("https://gate.example.com:8443"): its host name is the passkeys'
	// relying party ID and its origin the only one a passkey answer may
	// come from. Changing the host name orphans registered passkeys.
	// Default: none, and passkeys are not offered.
	PublicURL string `yaml:"public_url"`
	// SessionTTL is how long a login lasts. Default 12h.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// Hosts, if set, are the only host names the admin listener answers
	// to, which defeats DNS rebinding. Default: any.
	Hosts []string `yaml:"hosts"`
	// LoginLimits bound failed logins.
	LoginLimits LoginLimits `yaml:"login_limits"`
}

// Notify is how notifications leave: webhooks and email.
type Notify struct {
	// AllowPrivateDestinations lets webhooks reach loopback, private,
	// link-local and multicast addresses, checked on the address dialled.
	// Default false: an account's master could otherwise point a webhook
	// at the operator's internal services.
	AllowPrivateDestinations bool `yaml:"allow_private_destinations"`
	// PageURL is the admin pages' address as people reach it
	// ("https://gate.example.com:8443"), for the links in emails. Default:
	// none, and emails carry the page's path only.
	PageURL string `yaml:"page_url"`
	// SMTP is the operator's mail server. Default none: email recipients
	// get nothing, and each attempt says so in the delivery status.
	SMTP *SMTP `yaml:"smtp"`
}

// SMTP is a mail server notifications are sent through.
type SMTP struct {
	// Addr is host:port of the server (submission, usually port 587).
	Addr string `yaml:"addr"`
	// From is the sender address.
	From string `yaml:"from"`
	// Username and PasswordFile authenticate (PLAIN, only over TLS);
	// both empty: no authentication.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// StartTLS is required by default: a server that does not offer it is
	// not sent to. false sends in the clear, for a relay on the same host.
	StartTLS *bool `yaml:"starttls"`
}

// LoginLimits bound failed admin logins on each instance. Zero fields take
// the defaults shown.
type LoginLimits struct {
	// PerIP is how many failed logins one client address (IPv6: its /64)
	// may make before it is locked out; one is forgiven every 6s. 20.
	PerIP int `yaml:"per_ip"`
	// PerLogin is how many failed logins one account's master, or one
	// user, may suffer from anywhere before the login is locked out; one is
	// forgiven every minute. 5.
	PerLogin int `yaml:"per_login"`
	// Lockout is the first lockout; every further failure before the
	// budget refills doubles it. 1m.
	Lockout time.Duration `yaml:"lockout"`
	// MaxLockout caps the lockout. 15m.
	MaxLockout time.Duration `yaml:"max_lockout"`
}

// Assertion sets the signed assertions (Gatekeeper-Assertion) http
// listeners send their applications. Zero values take package assertion's
// defaults.
type Assertion struct {
	// TTL is how long an assertion holds. Default 60s.
	TTL time.Duration `yaml:"ttl"`
	// Rotation is how often a new signing key takes over, after being
	// published for an hour (or half of Rotation if shorter). Default 24h.
	Rotation time.Duration `yaml:"rotation"`
}

// Ops is the listener for /metrics, /healthz and /readyz.
type Ops struct {
	// Addr; empty disables it. Keep it off the public network.
	Addr string `yaml:"addr"`
	// Pprof also serves Go's runtime profiles at /debug/pprof/, for
	// profiling a live instance. They reveal internals and a CPU profile
	// costs a little while it runs. Default false.
	Pprof bool `yaml:"pprof"`
	// AccountSeries is how many accounts a fleet may hold and still get
	// one series per account in gatekeeper_policy_rules and
	// gatekeeper_account_mode; above it, gatekeeper_policy_rules has
	// that many accounts with the most rules and gatekeeper_account_mode
	// the accounts not in mode on (as many, off ones first), beside the
	// totals gatekeeper_policy_live_rules, gatekeeper_policy_accounts and
	// gatekeeper_accounts_by_mode. Default 1000; -1 for none.
	AccountSeries int `yaml:"account_series"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json or console. Default json.
	Format string `yaml:"format"`
}

// Bootstrap creates an account on a first start with an empty store.
type Bootstrap struct {
	Account string `yaml:"account"`
	// PasswordFile receives the generated master password (mode 0600).
	PasswordFile string `yaml:"password_file"`
}

// Problems is every problem found in a file.
type Problems []error

func (p Problems) Error() string {
	var b bytes.Buffer
	for i, e := range p {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Problem is one problem at one key path.
type Problem struct {
	Path string
	Line int
	Msg  string
}

func (p *Problem) Error() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s: %s (line %d)", p.Path, p.Msg, p.Line)
	}
	return fmt.Sprintf("%s: %s", p.Path, p.Msg)
}

// maxFileSize bounds what Load reads; a config is a few kilobytes.
const maxFileSize = 1 << 20

// Load reads, decodes and validates a file. Relative paths in it stay
// relative to the working directory, as the examples assume.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("read config %s: larger than %d bytes", path, maxFileSize)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s:\n%w", path, err)
	}
	return c, nil
}

// Parse decodes and validates a configuration. The error, if any, is
// Problems listing everything wrong.
func Parse(b []byte) (*Config, error) {
	c, probs := parse(b)
	if len(probs) > 0 {
		return nil, probs
	}
	return c, nil
}

// parse decodes and validates b. Unless b is not YAML at all, it returns
// the configuration as far as it decoded, with defaults applied, beside
// the problems, so that Check can look further.
func parse(b []byte) (*Config, Problems) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, Problems{&Problem{Path: "(file)", Msg: "not valid YAML: " + err.Error()}}
	}
	c := &Config{}
	if root.Kind == 0 {
		return nil, Problems{&Problem{Path: "(file)", Msg: "empty"}}
	}
	var probs Problems
	lines := make(map[int]string)
	walk(&root, "", typeOfConfig, lines, &probs)
	if err := root.Decode(c); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, append(probs, &Problem{Path: "(file)", Msg: err.Error()})
		}
		for _, msg := range te.Errors {
			probs = append(probs, typeProblem(msg, lines))
		}
	}
	c.setDefaults()
	probs = append(probs, c.validate()...)
	addLines(probs, &root)
	return c, probs
}
