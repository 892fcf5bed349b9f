// Package backup is gatekeeper's backup file: one file holding everything a
// store keeps, written online by `gatekeeper store backup` or by serve on a
// schedule, and read back by `gatekeeper store restore`.
//
// # Format
//
// A file is a fixed header, then the payload, then a SHA-256:
//
//	"GKBACKUP" version(1) flags(1) [salt(32) if encrypted]
//	payload = gzip(record, record, …, manifest record)
//	guard   = SHA-256(header ‖ payload)
//
// Unencrypted, the file is header ‖ payload ‖ guard. With a key file it is
// header ‖ seal(payload ‖ guard): AES-256-GCM in 64 KiB chunks under a key
// derived from the key file and the salt with HKDF-SHA256, each chunk's
// nonce its index with a last-chunk flag (the STREAM construction), the
// header as additional data. A truncated, altered or wrongly keyed file
// fails as a whole in Decode, before any record is returned: a restore
// never starts from a file it has not read to the end.
//
// A record is a tag byte and a list of byte strings, each length-prefixed
// (uvarint). Records are generic: the backends carry each of their keys
// (bbolt: every bucket and key; Redis: every gatekeeper key, by Redis type)
// without knowing what it means, so a new kind of data a later version
// stores (second factors, devices, notification outboxes) is backed up and
// restored without a change to this format. The last record is the
// manifest (JSON): format version, backend, generation, time, counts per
// kind, feed positions.
//
// A backup holds what the store holds and nothing else: password hashes,
// session token hashes, second-factor secrets still encrypted as the store
// keeps them. It never holds a store URL, an operator token or a key.
//
// It does not translate between backends: a Redis backup restores into
// Redis, a bbolt backup into a bbolt file.
package backup

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// FormatVersion is the version of the file layout this package writes and
// reads.
const FormatVersion = 1

const (
	magic      = "GKBACKUP"
	flagSealed = 1
	saltLen    = 32
	chunkSize  = 64 << 10
	tagLen     = 16 // GCM's
)

// Record tags. Backends choose the tags of their data records; these are
// the package's own.
const (
	tagManifest = 'M'
	// TagError ends a record stream sent by a running process that failed
	// half-way (see Serve); it never appears in a file.
	tagError = 'X'
)

// ErrCorrupt means a file is not a whole, unaltered backup (or the key is
// wrong): nothing in it is used.
var ErrCorrupt = errors.New("not a whole, unaltered gatekeeper backup")

// Record is one generic record: a tag the backend chose and its fields.
type Record struct {
	Tag    byte
	Fields [][]byte
}

// Manifest describes a backup. It is the last record of the file.
type Manifest struct {
	Format     int       `json:"format"`
	Backend    string    `json:"backend"` // "bolt" or "redis"
	Generation string    `json:"generation"`
	Created    time.Time `json:"created"`
	Version    string    `json:"version,omitempty"` // gatekeeper's, for the reader
	// Counts is the number of items per kind of data (accounts, rules,
	// users, audit entries, sessions, …), as the backend names them.
	Counts map[string]int64 `json:"counts"`
	// Feed is the change feed's position per shard ("shard" → sequence
	// number), where the backend has one.
	Feed map[string]uint64 `json:"feed,omitempty"`
	// Records is how many data records precede the manifest.
	Records int64 `json:"records"`
}

// Backup is a decoded, verified file.
type Backup struct {
	Manifest Manifest
	Records  []Record
	Sealed   bool // it was encrypted
}

// Writer writes a backup file. Add data records with Write, then Close
// with the manifest.
type Writer struct {
	encoder
	dst    io.Writer
	sealer *sealer // nil: plain
	hash   hash.Hash
	gz     *gzip.Writer
	buf    *bufio.Writer
	closed bool
}

// encoder writes records to w and counts the data records.
type encoder struct {
	w       io.Writer
	scratch []byte
	records int64
}

// Write adds a data record.
func (e *encoder) Write(r Record) error {
	if r.Tag == tagManifest || r.Tag == tagError {
		return fmt.Errorf("record tag %q is reserved", r.Tag)
	}
	e.records++
	return e.put(r)
}

func (e *encoder) put(r Record) error {
	e.scratch = appendRecord(e.scratch[:0], r)
	_, err := e.w.Write(e.scratch)
	return err
}

