package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ExpiryWarning is how close to its expiry a certificate file draws a
// warning from Check.
const ExpiryWarning = 21 * 24 * time.Hour

// Check is what "gatekeeper check" runs: it reads, decodes and validates
// the file like Load, then looks at the files it names (see CheckFiles),
// and reports every problem at once. errs make the file unusable; warnings
// do not stop gatekeeper but deserve a look. now is the time certificates
// are judged at.
func Check(path string, now time.Time) (c *Config, errs, warnings Problems) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{&Problem{Path: "(file)", Msg: err.Error()}}, nil
	}
	if len(b) > maxFileSize {
		return nil, Problems{&Problem{Path: "(file)", Msg: fmt.Sprintf("larger than %d bytes", maxFileSize)}}, nil
	}
	c, errs = parse(b)
	if c == nil {
		return nil, errs, nil
	}
	ferrs, warnings := c.CheckFiles(now)
	var root yaml.Node
	if yaml.Unmarshal(b, &root) == nil {
		addLines(ferrs, &root)
		addLines(warnings, &root)
	}
	errs = append(errs, ferrs...)
	if len(errs) > 0 {
		return nil, errs, warnings
	}
	return c, nil, warnings
}

// CheckFiles looks at the files the configuration names, which Parse
// leaves alone, and at what only they tell:
//
//   - tls.certificates: each cert and key must be readable and a matching
//     pair, the certificate valid now (errors); one that expires within
//     ExpiryWarning is a warning;
//   - tls.acme.ca_root must be a readable PEM certificate (error);
//   - every route sni of a tls or http listener should be a name of a
//     certificate file or an ACME domain, or clients that verify the name
//     refuse the connection (warning; not checked with self_signed);
//   - an existing admin.operator_token_file, admin.secrets_key_file or
//     bootstrap.password_file that every user can read is a warning.
//
// Relative paths are relative to the working directory, as for serve.
func (c *Config) CheckFiles(now time.Time) (errs, warnings Problems) {
	k, w := &checker{}, &checker{}
	var names []string // what the certificates cover
	allLoaded := true
	for i, f := range c.TLS.Certificates {
		p := fmt.Sprintf("tls.certificates[%d]", i)
		if f.Cert == "" || f.Key == "" {
			allLoaded = false
			continue // validate reports it
		}
		leaf, ok := checkCertificate(k, w, p, f, now)
		if !ok {
			allLoaded = false
			continue
		}
		names = append(names, leaf.DNSNames...)
		for _, ip := range leaf.IPAddresses {
			names = append(names, ip.String())
		}
	}
	if a := c.TLS.ACME; a != nil {
		names = append(names, a.Domains...)
		if a.CARoot != "" {
			checkCAFile(k, "tls.acme.ca_root", a.CARoot)
		}
	}
	if !c.TLS.SelfSigned && allLoaded {
		for i, l := range c.Listeners {
			if l.Mode != ModeTLS && l.Mode != ModeHTTP {
				continue
			}
			for j, r := range l.Routes {
				if r.SNI != "" && !covered(names, r.SNI) {
					w.add(fmt.Sprintf("listeners[%d].routes[%d].sni", i, j),
						"%q is not a name of any certificate in tls.certificates or tls.acme.domains: clients that verify the name will refuse the connection", r.SNI)
				}
			}
		}
	}
	if c.Admin.Addr != "" {
		checkSecretFile(w, "admin.operator_token_file", c.Admin.OperatorTokenFile)
		checkSecretFile(w, "admin.secrets_key_file", c.Admin.SecretsKeyFile)
	}
	if c.Bootstrap != nil {
		checkSecretFile(w, "bootstrap.password_file", c.Bootstrap.PasswordFile)
	}
	if b := c.Store.Backup; b != nil && b.KeyFile != "" {
		// serve refuses to start without it.
		if _, err := os.ReadFile(b.KeyFile); err != nil {
			k.add("store.backup.key_file", "%s", fileError(err))
		}
		checkSecretFile(w, "store.backup.key_file", b.KeyFile)
	}
	return k.probs, w.probs
}

// checkCertificate loads a certificate file pair as serve will.
func checkCertificate(k, w *checker, p string, f Certificate, now time.Time) (*x509.Certificate, bool) {
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		k.add(p+".cert", "%s", fileError(err))
	}
	keyPEM, kerr := os.ReadFile(f.Key)
	if kerr != nil {
		k.add(p+".key", "%s", fileError(kerr))
	}
	if err != nil || kerr != nil {
		return nil, false
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		k.add(p, "%s and %s are not a usable certificate and key: %v", f.Cert, f.Key, err)
		return nil, false
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			k.add(p+".cert", "%s: %v", f.Cert, err)
			return nil, false
		}
	}
	switch {
	case now.After(leaf.NotAfter):
		k.add(p+".cert", "%s expired on %s", f.Cert, leaf.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		k.add(p+".cert", "%s is not valid before %s", f.Cert, leaf.NotBefore.UTC().Format(time.RFC3339))
	case leaf.NotAfter.Sub(now) < ExpiryWarning:
		w.add(p+".cert", "%s expires on %s, in %d days", f.Cert, leaf.NotAfter.UTC().Format(time.DateOnly),
			int(leaf.NotAfter.Sub(now).Hours()/24))
	}
	return leaf, true
}

