package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// jsonHash is a transaction's view of one hash of JSON values (field ->
// value), as devices and enrolment codes are kept: reads go to Redis on
// the watching connection, and puts and deletions wait here for commit,
// and reads see them.
type jsonHash[T any] struct {
	key  string
	what string // for messages: "device", "enrolment code"
	// field names a value's field.
	field func(T) string
	puts  map[string]T
	dels  map[string]bool
}

func newJSONHash[T any](key, what string, field func(T) string) *jsonHash[T] {
	return &jsonHash[T]{key: key, what: what, field: field, puts: map[string]T{}, dels: map[string]bool{}}
}

// list returns every value, sorted by field.
func (h *jsonHash[T]) list(ctx context.Context, rtx *redis.Tx, account string) ([]T, error) {
	all, err := rtx.HGetAll(ctx, h.key).Result()
	if err != nil {
		return nil, wrap("read "+h.what+"s of "+account, err)
	}
	out := make([]T, 0, len(all)+len(h.puts))
	for f, v := range all {
		if _, replaced := h.puts[f]; replaced || h.dels[f] {
			continue
		}
		var x T
		if err := json.Unmarshal([]byte(v), &x); err != nil {
			return nil, fmt.Errorf("decode %s %s of %s: %w", h.what, f, account, err)
		}
		out = append(out, x)
	}
	for _, x := range h.puts {
		out = append(out, x)
	}
	slices.SortFunc(out, func(a, b T) int { return strings.Compare(h.field(a), h.field(b)) })
	return out, nil
}

// get returns one value; policy.ErrNotFound if there is none.
func (h *jsonHash[T]) get(ctx context.Context, rtx *redis.Tx, account, field string) (T, error) {
	var x T
	if v, ok := h.puts[field]; ok {
		return v, nil
	}
	if h.dels[field] {
		return x, fmt.Errorf("%s %s of %s: %w", h.what, field, account, policy.ErrNotFound)
	}
	v, err := rtx.HGet(ctx, h.key, field).Result()
	if errors.Is(err, redis.Nil) {
		return x, fmt.Errorf("%s %s of %s: %w", h.what, field, account, policy.ErrNotFound)
	}
	if err != nil {
		return x, wrap("read "+h.what+" "+field+" of "+account, err)
	}
	if err := json.Unmarshal([]byte(v), &x); err != nil {
		return x, fmt.Errorf("decode %s %s of %s: %w", h.what, field, account, err)
	}
	return x, nil
}

func (h *jsonHash[T]) put(x T) {
	f := h.field(x)
	delete(h.dels, f)
	h.puts[f] = x
}

func (h *jsonHash[T]) del(field string) {
	delete(h.puts, field)
	h.dels[field] = true
}

func (h *jsonHash[T]) changed() bool { return len(h.puts) > 0 || len(h.dels) > 0 }

// encode returns the field/value pairs to set.
func (h *jsonHash[T]) encode(account string) ([]any, error) {
	out := make([]any, 0, 2*len(h.puts))
	for f, x := range h.puts {
		b, err := json.Marshal(x)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s of %s: %w", h.what, f, account, err)
		}
		out = append(out, f, b)
	}
	return out, nil
}

// commit queues the writes on p, deletions first.
func (h *jsonHash[T]) commit(ctx context.Context, p redis.Pipeliner, encoded []any) {
	if len(h.dels) > 0 {
		fields := make([]string, 0, len(h.dels))
		for f := range h.dels {
			fields = append(fields, f)
		}
		p.HDel(ctx, h.key, fields...)
	}
	if len(encoded) > 0 {
		p.HSet(ctx, h.key, encoded...)
	}
}
