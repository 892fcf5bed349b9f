//go:build !windows

package state

import (
	"fmt"
	"os"
	"syscall"
)

// PrepareDir creates dir if needed, for the connector's files, and checks
// that nobody but this user and root can change what is in it.
func PrepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	// Stat, not Lstat: with DynamicUser= systemd's /var/lib/NAME is a
	// link to /var/lib/private/NAME, and what counts is who owns and may
	// write the directory it leads to.
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := ownedHere(dir, fi); err != nil {
		return err
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s can be written by others (mode %o): chmod go-w it", dir, fi.Mode().Perm())
	}
	return nil
}

// WriteSecret replaces path with data, readable and writable by this user
// only (mode 0600), through a temporary file that is never readable by
// anyone else.
func WriteSecret(path string, data []byte) error {
	return writeAtomic(path, data, 0o600)
}

// CheckSecret returns an error unless path is a regular file of this user
// (or root) that nobody else can read or write, as ssh insists of a
// private key. Call it before using the secret.
func CheckSecret(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (a symbolic link?)", path)
	}
	if err := ownedHere(path, fi); err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s can be read or written by others (mode %o): chmod 600 it, and make a new identity if others may have read it", path, fi.Mode().Perm())
	}
	return nil
}

// ownedHere insists that this user or root owns fi.
func ownedHere(path string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: cannot tell its owner", path)
	}
	if uid := os.Geteuid(); int(st.Uid) != uid && st.Uid != 0 {
		return fmt.Errorf("%s belongs to uid %d, not to this user (%d) or root", path, st.Uid, uid)
	}
	return nil
}
