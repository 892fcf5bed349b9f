package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

const (
	// auditOutboxScript adds an audit entry and its outbox entry under the
	// entry's stream ID, which only Redis knows, so the two land in one
	// MULTI/EXEC. KEYS: audit stream, outbox hash, outboxed set. ARGV:
	// max audit length, entry JSON, outbox entry JSON, account ID.
	auditOutboxScript = `
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[2])
redis.call('HSET', KEYS[2], id, ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
return id`

	// saveOutboxScript stores an outbox entry's delivery state, unless it
	// already left the outbox, and the last attempts as the status of
	// their destinations. KEYS: outbox hash, outboxed set, status hash.
	// ARGV: entry ID, entry JSON ("" when done), account ID, then
	// destination key, attempt JSON pairs.
	saveOutboxScript = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  if redis.call('HLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[3]) end
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i+1]) end
return 1`

	// leaseScript takes or renews a lease. KEYS: lease. ARGV: holder, ttl
	// in ms.
	leaseScript = `
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`
)

func leaseKey(name string) string { return "gk:lease:" + name }

// encodeOutbox returns, per audit entry of the transaction, its outbox
// entry as stored (IDs left for Redis to give), or nil when it has none.
func (t *tx) encodeOutbox() ([][]byte, error) {
	out := make([][]byte, len(t.auditsAsIs))
	now, _ := t.Account()
	for i, e := range t.auditsAsIs {
		o, ok := policy.NewOutboxEntry(e, t.account.Notifications, now.Notifications)
		if !ok {
			continue
		}
		b, err := json.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("encode outbox entry of %s: %w", t.k.id, err)
		}
		out[i] = b
	}
	return out, nil
}

// OutboxAccounts implements policy.Outbox.
func (s *Store) OutboxAccounts(ctx context.Context) ([]string, error) {
	var out []string
	for shard := range shards {
		ids, err := s.client.SMembers(ctx, outboxedKey(shard)).Result()
		if err != nil {
			return nil, wrap("list outboxes", err)
		}
		out = append(out, ids...)
	}
	slices.Sort(out)
	return out, nil
}

// OutboxEntries implements policy.Outbox.
func (s *Store) OutboxEntries(ctx context.Context, account string) ([]policy.OutboxEntry, error) {
	k := keysFor(account)
	m, err := s.client.HGetAll(ctx, k.outbox).Result()
	if err != nil {
		return nil, wrap("read outbox of "+account, err)
	}
	out := make([]policy.OutboxEntry, 0, len(m))
	for id, raw := range m {
		var o policy.OutboxEntry
		if err := json.Unmarshal([]byte(raw), &o); err != nil {
			return nil, fmt.Errorf("decode outbox entry %s of %s: %w", id, account, err)
		}
		o.ID, o.Entry.ID = id, id
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b policy.OutboxEntry) int { return policy.OutboxOrder(a.ID, b.ID) })
	return out, nil
}

// SaveOutbox implements policy.Outbox.
func (s *Store) SaveOutbox(ctx context.Context, e policy.OutboxEntry) error {
	k := keysFor(e.Account)
	var entry []byte
	if !e.Done() {
		var err error
		if entry, err = json.Marshal(e); err != nil {
			return fmt.Errorf("encode outbox entry of %s: %w", e.Account, err)
		}
	}
	args := []any{e.ID, entry, e.Account}
	for _, d := range e.Deliveries {
		if len(d.Attempts) == 0 {
			continue
		}
		a := d.Attempts[len(d.Attempts)-1]
		a.Entry, a.Event = e.ID, e.Event
		b, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("encode delivery status of %s: %w", e.Account, err)
		}
		args = append(args, d.Destination.Key(), b)
	}
	err := s.client.Eval(ctx, saveOutboxScript, []string{k.outbox, k.outboxed, k.nstatus}, args...).Err()
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	return wrap("save outbox entry of "+e.Account, err)
}

// DeliveryStatus implements policy.Outbox.
func (s *Store) DeliveryStatus(ctx context.Context, account string) (map[string]policy.Attempt, error) {
	m, err := s.client.HGetAll(ctx, keysFor(account).nstatus).Result()
	if err != nil {
		return nil, wrap("read delivery status of "+account, err)
	}
	out := make(map[string]policy.Attempt, len(m))
	for key, raw := range m {
		var a policy.Attempt
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			return nil, fmt.Errorf("decode delivery status of %s: %w", account, err)
		}
		out[key] = a
	}
	return out, nil
}

// ClaimLease implements policy.Outbox. The lease is a key that expires
// with it, so a holder that dies stops renewing and loses it.
func (s *Store) ClaimLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	n, err := s.client.Eval(ctx, leaseScript, []string{leaseKey(name)}, holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, wrap("claim lease "+name, err)
	}
	return n == 1, nil
}
