package proxy

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// TLS record and handshake constants (RFC 8446).
const (
	recordTypeHandshake = 0x16
	typeClientHello     = 1
	extServerName       = 0
	maxRecordPayload    = 1 << 14
	// maxHelloSize bounds a ClientHello; Go's own server uses 64 KiB.
	maxHelloSize = 1 << 16
)

var (
	errNotTLS   = errors.New("not a TLS handshake")
	errBadHello = errors.New("malformed TLS ClientHello")
)

// readClientHello reads one TLS ClientHello from r, across as many records
// as it spans, and returns every byte it read, which the caller replays to
// the upstream, and the server name it asks for, lowercased, or "" when it
// names none. It reads no more than the records that hold the hello, plus
// whatever the last read happened to return with them.
//
// Errors: errNotTLS when the first bytes are not a TLS handshake record
// (raw then holds what was read, to be replayed or dropped), errBadHello
// when the hello does not parse, or the reader's error.
func readClientHello(r io.Reader, buf []byte) (raw []byte, serverName string, err error) {
	raw = buf[:0]
	fill := func(n int) error {
		for len(raw) < n {
			if cap(raw) < n {
				grown := make([]byte, len(raw), max(n, 2*cap(raw), 2048))
				copy(grown, raw)
				raw = grown
			}
			m, err := r.Read(raw[len(raw):cap(raw)])
			raw = raw[:len(raw)+m]
			if err != nil {
				if len(raw) >= n {
					return nil
				}
				if errors.Is(err, io.EOF) {
					return io.ErrUnexpectedEOF
				}
				return err
			}
		}
		return nil
	}
	var msg []byte // the handshake message, gathered from record payloads
	off := 0
	for {
		if err := fill(off + 5); err != nil {
			if off == 0 && len(raw) > 0 && raw[0] != recordTypeHandshake {
				return raw, "", errNotTLS
			}
			return raw, "", err
		}
		hdr := raw[off : off+5]
		// Like Go's server, take any record version below 0x1000: the
		// hello's own fields say which versions the client speaks.
		if hdr[0] != recordTypeHandshake || hdr[1] >= 0x10 {
			if off == 0 {
				return raw, "", errNotTLS
			}
			return raw, "", fmt.Errorf("%w: record of type %d inside the hello", errBadHello, hdr[0])
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		if n > maxRecordPayload || off > maxHelloSize {
			return raw, "", fmt.Errorf("%w: record length %d at offset %d", errBadHello, n, off)
		}
		if err := fill(off + 5 + n); err != nil {
			return raw, "", err
		}
		if msg == nil && off == 0 && n >= 4 {
			msg = raw[5 : 5+n : 5+n] // one record, the usual case: no copy
		} else {
			msg = append(msg, raw[off+5:off+5+n]...)
		}
		off += 5 + n
		if len(msg) < 4 {
			continue
		}
		if msg[0] != typeClientHello {
			return raw, "", fmt.Errorf("%w: handshake message type %d", errBadHello, msg[0])
		}
		mlen := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
		if mlen > maxHelloSize {
			return raw, "", fmt.Errorf("%w: %d bytes", errBadHello, mlen)
		}
		if len(msg) >= 4+mlen {
			name, err := helloServerName(msg[4 : 4+mlen])
			return raw, name, err
		}
	}
}

// helloServerName returns the host name in a ClientHello body's
// server_name extension, lowercased; "" if it has none.
func helloServerName(body []byte) (string, error) {
	s := cryptobyte.String(body)
	var (
		version                     uint16
		random, session, suites, cm cryptobyte.String
	)
	if !s.ReadUint16(&version) || !s.ReadBytes((*[]byte)(&random), 32) ||
		!s.ReadUint8LengthPrefixed(&session) || len(session) > 32 ||
		!s.ReadUint16LengthPrefixed(&suites) || len(suites) < 2 || len(suites)%2 != 0 ||
		!s.ReadUint8LengthPrefixed(&cm) || len(cm) < 1 {
		return "", errBadHello
	}
	if s.Empty() {
		return "", nil // no extensions
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return "", errBadHello
	}
	name := ""
	seen := false
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return "", errBadHello
		}
		if typ != extServerName {
			continue
		}
		if seen {
			return "", fmt.Errorf("%w: two server_name extensions", errBadHello)
		}
		seen = true
		var list cryptobyte.String
		if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
			return "", errBadHello
		}
		for !list.Empty() {
			var nameType uint8
			var host cryptobyte.String
			if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&host) {
				return "", errBadHello
			}
			if nameType != 0 {
				continue
			}
			if name != "" {
				return "", fmt.Errorf("%w: two host names", errBadHello)
			}
			if len(host) == 0 {
				return "", fmt.Errorf("%w: empty host name", errBadHello)
			}
			name = string(host)
		}
	}
	return normalizeName(name), nil
}

// normalizeName lowercases the ASCII letters of a server name and drops a
// trailing dot, so that it compares equal to the configured route names.
// Other bytes stay as they are: such a name matches no route.
func normalizeName(s string) string {
	s = strings.TrimSuffix(s, ".")
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
