package connector_test

import (
	"context"
	"log"
	"net"
	"os/signal"
	"syscall"

	"github.com/gatekeeper-dev/gatekeeper/connector"
)

// A desktop computer's database application connects to 127.0.0.1:5432 in
// plain TCP; the connector carries it to gatekeeper over TLS.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	pins, err := connector.ParsePins("sha256//YLh1dUR9y6Kja30RrAn7JKnbQG/uEtLMkBgFF2Fuihg=")
	if err != nil {
		log.Fatal(err)
	}
	c, err := connector.New(connector.Options{
		Server:     "gate.example.com:5433",
		ServerName: "10042.db.example.com", // selects the account's route
		Pins:       pins,
		AdminURL:   "https://gate.example.com:8443/",
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:5432")
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Serve(ctx, ln); err != nil {
		log.Fatal(err)
	}
}
