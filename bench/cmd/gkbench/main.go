// Command gkbench is the Go side of bench/run: it prepares the
// configurations of a run (prepare), serves as the upstream of the proxies
// under test (upstream), and measures gatekeeper beside HAProxy and a
// direct connection (measure). bench/run starts and stops the processes;
// see docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/gatekeeper-dev/gatekeeper/bench/upstream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "gkbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: gkbench prepare|upstream|measure [flags]")
	}
	switch args[0] {
	case "prepare":
		return prepareCmd(args[1:])
	case "upstream":
		return upstreamCmd(ctx, args[1:])
	case "measure":
		return measureCmd(ctx, args[1:])
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// upstreamCmd serves the raw and HTTP upstreams until interrupted.
func upstreamCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	raw := fs.String("raw", "127.0.0.1:0", "sink/source/echo `address`")
	web := fs.String("http", "127.0.0.1:0", "HTTP `address`")
	splice := fs.String("splice", "", "`address` of a bare splice forwarder to the raw upstream (none if empty)")
	size := fs.Int("body", 1024, "HTTP response body `bytes`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rl, err := net.Listen("tcp", *raw)
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", *web)
	if err != nil {
		rl.Close()
		return err
	}
	srv := upstream.Serve(rl)
	defer srv.Close()
	if *splice != "" {
		fl, err := net.Listen("tcp", *splice)
		if err != nil {
			hl.Close()
			return err
		}
		fwd := upstream.Forward(fl, rl.Addr().String())
		defer fwd.Close()
	}
	body := make([]byte, *size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	return upstream.ServeHTTP(ctx, hl, body)
}
