package redisstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// Rules are stored in a compact binary form rather than JSON: LoadPolicy
// decodes every rule of the fleet, and at a million rules JSON's decoding
// time dominates the load (see BenchmarkDecodeRule). Accounts, users,
// sessions and audit entries are few or read one at a time, and stay JSON.
//
// Version 1, every integer a varint:
//
//	1, id, addr length (4 or 16), addr bytes, prefix bits,
//	note, source, owner, created by (each: length, bytes),
//	created at, expires at (each: 0 for zero, or 1, unix seconds, nanoseconds)
//
// Account and usage are not in the value: the key names the account, and
// usage lives in its own hash so that recording it never rewrites a rule.
const ruleCodecV1 = 1

func encodeRule(r policy.Rule) string {
	// The prefix is kept as given, IPv4-mapped or not: normalising is the
	// policy package's job, and a store must return what it was handed.
	addr := r.Prefix.Addr()
	b := make([]byte, 0, 48+len(r.Note)+len(r.Source)+len(r.Owner)+len(r.CreatedBy))
	b = append(b, ruleCodecV1)
	b = binary.AppendUvarint(b, uint64(r.ID))
	ab := addr.AsSlice()
	b = append(b, byte(len(ab)))
	b = append(b, ab...)
	b = append(b, byte(r.Prefix.Bits()))
	for _, s := range []string{r.Note, r.Source, r.Owner, r.CreatedBy} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = appendTime(b, r.CreatedAt)
	b = appendTime(b, r.ExpiresAt)
	return string(b)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

var errTruncated = errors.New("truncated")

// ruleReader decodes from a string without copying: the rule's strings
// share the value's memory.
type ruleReader struct {
	s   string
	i   int
	err error
}

func (r *ruleReader) byte() byte {
	if r.err != nil || r.i >= len(r.s) {
		r.err = errTruncated
		return 0
	}
	c := r.s[r.i]
	r.i++
	return c
}

func (r *ruleReader) uvarint() uint64 {
	var x uint64
	for shift := uint(0); shift < 64; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x
		}
	}
	r.err = errors.New("varint overflows")
	return 0
}

func (r *ruleReader) varint() int64 {
	u := r.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

func (r *ruleReader) str(n uint64) string {
	if r.err != nil || n > uint64(len(r.s)-r.i) {
		r.err = errTruncated
		return ""
	}
	v := r.s[r.i : r.i+int(n)]
	r.i += int(n)
	return v
}

func (r *ruleReader) time() time.Time {
	switch r.byte() {
	case 0:
		return time.Time{}
	case 1:
		sec := r.varint()
		nsec := r.uvarint()
		if nsec >= 1e9 {
			r.err = errors.New("bad nanoseconds")
			return time.Time{}
		}
		return time.Unix(sec, int64(nsec)).UTC()
	}
	if r.err == nil {
		r.err = errors.New("bad time tag")
	}
	return time.Time{}
}

func decodeRule(account, s string) (policy.Rule, error) {
	r := ruleReader{s: s}
	if v := r.byte(); v != ruleCodecV1 {
		if r.err != nil {
			return policy.Rule{}, fmt.Errorf("decode rule: %w", r.err)
		}
		return policy.Rule{}, fmt.Errorf("decode rule: unknown encoding version %d", v)
	}
	var rule policy.Rule
	id := r.uvarint()
	if id > 1<<32-1 {
		return policy.Rule{}, fmt.Errorf("decode rule: ID %d out of range", id)
	}
	rule.ID = policy.RuleID(id)
	rule.Account = account
	var addr netip.Addr
	switch n := r.byte(); n {
	case 4:
		a := r.str(4)
		if r.err == nil {
			addr = netip.AddrFrom4([4]byte{a[0], a[1], a[2], a[3]})
		}
	case 16:
		a := r.str(16)
		if r.err == nil {
			var b [16]byte
			copy(b[:], a)
			addr = netip.AddrFrom16(b)
		}
	default:
		if r.err == nil {
			return policy.Rule{}, fmt.Errorf("decode rule %d: bad address length %d", id, n)
		}
	}
	bits := int(r.byte())
	if r.err == nil {
		if bits > addr.BitLen() {
			return policy.Rule{}, fmt.Errorf("decode rule %d: /%d on a %d-bit address", id, bits, addr.BitLen())
		}
		rule.Prefix = netip.PrefixFrom(addr, bits)
	}
	rule.Note = r.str(r.uvarint())
	rule.Source = r.str(r.uvarint())
	rule.Owner = r.str(r.uvarint())
	rule.CreatedBy = r.str(r.uvarint())
	rule.CreatedAt = r.time()
	rule.ExpiresAt = r.time()
	if r.err != nil {
		return policy.Rule{}, fmt.Errorf("decode rule %d: %w", id, r.err)
	}
	if r.i != len(s) {
		return policy.Rule{}, fmt.Errorf("decode rule %d: %d trailing bytes", id, len(s)-r.i)
	}
	return rule, nil
}
