package redisstore

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/store/backup"
)

// FuzzKeyRecord feeds the restore's check of a key record: fields are the
// input split at NUL bytes. What it accepts must be safe for writeKeys to
// index (the checks here are what writeKeys relies on).
func FuzzKeyRecord(f *testing.F) {
	for _, seed := range [][]string{
		{"gk:meta", "hash", "-1", "generation", "g1", "created_at", "2026"},
		{"gk:{gk:03}:acct:10042", "string", "-1", "{}"},
		{"gk:{gk:03}:audit:10042", "stream", "-1", "1-1", "1", "e", "{}", "2-0", "2", "a", "b", "c", "d"},
		{"gk:{gk:03}:sess:10042:h", "string", "1800000000000", "{}"},
		{"gk:{gk:03}:accounts", "set", "-1", "10042"},
		{"gk:x", "zset", "-1", "m", "1.5"},
		{"gk:{gk:03}:audit:10042", "stream", "-1", "1-1", "9", "e"},
	} {
		f.Add(bytes.Join(toBytes(seed), []byte{0}))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		k, err := parseKeyRecord(backup.Record{Tag: tagRedisKey, Fields: bytes.Split(in, []byte{0})})
		if err != nil {
			return
		}
		// Walk it as writeKeys does.
		switch k.typ {
		case "string":
			_ = k.items[0]
		case "stream":
			for i := 0; i < len(k.items); {
				n, _ := strconv.Atoi(string(k.items[i+1]))
				_ = k.items[i+2 : i+2+2*n]
				i += 2 + 2*n
			}
		}
	})
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}
