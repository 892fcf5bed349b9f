package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/config"
)

// checkCmd validates a configuration and the files it names without
// starting anything. Every problem is reported at once with its key path:
// errors in the returned error (exit 1), warnings on stdout.
func checkCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	path := fs.String("config", "", "configuration `file` to validate")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{"check: -config is required"}
	}
	c, errs, warnings := config.Check(*path, time.Now())
	if len(errs) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "%s: %s", *path, count(len(errs), "error"))
		if len(warnings) > 0 {
			fmt.Fprintf(&b, ", %s", count(len(warnings), "warning"))
		}
		for _, e := range errs {
			fmt.Fprintf(&b, "\nerror: %v", e)
		}
		for _, w := range warnings {
			fmt.Fprintf(&b, "\nwarning: %v", w)
		}
		return errors.New(b.String())
	}
	for _, w := range warnings {
		fmt.Fprintf(stdout, "warning: %v\n", w)
	}
	fmt.Fprintf(stdout, "%s: ok (%s, store %s)", *path, count(len(c.Listeners), "listener"), redactURL(c.Store.URL))
	if len(warnings) > 0 {
		fmt.Fprintf(stdout, ", %s", count(len(warnings), "warning"))
	}
	fmt.Fprintln(stdout)
	return nil
}

func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
