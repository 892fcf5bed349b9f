package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// helloCases are ClientHellos as Go's client sends them; the fuzz seeds
// and the SNI benchmark share them.
var helloCases = []struct {
	name   string
	config *tls.Config
	want   string
}{
	{"plain", &tls.Config{ServerName: "db.example.com"}, "db.example.com"},
	{"upper case", &tls.Config{ServerName: "DB.Example.COM"}, "db.example.com"},
	{"no sni", &tls.Config{InsecureSkipVerify: true}, ""},
	{"alpn", &tls.Config{ServerName: "10042.db.example.com", NextProtos: []string{"postgresql", "h2"}}, "10042.db.example.com"},
	{"classic curves", &tls.Config{ServerName: "a.test", CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}, MaxVersion: tls.VersionTLS12}, "a.test"},
	{"acme", &tls.Config{ServerName: "gate.example.com", NextProtos: []string{alpnChallenge}}, "gate.example.com"},
}

// clientHello returns the bytes Go's client sends first.
func clientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	w := &captureConn{}
	tls.Client(w, cfg).Handshake()
	if len(w.buf) == 0 {
		t.Fatal("no ClientHello captured")
	}
	return w.buf
}

// fragment splits a single-record hello into records of at most n bytes of
// payload, as some clients and middleboxes do.
func fragment(hello []byte, n int) []byte {
	payload := hello[5:]
	var out []byte
	for len(payload) > 0 {
		k := min(n, len(payload))
		out = append(out, recordTypeHandshake, hello[1], hello[2], byte(k>>8), byte(k))
		out = append(out, payload[:k]...)
		payload = payload[k:]
	}
	return out
}

func TestReadClientHello(t *testing.T) {
	for _, c := range helloCases {
		hello := clientHello(t, c.config)
		for _, variant := range []struct {
			name string
			data []byte
		}{
			{"one record", hello},
			{"fragmented", fragment(hello, 100)},
			{"tiny records", fragment(hello, 3)},
			{"with early data after it", append(append([]byte{}, hello...), 0x17, 3, 3, 0, 1, 0)},
		} {
			for _, r := range []struct {
				name string
				r    func([]byte) io.Reader
			}{
				{"whole", func(b []byte) io.Reader { return bytes.NewReader(b) }},
				{"byte by byte", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
			} {
				raw, name, err := readClientHello(r.r(variant.data), nil)
				if err != nil || name != c.want {
					t.Errorf("%s/%s/%s: got %q, %v; want %q", c.name, variant.name, r.name, name, err, c.want)
				}
				if !bytes.HasPrefix(variant.data, raw) || len(raw) < len(variant.data)-6 {
					t.Errorf("%s/%s/%s: kept %d of %d bytes for replay", c.name, variant.name, r.name, len(raw), len(variant.data))
				}
			}
		}
	}
	bad := []struct {
		name string
		data string
		want error
	}{
		{"http", "GET / HTTP/1.1\r\n\r\n", errNotTLS},
		{"proxy header", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", errNotTLS},
		{"alert", "\x15\x03\x01\x00\x02\x02\x28", errNotTLS},
		{"server hello", "\x16\x03\x03\x00\x04\x02\x00\x00\x00", errBadHello},
		{"oversized record", "\x16\x03\x01\x48\x01", errBadHello},
		{"truncated", "\x16\x03\x01\x02\x00\x01\x00\x01", io.ErrUnexpectedEOF},
		{"empty", "", io.ErrUnexpectedEOF},
	}
	for _, c := range bad {
		_, _, err := readClientHello(strings.NewReader(c.data), nil)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
		}
	}
}

// FuzzClientHello checks that the parser never panics, keeps exactly what
// it read for replay, reads the same in any chunking, and finds the server
// name wherever Go's own TLS server finds one.
func FuzzClientHello(f *testing.F) {
	for _, c := range helloCases {
		h := clientHello(f, c.config)
		f.Add(h)
		f.Add(fragment(h, 50))
	}
	f.Add([]byte("\x16\x03\x01\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, name, err := readClientHello(bytes.NewReader(data), nil)
		if !bytes.HasPrefix(data, raw) {
			t.Fatalf("replay bytes %x are not what was read", raw)
		}
		raw2, name2, err2 := readClientHello(iotest.OneByteReader(bytes.NewReader(data)), nil)
		if name2 != name || (err == nil) != (err2 == nil) || !bytes.HasPrefix(raw, raw2) {
			t.Fatalf("byte by byte: %q, %v; whole: %q, %v", name2, err2, name, err)
		}
		if err == nil && strings.ContainsAny(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Fatalf("server name %q not lowercased", name)
		}
		if goName, ok := goServerName(data); ok {
			if err != nil || name != normalizeName(goName) {
				t.Fatalf("crypto/tls reads server name %q; we read %q, %v", goName, name, err)
			}
		}
	})
}

// goServerName runs data through crypto/tls's server and returns the
// server name it reached GetConfigForClient with.
func goServerName(data []byte) (string, bool) {
	var name string
	var ok bool
	c := &captureConn{r: bytes.NewReader(data)}
	tls.Server(c, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		name, ok = h.ServerName, true
		return nil, errors.New("captured")
	}}).Handshake()
	return name, ok
}

