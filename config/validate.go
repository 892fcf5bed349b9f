package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/certs"
	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Defaults applied by Load.
const (
	DefaultStoreURL          = "file:./data/gatekeeper.db"
	DefaultSnapshot          = "./data/policy.snapshot"
	DefaultStoreTimeout      = 2 * time.Second
	DefaultSessionTTL        = 12 * time.Hour
	DefaultACMEStorage       = "./data/certmagic"
	DefaultOperatorTokenFile = "./data/operator.token"
)

func (c *Config) setDefaults() {
	if c.Store.URL == "" {
		c.Store.URL = DefaultStoreURL
	}
	if c.Store.Snapshot == "" {
		c.Store.Snapshot = DefaultSnapshot
	}
	def(&c.Store.Timeout, DefaultStoreTimeout)
	if b := c.Store.Backup; b != nil && b.Keep == 0 {
		b.Keep = DefaultBackupKeep
	}
	// A listener's timeouts and limits left at zero take the proxy's
	// defaults (proxy.Timeouts, proxy.Limits): decided there only.
	def(&c.Admin.SessionTTL, DefaultSessionTTL)
	if c.Admin.OperatorTokenFile == "" {
		c.Admin.OperatorTokenFile = DefaultOperatorTokenFile
	}
	if c.Admin.SecretsKeyFile == "" {
		// Beside the operator token: the two secrets live and are backed
		// up together.
		c.Admin.SecretsKeyFile = filepath.Join(filepath.Dir(c.Admin.OperatorTokenFile), "secrets.key")
	}
	if c.TLS.ACME != nil && c.TLS.ACME.Storage == "" {
		c.TLS.ACME.Storage = DefaultACMEStorage
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
}

func def(d *time.Duration, v time.Duration) {
	if *d == 0 {
		*d = v
	}
}

type checker struct {
	probs Problems
	// webSignIn: admin.public_url is an https URL, where people sign in
	// to the applications of login routes.
	webSignIn bool
}

func (k *checker) add(path, format string, args ...any) {
	k.probs = append(k.probs, &Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validate() Problems {
	k := &checker{}
	c.validateStore(k)
	c.validateTLS(k)
	c.validateAdminURL(k)
	if u, err := url.Parse(c.Admin.PublicURL); err == nil && u.Scheme == "https" && u.Hostname() != "" {
		k.webSignIn = true
	}
	c.validateNotify(k)
	needCert := false
	names := map[string]int{}
	addrs := map[string]string{}
	if len(c.Listeners) == 0 {
		k.add("listeners", "at least one listener is needed")
	}
	for i, l := range c.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			k.add(p+".name", "missing")
		} else if j, dup := names[l.Name]; dup {
			k.add(p+".name", "%q is also the name of listeners[%d]", l.Name, j)
		} else {
			names[l.Name] = i
		}
		k.addr(p+".addr", l.Addr, true)
		if other, dup := addrs[l.Addr]; dup && l.Addr != "" {
			k.add(p+".addr", "%s is also used by %s", l.Addr, other)
		}
		addrs[l.Addr] = p
		switch l.Mode {
		case ModeTLS, ModeHTTP:
			needCert = true
		case ModeTCP:
		case "":
			k.add(p+".mode", "missing (tls, tcp or http)")
		default:
			k.add(p+".mode", "%q is not a mode (tls, tcp or http)", l.Mode)
		}
		if l.ProxyProtocol != nil {
			if len(l.ProxyProtocol.Trusted) == 0 {
				k.add(p+".proxy_protocol.trusted", "empty: name the load balancers whose PROXY header to believe")
			}
			for j, s := range l.ProxyProtocol.Trusted {
				k.prefix(fmt.Sprintf("%s.proxy_protocol.trusted[%d]", p, j), s)
			}
		}
		validateRoutes(k, p, l)
		for name, d := range map[string]time.Duration{"handshake": l.Timeouts.Handshake, "dial": l.Timeouts.Dial, "idle": l.Timeouts.Idle, "drain": l.Timeouts.Drain} {
			if d < 0 {
				k.add(p+".timeouts."+name, "negative")
			}
		}
		if l.Limits.PerIP < -1 {
			k.add(p+".limits.per_ip", "must be positive, or -1 for unlimited")
		}
		if l.Limits.PerAccount < -1 {
			k.add(p+".limits.per_account", "must be positive, or -1 for unlimited")
		}
		if l.Limits.Pending < -1 {
			k.add(p+".limits.pending", "must be positive, or -1 for unlimited")
		}
		if l.Limits.PendingPerIP < -1 {
			k.add(p+".limits.pending_per_ip", "must be positive, or -1 for unlimited")
		}
	}
	if a := c.Assertion.TTL; a != 0 && (a < 10*time.Second || a > 10*time.Minute) {
		k.add("assertion.ttl", "%s is outside 10s to 10m", a)
	}
	if r := c.Assertion.Rotation; r != 0 && r < time.Hour {
		k.add("assertion.rotation", "%s is too short (at least 1h)", r)
	}
	if c.Admin.Addr != "" {
		needCert = true
		k.addr("admin.addr", c.Admin.Addr, true)
		for j, s := range c.Admin.TrustedProxies {
			k.prefix(fmt.Sprintf("admin.trusted_proxies[%d]", j), s)
		}
		if c.Admin.SessionTTL < time.Minute {
			k.add("admin.session_ttl", "%s is too short (at least 1m)", c.Admin.SessionTTL)
		}
		for j, h := range c.Admin.Hosts {
			if !validHostname(h, false) {
				if _, err := netip.ParseAddr(h); err != nil {
					k.add(fmt.Sprintf("admin.hosts[%d]", j), "%q is neither a host name nor an IP address", h)
				}
			}
		}
		ll := c.Admin.LoginLimits
		if ll.PerIP < 0 {
			k.add("admin.login_limits.per_ip", "negative")
		}
		if ll.PerLogin < 0 {
			k.add("admin.login_limits.per_login", "negative")
		}
		if ll.Lockout < 0 {
			k.add("admin.login_limits.lockout", "negative")
		}
		if ll.MaxLockout < 0 {
			k.add("admin.login_limits.max_lockout", "negative")
		}
		if ll.Lockout > 0 && ll.MaxLockout > 0 && ll.MaxLockout < ll.Lockout {
			k.add("admin.login_limits.max_lockout", "%s is shorter than lockout (%s)", ll.MaxLockout, ll.Lockout)
		}
	}
	if needCert && c.TLS.ACME == nil && len(c.TLS.Certificates) == 0 && !c.TLS.SelfSigned {
		k.add("tls", "tls and http listeners and the admin listener need a certificate: set acme, certificates or self_signed")
	}
	if c.Ops.Addr != "" {
		k.addr("ops.addr", c.Ops.Addr, true)
	} else if c.Ops.Pprof {
		k.add("ops.pprof", "needs ops.addr: profiles are served on the ops listener")
	}
	if c.Ops.AccountSeries < -1 {
		k.add("ops.account_series", "%d: want a number of accounts, or -1 for no per-account series", c.Ops.AccountSeries)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		k.add("log.level", "%q is not a level (debug, info, warn, error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		k.add("log.format", "%q is not a format (json, console)", c.Log.Format)
	}
	if b := c.Bootstrap; b != nil {
		if !validAccount(b.Account) {
			k.add("bootstrap.account", "%q is not an account number (letters, digits and -, up to 64)", b.Account)
		}
		if b.PasswordFile == "" {
			k.add("bootstrap.password_file", "missing: where to write the generated master password")
		}
	}
	c.validateAddrConflicts(k)
	return k.probs
}

func (c *Config) validateAdminURL(k *checker) {
	if p := c.Admin.PublicURL; p != "" {
		if u, err := url.Parse(p); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" ||
			u.Path != "" && u.Path != "/" {
			k.add("admin.public_url", "%q is not an http(s) URL like https://gate.example.com:8443", p)
		}
	}
}

func (c *Config) validateNotify(k *checker) {
	n := c.Notify
	if n.PageURL != "" {
		if u, err := url.Parse(n.PageURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			k.add("notify.page_url", "%q is not an http(s) URL like https://gate.example.com:8443", n.PageURL)
		}
	}
	if m := n.SMTP; m != nil {
		k.addr("notify.smtp.addr", m.Addr, false)
		if m.From == "" || !strings.Contains(m.From, "@") {
			k.add("notify.smtp.from", "a sender address like gatekeeper@example.com is needed")
		}
		if (m.Username == "") != (m.PasswordFile == "") {
			k.add("notify.smtp.username", "username and password_file go together")
		}
	}
}

func (c *Config) validateStore(k *checker) {
	u, err := url.Parse(c.Store.URL)
	switch {
	case err != nil:
		k.add("store.url", "not a URL: %v", err)
	case u.Scheme == "file":
		if u.Opaque == "" && u.Path == "" {
			k.add("store.url", "file: needs a path, e.g. file:./data/gatekeeper.db")
		}
	case u.Scheme == "redis" || u.Scheme == "rediss":
		if u.Host == "" {
			k.add("store.url", "%s: needs a host, e.g. redis://127.0.0.1:6379/0", u.Scheme)
		}
	default:
		k.add("store.url", "scheme %q is not supported (file, redis, rediss)", u.Scheme)
	}
	if c.Store.Timeout < 100*time.Millisecond || c.Store.Timeout > time.Minute {
		k.add("store.timeout", "%s is out of range (100ms to 1m)", c.Store.Timeout)
	}
	c.Store.Backup.validate(k)
}

func (c *Config) validateTLS(k *checker) {
	if a := c.TLS.ACME; a != nil {
		if len(a.Domains) == 0 {
			k.add("tls.acme.domains", "empty: name the domains to get certificates for")
		}
		for i, d := range a.Domains {
			if !validHostname(d, true) {
				k.add(fmt.Sprintf("tls.acme.domains[%d]", i), "%q is not a domain name", d)
			}
		}
		if a.CA != "" {
			if u, err := url.Parse(a.CA); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				k.add("tls.acme.ca", "%q is not an https URL of an ACME directory", a.CA)
			}
		}
		if a.Email != "" && !strings.Contains(a.Email, "@") {
			k.add("tls.acme.email", "%q is not an email address", a.Email)
		}
		if a.HTTPAddr != "" {
			k.addr("tls.acme.http_addr", a.HTTPAddr, true)
		}
	}
	for i, cert := range c.TLS.Certificates {
		p := fmt.Sprintf("tls.certificates[%d]", i)
		if cert.Cert == "" {
			k.add(p+".cert", "missing")
		}
		if cert.Key == "" {
			k.add(p+".key", "missing")
		}
	}
	for i, name := range c.TLS.CipherSuites {
		if _, ok := certs.CipherSuiteID(name); !ok {
			k.add(fmt.Sprintf("tls.cipher_suites[%d]", i), "%q is not a secure TLS 1.2 cipher suite Go knows (e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)", name)
		}
	}
	for i, name := range c.TLS.Curves {
		ok := false
		for _, known := range certs.KnownCurves {
			ok = ok || name == known
		}
		if !ok {
			k.add(fmt.Sprintf("tls.curves[%d]", i), "%q is not a known group (%s)", name, strings.Join(certs.KnownCurves, ", "))
		}
	}
}

func validateRoutes(k *checker, p string, l Listener) {
	if len(l.Routes) == 0 {
		k.add(p+".routes", "at least one route is needed")
	}
	snis := map[string]int{}
	defaults := 0
	for j, r := range l.Routes {
		rp := fmt.Sprintf("%s.routes[%d]", p, j)
		if !validAccount(r.Account) {
			k.add(rp+".account", "%q is not an account number (letters, digits and -, up to 64)", r.Account)
		}
		if l.Mode == ModeHTTP && strings.Contains(r.Upstream, "://") {
			u, err := url.Parse(r.Upstream)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				k.add(rp+".upstream", "%q is not an http(s) URL or host:port", r.Upstream)
			}
		} else {
			k.addr(rp+".upstream", r.Upstream, false)
		}
		switch r.Access {
		case "", AccessAddress:
		case AccessLogin, AccessAddressLogin:
			switch {
			case l.Mode != ModeHTTP:
				k.add(rp+".access", "%s needs mode http", r.Access)
			case r.SNI == "":
				k.add(rp+".access", "%s needs an sni: the sign-in is bound to the application's host", r.Access)
			case !k.webSignIn:
				k.add(rp+".access", "%s needs admin.public_url (an https URL): people sign in on the admin listener", r.Access)
			}
		default:
			k.add(rp+".access", "%q is not address, login or address+login", r.Access)
		}
		if r.SNI == "" {
			defaults++
			if defaults == 2 {
				k.add(rp+".sni", "missing: a listener has at most one default route (without sni)")
			}
			continue
		}
		if !validHostname(r.SNI, true) {
			k.add(rp+".sni", "%q is not a host name", r.SNI)
		}
		name := strings.ToLower(r.SNI)
		if o, dup := snis[name]; dup {
			k.add(rp+".sni", "%q is also routed by routes[%d]", r.SNI, o)
		}
		snis[name] = j
	}
}