// NewWriter starts a backup file on w. With a key (32 bytes, from
// ReadKeyFile) the file is encrypted; with nil it is not.
func NewWriter(w io.Writer, key []byte) (*Writer, error) {
	hdr := []byte(magic)
	hdr = append(hdr, FormatVersion, 0)
	bw := &Writer{hash: sha256.New()}
	if key != nil {
		if len(key) != KeySize {
			return nil, fmt.Errorf("backup key: %d bytes, want %d", len(key), KeySize)
		}
		hdr[len(magic)+1] = flagSealed
		salt := make([]byte, saltLen)
		rand.Read(salt)
		hdr = append(hdr, salt...)
		aead, err := fileAEAD(key, salt)
		if err != nil {
			return nil, err
		}
		bw.sealer = &sealer{aead: aead, ad: hdr, dst: w}
		bw.dst = bw.sealer
	} else {
		bw.dst = w
	}
	if _, err := w.Write(hdr); err != nil {
		return nil, fmt.Errorf("write backup header: %w", err)
	}
	bw.hash.Write(hdr)
	bw.gz, _ = gzip.NewWriterLevel(io.MultiWriter(bw.dst, bw.hash), gzip.BestSpeed)
	bw.buf = bufio.NewWriterSize(bw.gz, 64<<10)
	bw.encoder.w = bw.buf
	return bw, nil
}

// Records is how many data records were written so far.
func (w *Writer) Records() int64 { return w.records }

// Close writes the manifest (its Format and Records are filled in), the
// guard, and the last encrypted chunk. It does not close the underlying
// writer.
func (w *Writer) Close(m Manifest) error {
	if w.closed {
		return errors.New("backup writer already closed")
	}
	w.closed = true
	m.Format, m.Records = FormatVersion, w.records
	mj, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	if err := w.put(Record{Tag: tagManifest, Fields: [][]byte{mj}}); err != nil {
		return err
	}
	if err := w.buf.Flush(); err != nil {
		return err
	}
	if err := w.gz.Close(); err != nil {
		return err
	}
	if _, err := w.dst.Write(w.hash.Sum(nil)); err != nil {
		return err
	}
	if w.sealer != nil {
		return w.sealer.close()
	}
	return nil
}

// Decode verifies and decodes a whole backup file. key is needed when the
// file is encrypted and refused when it is not (a plain file where a sealed
// one was expected may have been replaced). Any damage is ErrCorrupt with
// what was found; no partial result is returned.
func Decode(data []byte, key []byte) (*Backup, error) {
	if len(data) < len(magic)+2 || string(data[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: no gatekeeper backup header", ErrCorrupt)
	}
	if v := data[len(magic)]; v != FormatVersion {
		return nil, fmt.Errorf("backup format version %d: this gatekeeper reads version %d", v, FormatVersion)
	}
	flags := data[len(magic)+1]
	if flags&^flagSealed != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, flags)
	}
	sealed := flags&flagSealed != 0
	hdrLen := len(magic) + 2
	var body []byte
	switch {
	case sealed && key == nil:
		return nil, errors.New("the backup is encrypted: give its key file (-key)")
	case !sealed && key != nil:
		return nil, errors.New("the backup is not encrypted but a key file was given: refusing a file that may have been swapped")
	case sealed:
		if len(key) != KeySize {
			return nil, fmt.Errorf("backup key: %d bytes, want %d", len(key), KeySize)
		}
		hdrLen += saltLen
		if len(data) < hdrLen {
			return nil, fmt.Errorf("%w: truncated header", ErrCorrupt)
		}
		aead, err := fileAEAD(key, data[len(magic)+2:hdrLen])
		if err != nil {
			return nil, err
		}
		body, err = open(aead, data[:hdrLen], data[hdrLen:])
		if err != nil {
			return nil, err
		}
	default:
		body = data[hdrLen:]
	}
	if len(body) < sha256.Size {
		return nil, fmt.Errorf("%w: truncated", ErrCorrupt)
	}
	payload, guard := body[:len(body)-sha256.Size], body[len(body)-sha256.Size:]
	h := sha256.New()
	h.Write(data[:hdrLen])
	h.Write(payload)
	if !bytes.Equal(h.Sum(nil), guard) {
		return nil, fmt.Errorf("%w: SHA-256 does not match (truncated or altered)", ErrCorrupt)
	}
	b, err := decodePayload(payload)
	if err != nil {
		return nil, err
	}
	b.Sealed = sealed
	return b, nil
}

// maxExpansion bounds how much larger than the file its decompressed
// payload may be, so that a crafted file cannot exhaust memory.
const maxExpansion = 1024

// decodePayload gunzips and parses the records after the guard matched.
func decodePayload(payload []byte) (*Backup, error) {
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	zr.Multistream(false)
	limit := int64(len(payload))*maxExpansion + 1<<20
	raw, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: decompress: %v", ErrCorrupt, err)
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("%w: decompresses to more than %d bytes", ErrCorrupt, limit)
	}
	return parseRecords(raw)
}