func checkCAFile(k *checker, p, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		k.add(p, "%s", fileError(err))
		return
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(block.Bytes); err == nil {
				return
			}
		}
	}
	k.add(p, "%s holds no PEM certificate", path)
}

// checkSecretFile warns about a secret file that every user of the machine
// can read (root:gatekeeper 0640 is fine). A file that does not exist yet
// is fine too: gatekeeper creates it with mode 0600.
func checkSecretFile(w *checker, p, path string) {
	if path == "" {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	if perm := fi.Mode().Perm(); perm&0o004 != 0 {
		w.add(p, "%s is readable by every user (mode %04o): chmod o-r it", path, perm)
	}
}

// fileError words a file error for a key path: the path, and for a
// relative one the directory it was resolved in.
func fileError(err error) string {
	pe, ok := err.(*fs.PathError)
	if !ok || filepath.IsAbs(pe.Path) {
		return err.Error()
	}
	wd, _ := os.Getwd()
	return fmt.Sprintf("%v (relative to the working directory %s)", err, wd)
}

// covered reports whether a certificate name in names matches host,
// wildcards covering one label.
func covered(names []string, host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, n := range names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if n == host {
			return true
		}
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			if _, after, found := strings.Cut(host, "."); found && after == rest {
				return true
			}
		}
	}
	return false
}

// validateAddrConflicts reports two listening addresses (listeners, admin,
// ops, the ACME HTTP challenge) that share a port on overlapping hosts,
// which serve would fail to bind. Identical listener addresses are left to
// the listener check.
func (c *Config) validateAddrConflicts(k *checker) {
	type use struct{ path, addr string }
	var uses []use
	for i, l := range c.Listeners {
		uses = append(uses, use{fmt.Sprintf("listeners[%d].addr", i), l.Addr})
	}
	if c.Admin.Addr != "" {
		uses = append(uses, use{"admin.addr", c.Admin.Addr})
	}
	if c.Ops.Addr != "" {
		uses = append(uses, use{"ops.addr", c.Ops.Addr})
	}
	if c.TLS.ACME != nil && c.TLS.ACME.HTTPAddr != "" {
		uses = append(uses, use{"tls.acme.http_addr", c.TLS.ACME.HTTPAddr})
	}
	for j := range uses {
		for i := range j {
			a, b := uses[i], uses[j]
			if a.addr == b.addr && strings.HasPrefix(a.path, "listeners[") && strings.HasPrefix(b.path, "listeners[") {
				continue
			}
			if addrsOverlap(a.addr, b.addr) {
				k.add(b.path, "%s overlaps %s (%s): both cannot listen", b.addr, a.path, a.addr)
				break
			}
		}
	}
}

// addrsOverlap reports whether two listening addresses would collide: the
// same non-zero port, and the same host or a wildcard host covering the
// other. "" and "::" listen on IPv4 and IPv6 (Go listens dual-stack),
// 0.0.0.0 on IPv4 only. Two different host names are assumed not to
// collide; a host name and a wildcard are assumed to.
func addrsOverlap(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb || pa == "0" {
		return false
	}
	ia, ea := netip.ParseAddr(ha)
	ib, eb := netip.ParseAddr(hb)
	both := func(h string, ip netip.Addr, err error) bool {
		return h == "" || (err == nil && ip == netip.IPv6Unspecified())
	}
	v4 := func(ip netip.Addr, err error) bool { return err == nil && ip == netip.IPv4Unspecified() }
	switch {
	case both(ha, ia, ea) || both(hb, ib, eb):
		return true
	case v4(ia, ea):
		return eb != nil || ib.Unmap().Is4()
	case v4(ib, eb):
		return ea != nil || ia.Unmap().Is4()
	case ea == nil && eb == nil:
		return ia.Unmap() == ib.Unmap()
	}
	return strings.EqualFold(ha, hb)
}

// addLines gives each problem that has no line the line of its key, or of
// the nearest enclosing key that is in the file.
func addLines(probs Problems, root *yaml.Node) {
	lines := map[string]int{}
	pathLines(root, "", lines)
	for _, e := range probs {
		p, ok := e.(*Problem)
		if !ok || p.Line > 0 {
			continue
		}
		for path := p.Path; path != ""; path = parentPath(path) {
			if l, ok := lines[path]; ok {
				p.Line = l
				break
			}
		}
	}
}

// pathLines records the line of every key path under n.
func pathLines(n *yaml.Node, path string, lines map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			pathLines(c, path, lines)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := join(path, n.Content[i].Value)
			lines[p] = n.Content[i].Line
			pathLines(n.Content[i+1], p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = c.Line
			pathLines(c, p, lines)
		}
	}
}

// parentPath strips the last key or index: a.b[2].c → a.b[2] → a.b → a.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i <= 0 {
		return ""
	}
	return path[:i]
}
