package redisstore

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestLogTo: go-redis's own messages arrive in the zap logger, as
// warnings, with URL credentials taken out.
func TestLogTo(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	LogTo(zap.New(core))

	clientLogger{log: zap.New(core)}.Printf(context.Background(), "cannot reach %s: %v\n",
		"rediss://gk:s3cret-pass@10.0.0.1:6379/0", "refused")
	// A real message: dialing a port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err == nil {
		t.Fatal("ping to a closed port succeeded")
	}

	var redacted, dial bool
	for _, e := range logs.All() {
		detail := e.ContextMap()["detail"].(string)
		if e.Level != zapcore.WarnLevel || e.Message != "redis client" {
			t.Errorf("entry %v %q", e.Level, e.Message)
		}
		if strings.Contains(detail, "s3cret") {
			t.Errorf("password logged: %q", detail)
		}
		redacted = redacted || detail == "cannot reach rediss://gk:xxxxx@10.0.0.1:6379/0: refused"
		dial = dial || strings.Contains(detail, addr)
	}
	if !redacted {
		t.Errorf("the URL's credentials were not taken out: %v", logs.All())
	}
	if !dial {
		t.Errorf("go-redis's failed dial to %s not logged: %v", addr, logs.All())
	}
}