// captureConn records writes and serves reads from r (EOF if nil).
type captureConn struct {
	r   io.Reader
	buf []byte
}

func (c *captureConn) Read(b []byte) (int, error) {
	if c.r == nil {
		return 0, io.EOF
	}
	return c.r.Read(b)
}
func (c *captureConn) Write(b []byte) (int, error)      { c.buf = append(c.buf, b...); return len(b), nil }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *captureConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// proxyHeaderCases seed FuzzProxyHeader and table-test readProxyHeader.
var proxyHeaderCases = []struct {
	name string
	data string
	src  string // "" for a LOCAL header, "error" for a refusal
}{
	{"v1 tcp4", "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nrest", "192.0.2.1:56324"},
	{"v1 tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n", "[2001:db8::1]:56324"},
	{"v1 unknown", "PROXY UNKNOWN\r\n", ""},
	{"v2 tcp4", string(headerV2("192.0.2.7", false)) + "rest", "192.0.2.7:5555"},
	{"v2 local", string(headerV2("", true)), ""},
	{"v2 tcp6", "\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24" +
		"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05" +
		"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x06\x01\xbb\x01\xbb", "[2001:db8::5]:443"},
	{"v2 with tlv", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x11\xc0\x00\x02\x09\xc0\x00\x02\x0a\x00\x50\x01\xbb\x04\x00\x02hi", "192.0.2.9:80"},
	{"v2 udp", "\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x0c\xc0\x00\x02\x09\xc0\x00\x02\x0a\x00\x50\x01\xbb", "error"},
	{"v1 mapped", "PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n", "192.0.2.1:1"},
	{"v1 too long", "PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n", "error"},
	{"v1 no crlf", "PROXY TCP4 192.0.2.1 198.51.100.1 1 2\n", "error"},
	{"not a header", "\x16\x03\x01\x02\x00", "error"},
	{"truncated v2", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0", "error"},
}

func TestReadProxyHeader(t *testing.T) {
	for _, c := range proxyHeaderCases {
		h, _, err := readProxyHeader(strings.NewReader(c.data))
		got := h.src.String()
		switch {
		case err != nil:
			got = "error"
		case !h.src.IsValid():
			got = ""
		}
		if got != c.src {
			t.Errorf("%s: source %q (%v), want %q", c.name, got, err, c.src)
		}
	}
}

// FuzzProxyHeader checks that a header parse never panics, that what it
// hands on is exactly the bytes after the header, and that the sniff for
// untrusted peers agrees with the parser about what is a header.
func FuzzProxyHeader(f *testing.F) {
	for _, c := range proxyHeaderCases {
		f.Add([]byte(c.data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, rest, err := readProxyHeader(r)
		consumed := len(data) - r.Len()
		if err == nil {
			end := consumed - len(rest)
			if end <= 0 || !bytes.Equal(data[end:consumed], rest) {
				t.Fatalf("rest %q is not what followed the header", rest)
			}
			if h.src.IsValid() != h.dst.IsValid() || h.src.Addr().Is4In6() {
				t.Fatalf("odd header %+v", h)
			}
			// The header alone parses the same.
			h2, rest2, err2 := readProxyHeader(bytes.NewReader(data[:end]))
			if err2 != nil || h2 != h || len(rest2) != 0 {
				t.Fatalf("header alone: %+v, %q, %v; want %+v", h2, rest2, err2, h)
			}
			if yes, _ := proxySignature(data); !yes {
				t.Fatal("a header the sniff would let through")
			}
		}
		b, serr := sniffProxyHeader(iotest.OneByteReader(bytes.NewReader(data)), nil)
		if !bytes.HasPrefix(data, b) {
			t.Fatalf("sniffed %q is not the start of the data", b)
		}
		if serr == nil && err == nil {
			t.Fatal("the sniff passed a stream the parser reads a header from")
		}
	})
}
