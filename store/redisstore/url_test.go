package redisstore

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestClientOptions(t *testing.T) {
	for _, tc := range []struct {
		url     string
		kind    string   // standalone, sentinel, cluster; "" for an error
		addrs   []string // addresses, or sentinels
		db      int
		tls     bool
		wait    int           // wait_replicas
		waitFor time.Duration // wait_timeout; 0 for the default 2s
		errLike string
	}{
		{url: "redis://127.0.0.1:6390/0", kind: "standalone", addrs: []string{"127.0.0.1:6390"}},
		{url: "redis://cache.internal", kind: "standalone", addrs: []string{"cache.internal:6379"}},
		{url: "rediss://gk:s3cret@cache.internal:6380/2?dial_timeout=3s", kind: "standalone", addrs: []string{"cache.internal:6380"}, db: 2, tls: true},
		{url: "redis://h1:6379,h2:6379,h3:6379/0", kind: "cluster", addrs: []string{"h1:6379", "h2:6379", "h3:6379"}},
		{url: "redis://h1:6379?cluster=true", kind: "cluster", addrs: []string{"h1:6379"}},
		{url: "rediss://h1:6379,h2:6379/?cluster=1", kind: "cluster", addrs: []string{"h1:6379", "h2:6379"}, tls: true},
		{url: "redis://s1:26379,s2:26379/1?master_name=gk&password=m", kind: "sentinel", addrs: []string{"s1:26379", "s2:26379"}, db: 1, wait: 1},
		{url: "redis://s1:26379/0?master_name=gk&password=m&wait_replicas=0", kind: "sentinel", addrs: []string{"s1:26379"}},
		{url: "redis://s1:26379/0?master_name=gk&password=m&wait_replicas=2&wait_timeout=500ms", kind: "sentinel", addrs: []string{"s1:26379"}, wait: 2, waitFor: 500 * time.Millisecond},
		{url: "redis://h1:6379,h2:6379/0?wait_replicas=1", kind: "cluster", addrs: []string{"h1:6379", "h2:6379"}, wait: 1},
		{url: "redis://h/0?wait_replicas=-1", errLike: "wait_replicas"},
		{url: "redis://h/0?wait_replicas=one", errLike: "wait_replicas"},
		{url: "redis://h/0?wait_timeout=0s", errLike: "wait_timeout"},
		{url: "http://h:6379", errLike: "redis://"},
		{url: "redis://h1,h2/3", errLike: "database"},
		{url: "redis://h/0?cluster=maybe", errLike: "cluster"},
		{url: "redis://h/0?no_such_option=1", errLike: "no_such_option"},
		{url: "redis://h1:6379,/0", errLike: "empty host"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			o, dur, err := clientOptions(tc.url)
			if tc.kind == "" {
				if err == nil || !strings.Contains(err.Error(), tc.errLike) {
					t.Fatalf("got %T, %v; want an error about %q", o, err, tc.errLike)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kind string
			var addrs []string
			var db int
			var tls, ctxTimeout bool
			switch o := o.(type) {
			case *redis.Options:
				kind, addrs, db, tls, ctxTimeout = "standalone", []string{o.Addr}, o.DB, o.TLSConfig != nil, o.ContextTimeoutEnabled
			case *redis.ClusterOptions:
				kind, addrs, tls, ctxTimeout = "cluster", o.Addrs, o.TLSConfig != nil, o.ContextTimeoutEnabled
			case *redis.FailoverOptions:
				kind, addrs, db, tls, ctxTimeout = "sentinel", o.SentinelAddrs, o.DB, o.TLSConfig != nil, o.ContextTimeoutEnabled
				if o.MasterName != "gk" || o.Password != "m" {
					t.Fatalf("sentinel master %q password %q", o.MasterName, o.Password)
				}
			}
			if tc.waitFor == 0 {
				tc.waitFor = 2 * time.Second
			}
			if dur.replicas != tc.wait || dur.timeout != tc.waitFor {
				t.Fatalf("wait for %d replicas for %v, want %d for %v", dur.replicas, dur.timeout, tc.wait, tc.waitFor)
			}
			if kind != tc.kind || !slices.Equal(addrs, tc.addrs) || db != tc.db || tls != tc.tls || !ctxTimeout {
				t.Fatalf("got %s %v db %d tls %v ctx-timeout %v; want %s %v db %d tls %v ctx-timeout true",
					kind, addrs, db, tls, ctxTimeout, tc.kind, tc.addrs, tc.db, tc.tls)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://gk:s3cret@h:6379/0":                "redis://gk:xxxxx@h:6379/0",
		"redis://h:6379/0?master_name=m&password=p": "redis://h:6379/0?…",
		"rediss://:pw@h1,h2/0":                      "rediss://:xxxxx@h1,h2/0",
	} {
		if got := redactURL(in); got != want || strings.Contains(got, "s3cret") {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
