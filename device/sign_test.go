package device

import (
	"crypto/ed25519"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	id := testIdentity(t)
	other := testIdentity(t)
	now := time.Now()
	body := []byte(`{}`)
	h := Sign(id, "POST", "/api/v1/devices/lease", body, now)
	s, err := ParseAuth(h)
	if err != nil || s.Account != id.Account || s.DeviceID != id.DeviceID || s.Time.UnixNano() != now.UnixNano() {
		t.Fatalf("ParseAuth: %+v %v", s, err)
	}
	pub := id.Key.Public().(ed25519.PublicKey)
	if !s.Verify(pub, "POST", "/api/v1/devices/lease", body) {
		t.Fatal("a good signature does not verify")
	}
	for name, ok := range map[string]bool{
		"other key":    s.Verify(other.Key.Public().(ed25519.PublicKey), "POST", "/api/v1/devices/lease", body),
		"other method": s.Verify(pub, "GET", "/api/v1/devices/lease", body),
		"other path":   s.Verify(pub, "POST", "/api/v1/me", body),
		"other body":   s.Verify(pub, "POST", "/api/v1/devices/lease", []byte(`{"x":1}`)),
	} {
		if ok {
			t.Errorf("%s verifies", name)
		}
	}
	// Changing who or when breaks it too.
	parts := strings.SplitN(strings.TrimPrefix(h, AuthScheme+" "), ".", 4)
	for _, changed := range []string{
		AuthScheme + " 10043." + parts[1] + "." + parts[2] + "." + parts[3],
		AuthScheme + " " + parts[0] + "." + parts[1] + "." + strconv.FormatInt(mustInt(parts[2])+1, 10) + "." + parts[3],
	} {
		if s2, err := ParseAuth(changed); err == nil && s2.Verify(pub, "POST", "/api/v1/devices/lease", body) {
			t.Errorf("%s verifies", changed)
		}
	}
}

var badAuths = []string{
	"", "Bearer abc", "Gatekeeper-Device", "Gatekeeper-Device a.b.c.d",
	"Gatekeeper-Device 10042.abcdefghijklmnop.123.", "Gatekeeper-Device 10042.abcdefghijklmnop.0123.AAAA",
	"Gatekeeper-Device 10042.abcdefghijklmnop.-5.AAAA", "Gatekeeper-Device 10042.ABC.5.AAAA",
}

func TestParseAuthRefuses(t *testing.T) {
	for _, h := range badAuths {
		if _, err := ParseAuth(h); err == nil {
			t.Errorf("%q accepted", h)
		}
	}
	if !IsDeviceAuth("gatekeeper-device x") || IsDeviceAuth("Bearer x") {
		t.Error("IsDeviceAuth")
	}
}

func FuzzParseAuth(f *testing.F) {
	for _, h := range badAuths {
		f.Add(h)
	}
	f.Add(Sign(testIdentity(f), "POST", "/x", nil, time.Unix(1700000000, 5)))
	f.Fuzz(func(t *testing.T, h string) {
		s, err := ParseAuth(h)
		if err != nil {
			return
		}
		if len(s.sig) != 64 || s.Account == "" || s.DeviceID == "" || s.Time.UnixNano() <= 0 {
			t.Fatalf("accepted %q as %+v", h, s)
		}
	})
}

func mustInt(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		panic(err)
	}
	return n
}
