package redisstore

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// codecCases feed the round-trip test, the fuzz corpus and the benchmark.
var codecCases = []policy.Rule{
	{ID: 1, Prefix: netip.MustParsePrefix("192.0.2.0/24"), Source: policy.SourceManual, CreatedBy: "master",
		CreatedAt: time.Date(2026, 3, 1, 9, 30, 0, 123456789, time.UTC)},
	{ID: 4294967295, Prefix: netip.MustParsePrefix("2001:db8::/48"), Note: "Praxis Dr. Müller, Empfang 🖥",
		Source: policy.SourceUnblock, Owner: "alice", CreatedBy: "alice",
		CreatedAt: time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC), ExpiresAt: time.Date(2026, 3, 1, 21, 30, 0, 0, time.UTC)},
	{ID: 7, Prefix: netip.MustParsePrefix("::ffff:198.51.100.7/128"), Source: policy.SourceManual},
	{ID: 8, Prefix: netip.MustParsePrefix("0.0.0.0/0"), Note: strings.Repeat("x", 300),
		CreatedAt: time.Date(1969, 7, 20, 20, 17, 40, 0, time.UTC)},
	{ID: 9, Prefix: netip.MustParsePrefix("203.0.113.9/32"), CreatedBy: "operator"},
}

func TestRuleCodec(t *testing.T) {
	for _, want := range codecCases {
		want.Account = "10042"
		enc := encodeRule(want)
		got, err := decodeRule("10042", enc)
		if err != nil {
			t.Fatalf("decode %+v: %v", want, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got  %+v\n want %+v", got, want)
		}
		// Every truncation is an error, never a panic or a wrong rule.
		for n := range len(enc) {
			if _, err := decodeRule("10042", enc[:n]); err == nil {
				t.Fatalf("decoding %d of %d bytes of %+v succeeded", n, len(enc), want)
			}
		}
		if _, err := decodeRule("10042", enc+"x"); err == nil {
			t.Fatal("decoding with a trailing byte succeeded")
		}
	}
	if _, err := decodeRule("a", "\x02"); err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("unknown version: %v", err)
	}
}

func FuzzDecodeRule(f *testing.F) {
	for _, r := range codecCases {
		f.Add(encodeRule(r))
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := decodeRule("a", s)
		if err != nil {
			return
		}
		// Whatever decodes encodes back to the same value.
		if again, err := decodeRule("a", encodeRule(r)); err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encoding %+v: %+v, %v", r, again, err)
		}
	})
}

// BenchmarkDecodeRule compares the stored form with JSON, which is what
// the choice of a binary form rests on.
func BenchmarkDecodeRule(b *testing.B) {
	r := codecCases[1]
	bin := encodeRule(r)
	js, err := json.Marshal(r)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("binary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeRule("10042", bin); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(bin)), "bytes/rule")
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got policy.Rule
			if err := json.Unmarshal(js, &got); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(js)), "bytes/rule")
	})
}

// The gate decodes only part of an account's document (gateAccount): its
// field names must stay those of policy.Account's JSON, or a mode or a
// required device would silently read as the default.
func TestGateAccountInStep(t *testing.T) {
	full := policy.Account{
		ID: "10042", Name: "Praxis", Parent: "reseller", Mode: policy.ModeMonitor,
		MasterHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA", MasterMustReset: true,
		Settings: policy.Settings{RequireDevice: true, MaxGrants: 5, Unblock: policy.UnblockApproval,
			LeaseTTL: policy.Duration(time.Hour)},
		CreatedAt: time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC),
	}
	raw, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	s := &Store{log: zap.NewNop()}
	got, err := s.gatePolicy("10042", string(raw), []string{encodeRule(codecCases[0])})
	if err != nil {
		t.Fatal(err)
	}
	want := policy.Account{ID: full.ID, Mode: full.Mode, Settings: full.Settings}
	if !reflect.DeepEqual(got.Account, want) {
		t.Errorf("gate's account:\n got  %+v\n want %+v", got.Account, want)
	}
	if len(got.Rules) != 1 || got.Rules[0].Prefix != codecCases[0].Prefix {
		t.Errorf("gate's rules: %+v", got.Rules)
	}
	if _, err := s.gatePolicy("10042", "{", nil); err == nil {
		t.Error("a document that does not decode was accepted")
	}
}

// packRules packs as policyScript does.
func packRules(rules []string) string {
	var b []byte
	for _, r := range rules {
		b = append(b, byte(len(r)>>24), byte(len(r)>>16), byte(len(r)>>8), byte(len(r)))
		b = append(b, r...)
	}
	return string(b)
}

func TestUnpackRules(t *testing.T) {
	var rules []string
	for _, r := range codecCases {
		rules = append(rules, encodeRule(r))
	}
	rules = append(rules, "")
	packed := packRules(rules)
	got, ok := unpackValues(packed)
	if !ok || !reflect.DeepEqual(got, rules) {
		t.Fatalf("unpackValues(packRules(%q)) = %q, %v", rules, got, ok)
	}
	if got, ok := unpackValues(""); !ok || len(got) != 0 {
		t.Errorf("unpackValues(\"\") = %q, %v; want none", got, ok)
	}
	// Cut anywhere but between two rules, it is refused.
	ends := map[int]bool{}
	for i, n := 0, 0; i < len(rules); i++ {
		n += 4 + len(rules[i])
		ends[n] = true
	}
	for n := 1; n < len(packed); n++ {
		if _, ok := unpackValues(packed[:n]); ok != ends[n] {
			t.Errorf("unpackValues of the first %d bytes: ok = %v", n, ok)
		}
	}
}

// FuzzUnpackValues: whatever Redis answers, unpacking never panics, and
// what unpacks packs back to the same bytes.
func FuzzUnpackValues(f *testing.F) {
	f.Add(packRules([]string{encodeRule(codecCases[0]), encodeRule(codecCases[1])}))
	f.Add("")
	f.Add("\x00\x00\x00\x05abc")
	f.Add("\xff\xff\xff\xff")
	f.Fuzz(func(t *testing.T, packed string) {
		rules, ok := unpackValues(packed)
		if ok && packRules(rules) != packed {
			t.Fatalf("unpackValues(%q) = %q, which packs to %q", packed, rules, packRules(rules))
		}
	})
}
