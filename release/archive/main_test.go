package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// writeInputs writes the release's files into a new directory, with the
// given modification time, and returns their paths (in an order that is
// not the archive's).
func writeInputs(t *testing.T, mtime time.Time) []string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]struct {
		data string
		mode os.FileMode
	}{"gatekeeper": {"binary", 0o700}, "README.md": {"# gatekeeper\n", 0o600}, "gatekeeper.exe": {"MZ", 0o600}}
	var paths []string
	for _, name := range []string{"gatekeeper.exe", "gatekeeper", "README.md"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(files[name].data), files[name].mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, files[name].mode)
		os.Chtimes(p, mtime, mtime)
		paths = append(paths, p)
	}
	return paths
}

// The same files, elsewhere and dated differently, give the same bytes.
func TestArchivesReproducible(t *testing.T) {
	for _, ext := range []string{".tar.gz", ".zip"} {
		var outs [][]byte
		for _, mtime := range []time.Time{time.Now(), time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)} {
			out := filepath.Join(t.TempDir(), "a"+ext)
			if err := run(append([]string{"-o", out, "-dir", "gatekeeper_v1_x", "-time", "1796610716"}, writeInputs(t, mtime)...)); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, b)
		}
		if !bytes.Equal(outs[0], outs[1]) {
			t.Errorf("%s: two archives of the same files differ", ext)
		}
		checkContent(t, ext, outs[0])
	}
}

type item struct {
	name string
	mode int64
	data string
}

func checkContent(t *testing.T, ext string, b []byte) {
	t.Helper()
	want := []item{
		{"gatekeeper_v1_x/README.md", 0o644, "# gatekeeper\n"},
		{"gatekeeper_v1_x/gatekeeper", 0o755, "binary"},
		{"gatekeeper_v1_x/gatekeeper.exe", 0o755, "MZ"},
	}
	mtime := time.Unix(1796610716, 0)
	var got []item
	switch ext {
	case ".tar.gz":
		gz, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if gz.Name != "" || !gz.ModTime.IsZero() {
			t.Errorf("gzip header has name %q, time %v", gz.Name, gz.ModTime)
		}
		tr := tar.NewReader(gz)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if !h.ModTime.Equal(mtime) || h.Uid != 0 || h.Gid != 0 {
				t.Errorf("%s: time %v, owner %d:%d", h.Name, h.ModTime, h.Uid, h.Gid)
			}
			if h.Typeflag == tar.TypeDir {
				continue
			}
			data, _ := io.ReadAll(tr)
			got = append(got, item{h.Name, h.Mode, string(data)})
		}
	case ".zip":
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range zr.File {
			if !f.Modified.Equal(mtime) {
				t.Errorf("%s: time %v", f.Name, f.Modified)
			}
			rc, _ := f.Open()
			data, _ := io.ReadAll(rc)
			rc.Close()
			got = append(got, item{f.Name, int64(f.Mode().Perm()), string(data)})
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s holds %v, want %v", ext, got, want)
	}
}

func TestArchiveRejects(t *testing.T) {
	in := writeInputs(t, time.Now())
	dir := t.TempDir()
	for _, args := range [][]string{
		{"-o", filepath.Join(dir, "a.rar"), "-dir", "x"},
		{"-o", filepath.Join(dir, "a.zip")},
		{"-dir", "x"},
	} {
		if err := run(append(args, in...)); err == nil {
			t.Errorf("run(%q) accepted it", args)
		}
	}
	if err := run([]string{"-o", filepath.Join(dir, "a.zip"), "-dir", "x", filepath.Join(dir, "missing")}); err == nil {
		t.Error("a missing input accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "a.rar")); !os.IsNotExist(err) {
		t.Error("a failed archive was left behind")
	}
}
