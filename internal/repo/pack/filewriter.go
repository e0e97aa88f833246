package pack

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"os"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
)

// FileWriter assembles a pack in a (temporary) file, hashing it as it is
// written, so packs being filled or uploaded cost no memory. It is not safe
// for concurrent use.
type FileWriter struct {
	key       *crypto.Key
	f         *os.File
	bw        *bufio.Writer
	h         hash.Hash
	blobs     []Blob
	headerLen int
	dataLen   int64
	err       error // sticky write error
}

// NewFileWriter writes a pack into f, which must be empty.
func NewFileWriter(key *crypto.Key, f *os.File) *FileWriter {
	return &FileWriter{key: key, f: f, bw: bufio.NewWriterSize(f, 1<<20), h: sha256.New()}
}

// File returns the underlying file.
func (w *FileWriter) File() *os.File { return w.f }

func (w *FileWriter) write(b []byte) error {
	if w.err != nil {
		return w.err
	}
	if _, err := w.bw.Write(b); err != nil {
		w.err = fmt.Errorf("write pack file %s: %w", w.f.Name(), err)
		return w.err
	}
	w.h.Write(b)
	return nil
}

// Add appends an encrypted blob.
func (w *FileWriter) Add(h core.BlobHandle, sealed []byte, uncompressedLength uint32) error {
	if len(sealed) < crypto.Extension {
		return fmt.Errorf("add blob %v: %d bytes is below the encryption overhead", h, len(sealed))
	}
	if len(w.blobs) >= MaxHeaderEntries {
		return fmt.Errorf("add blob %v: pack header full", h)
	}
	if w.dataLen+int64(len(sealed)) > 1<<32-1 {
		return fmt.Errorf("add blob %v: pack would exceed 4 GiB", h)
	}
	if err := w.write(sealed); err != nil {
		return err
	}
	b := Blob{BlobHandle: h, Offset: uint32(w.dataLen), Length: uint32(len(sealed)), UncompressedLength: uncompressedLength}
	w.blobs = append(w.blobs, b)
	w.headerLen += b.EntrySize()
	w.dataLen += int64(len(sealed))
	return nil
}

// Size returns the size the pack would have if finalised now.
func (w *FileWriter) Size() int { return int(w.dataLen) + w.headerLen + HeaderOverhead }

// Count returns the number of blobs.
func (w *FileWriter) Count() int { return len(w.blobs) }

// Blobs returns the entries added so far (do not modify).
func (w *FileWriter) Blobs() []Blob { return w.blobs }

// HeaderFull reports whether another entry would overflow the header.
func (w *FileWriter) HeaderFull() bool {
	return w.headerLen+entrySizeCompressed+HeaderOverhead > MaxHeaderSize
}

// Finalize writes the encrypted header and its length, flushes, and
// returns the pack ID and size. The file stays open.
func (w *FileWriter) Finalize() (core.ID, int64, error) {
	if len(w.blobs) == 0 {
		return core.ID{}, 0, errors.New("finalize pack: no blobs")
	}
	plain, err := EncodeHeader(make([]byte, 0, w.headerLen), w.blobs)
	if err != nil {
		return core.ID{}, 0, fmt.Errorf("finalize pack: %w", err)
	}
	enc := w.key.Seal(nil, plain)
	check, err := w.key.Open(nil, enc)
	if err != nil {
		return core.ID{}, 0, fmt.Errorf("finalize pack: verify header: %w", err)
	}
	dec, err := DecodeHeader(check)
	if err != nil || len(dec) != len(w.blobs) {
		return core.ID{}, 0, fmt.Errorf("finalize pack: header does not decode back: %v", err)
	}
	for i := range dec {
		if dec[i] != w.blobs[i] {
			return core.ID{}, 0, fmt.Errorf("finalize pack: header entry %d does not decode back", i)
		}
	}
	if err := w.write(enc); err != nil {
		return core.ID{}, 0, err
	}
	if err := w.write(binary.LittleEndian.AppendUint32(nil, uint32(len(enc)))); err != nil {
		return core.ID{}, 0, err
	}
	if err := w.bw.Flush(); err != nil {
		return core.ID{}, 0, fmt.Errorf("write pack file %s: %w", w.f.Name(), err)
	}
	var id core.ID
	w.h.Sum(id[:0])
	return id, w.dataLen + int64(len(enc)) + 4, nil
}
