package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Durability is what Redis says about keeping what it acknowledged.
type Durability struct {
	// Known is false when Redis refuses CONFIG GET (a managed service, an
	// ACL): then nothing else here is known either.
	Known bool
	// Durable: every primary writes an append-only file, so a restart
	// keeps every acknowledged write (up to appendfsync's second).
	Durable bool
	// Detail says what was found, for the log and /readyz.
	Detail string
}

// Durability reads appendonly, appendfsync, save and the replica count of
// every primary. Only the append-only file survives a restart of the
// primary without losing writes: RDB snapshots lose what came after the
// last one, and a replica of a primary that restarted empty resyncs to
// empty.
func (s *Store) Durability(ctx context.Context) (Durability, error) {
	var mu sync.Mutex
	d := Durability{Known: true, Durable: true}
	var details []string
	check := func(ctx context.Context, c *redis.Client) error {
		conf, err := c.ConfigGet(ctx, "appendonly").Result()
		if err == nil {
			var more map[string]string
			if more, err = c.ConfigGet(ctx, "appendfsync").Result(); err == nil {
				conf["appendfsync"] = more["appendfsync"]
			}
			if more, err = c.ConfigGet(ctx, "save").Result(); err == nil {
				conf["save"] = more["save"]
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if unavailable(err) || ctx.Err() != nil {
				return err
			}
			d.Known, d.Durable = false, false
			details = append(details, fmt.Sprintf("%s: CONFIG GET refused (%v): cannot tell whether Redis persists its data", c.Options().Addr, err))
			return nil
		}
		replicas := -1
		if info, err := c.Info(ctx, "replication").Result(); err == nil {
			for _, line := range strings.Split(info, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
					replicas, _ = strconv.Atoi(v)
				}
			}
		}
		aof := conf["appendonly"] == "yes"
		d.Durable = d.Durable && aof
		var what string
		switch {
		case aof:
			what = fmt.Sprintf("appendonly yes, appendfsync %s", conf["appendfsync"])
		case conf["save"] != "":
			what = fmt.Sprintf("appendonly no, RDB snapshots only (save %q): a restart loses the writes since the last snapshot", conf["save"])
		default:
			what = `appendonly no, save "": no persistence, a restart loses everything`
		}
		details = append(details, fmt.Sprintf("%s: %s, %d replicas", c.Options().Addr, what, replicas))
		return nil
	}
	var err error
	if s.cluster != nil {
		err = s.cluster.ForEachMaster(ctx, check)
	} else {
		err = check(ctx, s.single)
	}
	if err != nil {
		return Durability{}, wrap("read Redis persistence settings", err)
	}
	d.Detail = strings.Join(details, "; ") + fmt.Sprintf("; wait_replicas %d", s.waitReplicas)
	return d, nil
}
