package proxy

import (
	"crypto/hmac"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// FuzzWebSessionCookie: parsing any cookie value never fails badly, what
// parses names a well-formed account and carries a full MAC, and a
// cookie made for fields reads back as those fields, good only for its
// host and key.
func FuzzWebSessionCookie(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	f.Add("v1.YWNtZQ.YWxpY2U.3.1900000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "acme", "alice", uint64(3), int64(1900000000), "app.test")
	f.Add("v1....", "a", "", uint64(0), int64(0), "")
	f.Add("v1.YWNtZQ.YWxpY2U.-3.+1.AAAA", "acme-2", "bob.smith", uint64(1<<63), int64(-1), "x.example")
	f.Fuzz(func(t *testing.T, raw, account, user string, epoch uint64, expires int64, host string) {
		if s, ok := parseWebSession(raw); ok {
			if len(s.mac) != 32 || s.account == "" {
				t.Fatalf("parsed %q into %+v", raw, s)
			}
		}
		if expires < 0 {
			expires = -expires
		}
		if expires < 0 {
			return
		}
		in := webSession{account: account, username: user, epoch: epoch, expires: expires}
		v := encodeWebSession(key, in, host)
		s, ok := parseWebSession(v)
		if !ok {
			if len(v) <= maxWebCookie && policy.ValidAccountID(account) {
				t.Fatalf("encoded %+v as %q, which does not parse", in, v)
			}
			return
		}
		if s.account != account || s.username != user || s.epoch != epoch || s.expires != expires {
			t.Fatalf("round trip of %+v gave %+v", in, s)
		}
		if !hmac.Equal(s.mac, webMAC(key, &s, host)) {
			t.Fatal("the MAC does not verify for its own host")
		}
		if hmac.Equal(s.mac, webMAC(key, &s, host+"x")) {
			t.Fatal("the MAC verifies for another host")
		}
	})
}
