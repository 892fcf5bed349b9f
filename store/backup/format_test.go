package backup

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"
)

// sample is a backup of n records, sealed under key when not nil.
func sample(t testing.TB, n int, key []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, key)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		// Incompressible enough to span several encrypted chunks.
		v := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		if err := w.Write(Record{Tag: 'k', Fields: [][]byte{[]byte("key"), v[:], bytes.Repeat(v[:], 8), nil}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(Manifest{Backend: "test", Generation: "gen-0123456789abcdef", Created: time.Unix(1e9, 0).UTC(), Counts: map[string]int64{"key": int64(n)}}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var testKey = bytes.Repeat([]byte{7}, KeySize)

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		key  []byte
	}{
		{"empty", 0, nil},
		{"plain", 1000, nil},
		{"sealed-one-chunk", 10, testKey},
		{"sealed-many-chunks", 5000, testKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := sample(t, tc.n, tc.key)
			b, err := Decode(data, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Records) != tc.n || b.Manifest.Records != int64(tc.n) || b.Manifest.Generation != "gen-0123456789abcdef" || b.Sealed != (tc.key != nil) {
				t.Fatalf("decoded %d records, manifest %+v", len(b.Records), b.Manifest)
			}
			for _, r := range b.Records {
				if r.Tag != 'k' || len(r.Fields) != 4 || string(r.Fields[0]) != "key" || len(r.Fields[3]) != 0 {
					t.Fatalf("record %+v", r)
				}
			}
			if tc.key != nil && bytes.Contains(data, []byte("gen-0123456789abcdef")) {
				t.Error("the generation is readable in an encrypted backup")
			}
		})
	}
}

// TestDamageRefusedWhole truncates, alters and mis-keys backups: each is
// refused with an error that says so, and nothing is returned.
func TestDamageRefusedWhole(t *testing.T) {
	plain := sample(t, 5000, nil)
	sealed := sample(t, 5000, testKey)
	if len(sealed) < 3*chunkSize {
		t.Fatalf("sealed sample is %d bytes: too small to test chunk damage", len(sealed))
	}
	otherKey := bytes.Repeat([]byte{8}, KeySize)
	flip := func(b []byte, at int) []byte { c := bytes.Clone(b); c[at] ^= 0x40; return c }
	for _, tc := range []struct {
		name string
		data []byte
		key  []byte
		want string
	}{
		{"plain-truncated", plain[:len(plain)/2], nil, "SHA-256"},
		{"plain-last-byte-missing", plain[:len(plain)-1], nil, "SHA-256"},
		{"plain-altered-data", flip(plain, len(plain)/2), nil, "SHA-256"},
		{"plain-altered-guard", flip(plain, len(plain)-3), nil, "SHA-256"},
		{"plain-header-only", plain[:10], nil, "truncated"},
		{"not-a-backup", []byte("PGDMP something else"), nil, "header"},
		{"plain-with-a-key", plain, testKey, "not encrypted"},
		{"sealed-without-key", sealed, nil, "encrypted"},
		{"sealed-wrong-key", sealed, otherKey, "wrong key"},
		{"sealed-truncated-mid-chunk", sealed[:len(sealed)-100], testKey, "truncated"},
		{"sealed-truncated-at-chunk", sealed[:len(magic)+2+saltLen+2*(chunkSize+tagLen)], testKey, "truncated"},
		{"sealed-altered-chunk", flip(sealed, len(sealed)/2), testKey, "altered"},
		{"sealed-altered-salt", flip(sealed, len(magic)+5), testKey, "wrong key"},
		{"sealed-flag-cleared", func() []byte { c := bytes.Clone(sealed); c[len(magic)+1] = 0; return c }(), nil, "SHA-256"},
		{"version", func() []byte { c := bytes.Clone(plain); c[len(magic)] = 9; return c }(), nil, "version 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Decode(tc.data, tc.key)
			if err == nil || b != nil {
				t.Fatalf("Decode accepted a damaged file: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if !errors.Is(err, ErrCorrupt) && !strings.Contains(tc.name, "key") && tc.name != "version" {
				t.Errorf("error %q is not ErrCorrupt", err)
			}
		})
	}
}

// seal builds a plain file around a payload with a matching guard, so the
// fuzzer reaches the decompressor and the record parser.
func seal(payload []byte) []byte {
	out := append([]byte(magic), FormatVersion, 0)
	out = append(out, payload...)
	h := sha256.Sum256(out)
	return append(out, h[:]...)
}

func FuzzDecode(f *testing.F) {
	f.Add(sample(f, 3, nil))
	f.Add(sample(f, 0, nil))
	f.Add(sample(f, 2, testKey))
	f.Add(sample(f, 3, nil)[len(magic)+2 : len(sample(f, 3, nil))-sha256.Size])
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, seal(data)} {
			for _, key := range [][]byte{nil, testKey} {
				b, err := Decode(in, key)
				if err != nil {
					if b != nil {
						t.Fatal("a result with an error")
					}
					continue
				}
				if int64(len(b.Records)) != b.Manifest.Records {
					t.Fatalf("%d records, manifest says %d", len(b.Records), b.Manifest.Records)
				}
			}
		}
	})
}

func FuzzRecords(f *testing.F) {
	f.Add(appendRecord(nil, Record{Tag: 'k', Fields: [][]byte{[]byte("a"), nil}}))
	f.Add([]byte{'M', 1, 2, '{', '}'})
	f.Add([]byte{'k', 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := parseRecords(raw)
		if err != nil {
			return
		}
		// What parses encodes back to the same bytes.
		var again []byte
		for _, r := range b.Records {
			again = appendRecord(again, r)
		}
		if !bytes.HasPrefix(raw, again) {
			t.Fatal("records do not encode back to their bytes")
		}
	})
}
