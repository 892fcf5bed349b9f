// Command archive packs release files into a .tar.gz or .zip whose bytes
// depend only on the files' contents and the given time: entries in name
// order under one directory, every entry dated the same, owner root,
// modes 0755 for executables and 0644 for the rest, no gzip name or time.
// release/build runs it; two builds of one commit give identical archives.
//
//	go run ./release/archive -o dist/gatekeeper_v1_linux_amd64.tar.gz \
//	    -dir gatekeeper_v1_linux_amd64 -time 1796610716 FILE...
package main

import (
	"archive/tar"
	"archive/zip"
	"compress/flate"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "archive:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("archive", flag.ContinueOnError)
	out := fs.String("o", "", "archive to write: NAME.tar.gz or NAME.zip")
	dir := fs.String("dir", "", "directory the files go under in the archive")
	unix := fs.Int64("time", 0, "modification time of every entry, Unix seconds (SOURCE_DATE_EPOCH)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *dir == "" || fs.NArg() == 0 {
		return errors.New("usage: archive -o OUT.tar.gz|OUT.zip -dir NAME [-time UNIX] FILE...")
	}
	files := slices.Clone(fs.Args())
	slices.SortFunc(files, func(a, b string) int { return strings.Compare(filepath.Base(a), filepath.Base(b)) })
	mtime := time.Unix(*unix, 0).UTC()
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	switch {
	case strings.HasSuffix(*out, ".tar.gz"):
		err = writeTarGz(f, *dir, mtime, files)
	case strings.HasSuffix(*out, ".zip"):
		err = writeZip(f, *dir, mtime, files)
	default:
		err = fmt.Errorf("%s: want .tar.gz or .zip", *out)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(*out)
		return fmt.Errorf("%s: %w", *out, err)
	}
	return nil
}

// entry is one file to pack: its name in the archive, mode and content.
type entry struct {
	name string
	mode int64
	data []byte
}

func readEntries(dir string, files []string) ([]entry, error) {
	var es []entry
	for _, p := range files {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file", p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		mode := int64(0o644)
		if fi.Mode()&0o111 != 0 || strings.HasSuffix(p, ".exe") {
			mode = 0o755
		}
		es = append(es, entry{name: dir + "/" + filepath.Base(p), mode: mode, data: b})
	}
	return es, nil
}

func writeTarGz(w io.Writer, dir string, mtime time.Time, files []string) error {
	es, err := readEntries(dir, files)
	if err != nil {
		return err
	}
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression) // no name, time zero
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	hdr := func(name string, mode int64, size int64, typ byte) *tar.Header {
		return &tar.Header{Typeflag: typ, Name: name, Mode: mode, Size: size, ModTime: mtime,
			Uname: "root", Gname: "root", Format: tar.FormatUSTAR}
	}
	if err := tw.WriteHeader(hdr(dir+"/", 0o755, 0, tar.TypeDir)); err != nil {
		return err
	}
	for _, e := range es {
		if err := tw.WriteHeader(hdr(e.name, e.mode, int64(len(e.data)), tar.TypeReg)); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func writeZip(w io.Writer, dir string, mtime time.Time, files []string) error {
	es, err := readEntries(dir, files)
	if err != nil {
		return err
	}
	zw := zip.NewWriter(w)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(w, flate.BestCompression)
	})
	for _, e := range es {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: mtime}
		h.SetMode(os.FileMode(e.mode))
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		if _, err := fw.Write(e.data); err != nil {
			return err
		}
	}
	return zw.Close()
}
