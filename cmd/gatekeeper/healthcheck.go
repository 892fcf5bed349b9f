package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// DefaultHealthURL is the ops listener's liveness endpoint as the container
// image's HEALTHCHECK reaches it: ops.addr must listen on port 9090 of the
// container (":9090" or "127.0.0.1:9090").
const DefaultHealthURL = "http://127.0.0.1:9090/healthz"

// healthcheckCmd asks /healthz and succeeds only on 200: for a container's
// HEALTHCHECK, since the minimal image has no curl or wget.
func healthcheckCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("healthcheck", stderr)
	url := fs.String("url", DefaultHealthURL, "`URL` to GET; 200 is healthy")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return usageError{fmt.Sprintf("healthcheck: -url: %v", err)}
	}
	// No proxy from the environment: the ops listener is local.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", *url, resp.Status)
	}
	fmt.Fprintf(stdout, "ok: %s\n", *url)
	return nil
}
