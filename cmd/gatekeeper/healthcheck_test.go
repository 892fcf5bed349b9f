package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatekeeper-dev/gatekeeper/ops"
)

func TestHealthcheck(t *testing.T) {
	// The real ops handler, so that the command and /healthz agree.
	live := httptest.NewServer(ops.Handler(prometheus.NewRegistry(), nil))
	defer live.Close()
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer sick.Close()
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer hang.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/healthz"
	ln.Close()

	cases := []struct {
		name string
		args []string
		err  string // "" for healthy
	}{
		{"healthy", []string{"-url", live.URL + "/healthz"}, ""},
		{"503", []string{"-url", sick.URL + "/healthz"}, "503"},
		{"down", []string{"-url", down}, "connection refused"},
		{"timeout", []string{"-url", hang.URL, "-timeout", "200ms"}, "deadline exceeded"},
		{"not found", []string{"-url", live.URL + "/nope"}, "404"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), append([]string{"healthcheck"}, tc.args...), nil, &out, &out)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("healthcheck: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("healthcheck: %v; want an error containing %q", err, tc.err)
			}
		})
	}
}
