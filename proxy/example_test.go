package proxy_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/certs"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/proxy"
)

// A gatekeeper in front of a PostgreSQL: clients of account 10042 reach it
// through TLS on :5433 from the addresses the account allows.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	var engine *policy.Engine // policy.NewEngine on a store, started and running

	cm, err := certs.New(ctx, certs.Options{TLS: certs.TLS{SelfSigned: true}, Logger: zap.NewNop()})
	if err != nil {
		log.Fatal(err)
	}
	go cm.Run(ctx)
	srv, err := proxy.New(ctx, proxy.Options{
		Listeners: []proxy.Listener{{
			Name: "desktop", Addr: ":5433", Mode: proxy.ModeTLS,
			Routes: []proxy.Route{{Account: "10042", Upstream: "127.0.0.1:5432"}},
		}},
		Engine: engine,
		TLS:    cm.TLSConfig(),
	})
	if err != nil {
		log.Fatal(err)
	}
	// Serves until SIGTERM, then drains live connections.
	if err := srv.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
