package service

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/windows"
)

// PlaceBinary returns the path the service should run for the gatekeeper
// binary exe: a copy in %ProgramFiles%\NAME, where only administrators can
// change it (a binary left in Downloads could be replaced by the user, and
// the service runs it as SYSTEM). With write, it copies exe there; a
// running old copy is renamed aside first (Windows lets a running binary
// be renamed, not replaced) and removed at the next install.
func PlaceBinary(exe, name string, write bool) (string, error) {
	pf, err := windows.KnownFolderPath(windows.FOLDERID_ProgramFiles, 0)
	if err != nil {
		return "", fmt.Errorf("find Program Files: %w", err)
	}
	dir := filepath.Join(pf, name)
	dst := filepath.Join(dir, "gatekeeper.exe")
	if !write || strings.EqualFold(filepath.Clean(exe), dst) {
		return dst, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s (run as administrator): %w", dir, err)
	}
	src, err := os.Open(exe)
	if err != nil {
		return "", fmt.Errorf("copy %s: %w", exe, err)
	}
	defer src.Close()
	tmp := dst + ".new"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return "", fmt.Errorf("copy to %s (run as administrator): %w", tmp, err)
	}
	_, err = io.Copy(out, src)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("copy to %s: %w", tmp, err)
	}
	old := dst + ".old"
	os.Remove(old) // left by the last install; still running is fine
	if _, err := os.Stat(dst); err == nil {
		if err := os.Rename(dst, old); err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("move the old %s aside: %w", dst, err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("put %s in place: %w", dst, err)
	}
	return dst, nil
}