// addr checks host:port; an empty host is allowed for listening addresses.
func (k *checker) addr(path, s string, listen bool) {
	if s == "" {
		k.add(path, "missing (host:port)")
		return
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		k.add(path, "%q is not host:port", s)
		return
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		k.add(path, "port %q is not a number", port)
		return
	}
	if n < 1 || n > 65535 {
		if !(listen && n == 0) {
			k.add(path, "port %d out of range", n)
		}
	}
	if host == "" && !listen {
		k.add(path, "%q has no host", s)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && !validHostname(host, false) {
			k.add(path, "host %q is neither an IP address nor a host name", host)
		}
	}
}

// prefix checks a trusted network with the rule the proxy and the admin
// listener apply (policy.ParsePrefixes), so that check refuses what serve
// would refuse and never accepts an entry that means something broader.
func (k *checker) prefix(path, s string) {
	if _, err := policy.ParsePrefixes([]string{s}); err != nil {
		_, msg, _ := strings.Cut(err.Error(), ": ") // the index is in path already
		k.add(path, "%s", msg)
	}
}

var (
	labelRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$`)
)

func validAccount(s string) bool { return policy.ValidAccountID(s) }

func validHostname(s string, wildcard bool) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for i, l := range labels {
		if i == 0 && wildcard && l == "*" && len(labels) > 1 {
			continue
		}
		if !labelRE.MatchString(l) {
			return false
		}
	}
	return true
}