// parseRecords reads data records and the closing manifest.
func parseRecords(raw []byte) (*Backup, error) {
	b := &Backup{}
	br := bytes.NewReader(raw)
	for br.Len() > 0 {
		// Each field takes at least a byte: what is left bounds both.
		left := uint64(br.Len())
		r, err := readRecord(br, left, left)
		if err != nil {
			return nil, fmt.Errorf("%w: record %d: %v", ErrCorrupt, len(b.Records)+1, err)
		}
		switch r.Tag {
		case tagManifest:
			if br.Len() > 0 {
				return nil, fmt.Errorf("%w: data after the manifest", ErrCorrupt)
			}
			if err := json.Unmarshal(r.Fields[0], &b.Manifest); err != nil {
				return nil, fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
			}
			m := b.Manifest
			switch {
			case m.Format != FormatVersion:
				return nil, fmt.Errorf("%w: manifest format %d", ErrCorrupt, m.Format)
			case m.Records != int64(len(b.Records)):
				return nil, fmt.Errorf("%w: manifest counts %d records, the file has %d", ErrCorrupt, m.Records, len(b.Records))
			case m.Backend == "":
				return nil, fmt.Errorf("%w: manifest names no backend", ErrCorrupt)
			}
			return b, nil
		case tagError:
			return nil, fmt.Errorf("%w: the backup was cut short by an error", ErrCorrupt)
		}
		b.Records = append(b.Records, r)
	}
	return nil, fmt.Errorf("%w: no manifest (truncated)", ErrCorrupt)
}

// appendRecord encodes r: tag, uvarint field count, each field as uvarint
// length and bytes.
func appendRecord(dst []byte, r Record) []byte {
	dst = append(dst, r.Tag)
	dst = binary.AppendUvarint(dst, uint64(len(r.Fields)))
	for _, f := range r.Fields {
		dst = binary.AppendUvarint(dst, uint64(len(f)))
		dst = append(dst, f...)
	}
	return dst
}

// recordSource is what records are read from: a file's payload in
// memory, or a running process's socket.
type recordSource interface {
	io.ByteReader
	io.Reader
}

// readRecord reads one record. maxFields and maxField bound what it
// allocates before reading; io.EOF only when nothing at all was left.
func readRecord(r recordSource, maxFields, maxField uint64) (Record, error) {
	tag, err := r.ReadByte()
	if err != nil {
		return Record{}, err
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > maxFields {
		return Record{}, fmt.Errorf("bad field count (%d, %v)", n, err)
	}
	rec := Record{Tag: tag, Fields: make([][]byte, n)}
	for i := range rec.Fields {
		l, err := binary.ReadUvarint(r)
		if err != nil || l > maxField {
			return Record{}, fmt.Errorf("bad field length (%d, %v)", l, err)
		}
		rec.Fields[i] = make([]byte, l)
		if _, err := io.ReadFull(r, rec.Fields[i]); err != nil {
			return Record{}, fmt.Errorf("record cut short: %w", err)
		}
	}
	if (tag == tagError || tag == tagManifest) && n != 1 {
		return Record{}, errors.New("a closing record with other than one field")
	}
	return rec, nil
}

// fileAEAD is AES-256-GCM under HKDF-SHA256(key, salt).
func fileAEAD(key, salt []byte) (cipher.AEAD, error) {
	fk, err := hkdf.Key(sha256.New, key, salt, "gatekeeper backup v1", 32)
	if err != nil {
		return nil, fmt.Errorf("derive backup key: %w", err)
	}
	block, err := aes.NewCipher(fk)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// chunkNonce is the STREAM nonce: the chunk index, and 1 in the last byte
// for the last chunk, so that dropping or reordering chunks, or cutting the
// file at a chunk boundary, fails.
func chunkNonce(i uint64, last bool) []byte {
	n := make([]byte, 12)
	binary.BigEndian.PutUint64(n[3:11], i)
	if last {
		n[11] = 1
	}
	return n
}

// sealer encrypts what is written to it in chunks.
type sealer struct {
	aead cipher.AEAD
	ad   []byte
	dst  io.Writer
	buf  []byte
	i    uint64
}

func (s *sealer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		take := min(chunkSize-len(s.buf), len(p))
		s.buf = append(s.buf, p[:take]...)
		p = p[take:]
		// A full chunk is sealed only once more data follows, so that the
		// last chunk, whatever its size, carries the last flag.
		if len(s.buf) == chunkSize && len(p) > 0 {
			if err := s.flush(false); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (s *sealer) flush(last bool) error {
	out := s.aead.Seal(nil, chunkNonce(s.i, last), s.buf, s.ad)
	s.i++
	s.buf = s.buf[:0]
	_, err := s.dst.Write(out)
	return err
}

func (s *sealer) close() error { return s.flush(true) }

// open decrypts a sealed body whole.
func open(aead cipher.AEAD, ad, sealed []byte) ([]byte, error) {
	var out []byte
	for i := uint64(0); ; i++ {
		n := min(len(sealed), chunkSize+tagLen)
		last := n == len(sealed)
		plain, err := aead.Open(nil, chunkNonce(i, last), sealed[:n], ad)
		if err != nil {
			if i == 0 {
				return nil, fmt.Errorf("%w: cannot decrypt (wrong key file, or the file was altered or truncated)", ErrCorrupt)
			}
			return nil, fmt.Errorf("%w: chunk %d does not decrypt (altered or truncated)", ErrCorrupt, i)
		}
		out = append(out, plain...)
		sealed = sealed[n:]
		if last {
			return out, nil
		}
	}
}
