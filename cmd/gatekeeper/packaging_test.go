package main

import (
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gatekeeper-dev/gatekeeper/config"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
	stage     int // index of the FROM it belongs to
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	stage := -1
	var cur strings.Builder
	for line := range strings.SplitSeq(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, instruction{cmd: cmd, args: strings.Join(strings.Fields(args), " "), stage: stage})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("Dockerfile ends inside a continued instruction: %q", cur.String())
	}
	return out
}

// The Dockerfile cannot be built here (no Docker engine): check that it
// says what the image promises.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "../../Dockerfile")
	final := ins[len(ins)-1].stage
	var finalIns []instruction
	all := map[string][]string{}
	for _, in := range ins {
		all[in.cmd] = append(all[in.cmd], in.args)
		if in.stage == final {
			finalIns = append(finalIns, in)
		}
	}
	get := func(cmd string) []string {
		var out []string
		for _, in := range finalIns {
			if in.cmd == cmd {
				out = append(out, in.args)
			}
		}
		return out
	}
	if final < 1 {
		t.Errorf("not multi-stage: %d FROM", final+1)
	}
	if !regexp.MustCompile(`^golang:1\.\d+ AS \w+$`).MatchString(all["FROM"][0]) {
		t.Errorf("builder stage %q: want golang:1.N (pinned by minor) AS name", all["FROM"][0])
	}
	if !slices.ContainsFunc(all["RUN"], func(s string) bool {
		return strings.Contains(s, "CGO_ENABLED=0") && strings.Contains(s, "-trimpath") &&
			strings.Contains(s, `-ldflags "-s -w -X main.version=${VERSION}"`) && strings.Contains(s, "./cmd/gatekeeper")
	}) {
		t.Errorf("no static build (CGO_ENABLED=0, -trimpath, -ldflags -s -w -X main.version) in %q", all["RUN"])
	}
	if from := all["FROM"][len(all["FROM"])-1]; !strings.HasPrefix(from, "gcr.io/distroless/static") {
		t.Errorf("runtime image %q: want distroless static (CA certificates, no shell)", from)
	}
	users := get("USER")
	if len(users) == 0 {
		t.Fatal("no USER in the final stage: the image would run as root")
	}
	if u := strings.Split(users[len(users)-1], ":")[0]; u == "root" || u == "0" {
		t.Errorf("USER %q is root", users[len(users)-1])
	}
	vols := strings.Join(get("VOLUME"), " ")
	for _, v := range []string{"/etc/gatekeeper", "/var/lib/gatekeeper"} {
		if !strings.Contains(vols, `"`+v+`"`) {
			t.Errorf("VOLUME lacks %s: %q", v, vols)
		}
	}
	exposed := strings.Fields(strings.Join(get("EXPOSE"), " "))
	c, err := config.Load("../../configs/container.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wantPorts := map[string]string{"ops.addr": c.Ops.Addr, "admin.addr": c.Admin.Addr}
	for _, l := range c.Listeners {
		wantPorts["listeners."+l.Name] = l.Addr
	}
	for key, addr := range wantPorts {
		_, port, _ := net.SplitHostPort(addr)
		if !slices.Contains(exposed, port) {
			t.Errorf("EXPOSE %v lacks %s's port %s", exposed, key, port)
		}
	}
	hc := get("HEALTHCHECK")
	if len(hc) != 1 {
		t.Fatalf("want one HEALTHCHECK in the final stage, got %q", hc)
	}
	// The health check asks the ops listener of the default configuration.
	_, opsPort, _ := net.SplitHostPort(c.Ops.Addr)
	wantHC := `CMD ["/usr/local/bin/gatekeeper", "healthcheck", "-url", "http://127.0.0.1:` + opsPort + `/healthz"]`
	if !strings.HasSuffix(hc[0], wantHC) {
		t.Errorf("HEALTHCHECK %q: want it to end in %s", hc[0], wantHC)
	}
	if wantHC != `CMD ["/usr/local/bin/gatekeeper", "healthcheck", "-url", "`+DefaultHealthURL+`"]` {
		t.Errorf("the image's health URL and healthcheck's default %s differ", DefaultHealthURL)
	}
	copies := strings.Join(get("COPY"), "\n")
	for _, want := range []string{"/usr/local/bin/gatekeeper", "configs/container.yaml /etc/gatekeeper/gatekeeper.yaml"} {
		if !strings.Contains(copies, want) {
			t.Errorf("COPY lacks %s:\n%s", want, copies)
		}
	}
	if ep := get("ENTRYPOINT"); len(ep) != 1 || ep[0] != `["/usr/local/bin/gatekeeper"]` {
		t.Errorf("ENTRYPOINT %q", ep)
	}
	if cmd := get("CMD"); len(cmd) != 1 || cmd[0] != `["serve", "-config", "/etc/gatekeeper/gatekeeper.yaml"]` {
		t.Errorf("CMD %q", cmd)
	}
	ignore, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".git", "**/data"} {
		if !slices.Contains(strings.Split(string(ignore), "\n"), want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}

// The systemd unit has the hardening the README promises.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../../deploy/gatekeeper.service")
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{}
	section := ""
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Errorf("not key=value: %q", line)
			}
			settings[section+k] = append(settings[section+k], v)
		}
	}
	want := map[string]string{
		"ExecStart":               "/usr/local/bin/gatekeeper serve -config /etc/gatekeeper/gatekeeper.yaml",
		"ExecStartPre":            "/usr/local/bin/gatekeeper check -config /etc/gatekeeper/gatekeeper.yaml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"User":                    "gatekeeper",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ReadWritePaths":          "/var/lib/gatekeeper",
		"StateDirectory":          "gatekeeper",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"PrivateTmp":              "yes",
		"ProtectHome":             "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter":        "@system-service",
		"LimitNOFILE":             "1048576",
	}
	for k, v := range want {
		if !slices.Contains(settings["[Service]"+k], v) {
			t.Errorf("[Service] %s=%s missing (have %q)", k, v, settings["[Service]"+k])
		}
	}
	if got := settings["[Install]WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("WantedBy %q", got)
	}
}
