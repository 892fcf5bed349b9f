//go:build !windows

package service

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// PlaceBinary returns the path the service should run for the gatekeeper
// binary exe. The service runs it with the service manager's privileges,
// so it must not be changeable by anyone else: exe and its directory must
// belong to root and be writable by no one but their owner. Nothing is
// written (write is for Windows, where the binary is copied into place).
func PlaceBinary(exe, name string, write bool) (string, error) {
	for _, p := range []string{exe, filepath.Dir(exe)} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("check %s: %w", p, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
			return "", fmt.Errorf("%s can be changed by someone other than root, and the service would run it: "+
				"install gatekeeper where only root can change it and run that one: "+
				"sudo install -m 0755 -o root gatekeeper /usr/local/bin/ (where Homebrew owns /usr/local/bin, /opt/gatekeeper/ instead)", p)
		}
	}
	return exe, nil
}
