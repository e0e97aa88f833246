// Package pack encodes and decodes restic pack files:
// EncryptedBlob... || EncryptedHeader || HeaderLength(uint32 LE).
package pack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
)

const (
	entrySizeUncompressed = 1 + 4 + core.IDSize     // 37
	entrySizeCompressed   = 1 + 4 + 4 + core.IDSize // 41
	// HeaderOverhead is the fixed size a header adds besides its entries:
	// IV and MAC of the encrypted header plus the 4-byte length.
	HeaderOverhead = crypto.Extension + 4 // 36
	// MaxHeaderSize bounds the encrypted header plus length field.
	MaxHeaderSize = 16*1024*1024 + 4
	// MaxHeaderEntries is the most entries a header may hold.
	MaxHeaderEntries = (MaxHeaderSize - HeaderOverhead) / entrySizeCompressed
	// MinPackSize is the smallest valid pack (one empty blob, uncompressed).
	MinPackSize = crypto.Extension + entrySizeUncompressed + HeaderOverhead
	// eagerEntries is how many header entries the first read of a pack's
	// tail tries to fetch, so small packs need a single read.
	eagerEntries = 15
)

// ErrInvalidPack is wrapped by every error about a malformed pack.
var ErrInvalidPack = errors.New("invalid pack")

// Blob is one entry of a pack header, positioned in the pack.
type Blob struct {
	core.BlobHandle
	Offset             uint32 // byte offset of the encrypted blob in the pack
	Length             uint32 // encrypted length (IV and MAC included)
	UncompressedLength uint32 // plaintext length if compressed, else 0
}

// IsCompressed reports whether the blob is stored zstd-compressed.
func (b Blob) IsCompressed() bool { return b.UncompressedLength != 0 }

// DataLength returns the plaintext length of the blob.
func (b Blob) DataLength() uint32 {
	if b.UncompressedLength != 0 {
		return b.UncompressedLength
	}
	return b.Length - crypto.Extension
}

// EntrySize returns the header entry size for b.
func (b Blob) EntrySize() int {
	if b.IsCompressed() {
		return entrySizeCompressed
	}
	return entrySizeUncompressed
}

func typeByte(b Blob) (byte, error) {
	switch {
	case b.Type == core.DataBlob && !b.IsCompressed():
		return 0, nil
	case b.Type == core.TreeBlob && !b.IsCompressed():
		return 1, nil
	case b.Type == core.DataBlob:
		return 2, nil
	case b.Type == core.TreeBlob:
		return 3, nil
	}
	return 0, fmt.Errorf("blob %v: invalid type", b.BlobHandle)
}

// HeaderPlaintextSize returns the size of the plaintext header for blobs.
func HeaderPlaintextSize(blobs []Blob) int {
	n := 0
	for _, b := range blobs {
		n += b.EntrySize()
	}
	return n
}

// PackSize returns the exact size a pack holding blobs has: the blobs, the
// encrypted header and the length field.
func PackSize(blobs []Blob) int64 {
	n := int64(HeaderOverhead)
	for _, b := range blobs {
		n += int64(b.Length) + int64(b.EntrySize())
	}
	return n
}

// EncodeHeader appends the plaintext header of blobs to dst.
func EncodeHeader(dst []byte, blobs []Blob) ([]byte, error) {
	for _, b := range blobs {
		t, err := typeByte(b)
		if err != nil {
			return nil, err
		}
		dst = append(dst, t)
		dst = binary.LittleEndian.AppendUint32(dst, b.Length)
		if b.IsCompressed() {
			dst = binary.LittleEndian.AppendUint32(dst, b.UncompressedLength)
		}
		dst = append(dst, b.ID[:]...)
	}
	return dst, nil
}

// DecodeHeader parses a plaintext header. Offsets are the running sums of
// the lengths, starting at 0.
func DecodeHeader(buf []byte) ([]Blob, error) {
	var blobs []Blob
	var off uint64
	for len(buf) > 0 {
		var b Blob
		n := entrySizeUncompressed
		switch buf[0] {
		case 0:
			b.Type = core.DataBlob
		case 1:
			b.Type = core.TreeBlob
		case 2:
			b.Type = core.DataBlob
			n = entrySizeCompressed
		case 3:
			b.Type = core.TreeBlob
			n = entrySizeCompressed
		default:
			return nil, fmt.Errorf("%w: header entry %d has unknown type %d", ErrInvalidPack, len(blobs), buf[0])
		}
		if len(buf) < n {
			return nil, fmt.Errorf("%w: header entry %d truncated (%d of %d bytes)", ErrInvalidPack, len(blobs), len(buf), n)
		}
		b.Length = binary.LittleEndian.Uint32(buf[1:5])
		p := 5
		if n == entrySizeCompressed {
			b.UncompressedLength = binary.LittleEndian.Uint32(buf[5:9])
			p = 9
			if b.UncompressedLength == 0 {
				return nil, fmt.Errorf("%w: header entry %d is compressed with length 0", ErrInvalidPack, len(blobs))
			}
		}
		copy(b.ID[:], buf[p:p+core.IDSize])
		if b.Length < crypto.Extension {
			return nil, fmt.Errorf("%w: header entry %d has length %d, below the encryption overhead", ErrInvalidPack, len(blobs), b.Length)
		}
		if off > 1<<32-1 {
			return nil, fmt.Errorf("%w: blob offsets exceed 4 GiB", ErrInvalidPack)
		}
		b.Offset = uint32(off)
		off += uint64(b.Length)
		blobs = append(blobs, b)
		buf = buf[n:]
		if len(blobs) > MaxHeaderEntries {
			return nil, fmt.Errorf("%w: more than %d header entries", ErrInvalidPack, MaxHeaderEntries)
		}
	}
	return blobs, nil
}

// ReadHeader reads and decrypts the header of the pack in rd (of total size
// size) and returns its entries. It checks that the blobs and header exactly
// fill the pack.
func ReadHeader(rd io.ReaderAt, size int64, key *crypto.Key) ([]Blob, error) {
	if size < int64(MinPackSize) {
		if size == HeaderOverhead {
			// an empty pack is invalid too, but say so clearly
			return nil, fmt.Errorf("%w: pack of %d bytes holds no blobs", ErrInvalidPack, size)
		}
		return nil, fmt.Errorf("%w: size %d is below the minimum %d", ErrInvalidPack, size, MinPackSize)
	}
	eager := int64(eagerEntries*entrySizeCompressed + HeaderOverhead)
	if eager > size {
		eager = size
	}
	tail := make([]byte, eager)
	if _, err := rd.ReadAt(tail, size-eager); err != nil {
		return nil, fmt.Errorf("read pack tail: %w", err)
	}
	hlen := int64(binary.LittleEndian.Uint32(tail[len(tail)-4:]))
	switch {
	case hlen == 0:
		return nil, fmt.Errorf("%w: header length is zero", ErrInvalidPack)
	case hlen < crypto.Extension:
		return nil, fmt.Errorf("%w: header length %d is below the encryption overhead", ErrInvalidPack, hlen)
	case hlen > size-4:
		return nil, fmt.Errorf("%w: header length %d exceeds pack size %d", ErrInvalidPack, hlen, size)
	case hlen > MaxHeaderSize-4:
		return nil, fmt.Errorf("%w: header length %d exceeds the maximum %d", ErrInvalidPack, hlen, MaxHeaderSize-4)
	}
	var enc []byte
	if hlen+4 <= int64(len(tail)) {
		enc = tail[int64(len(tail))-4-hlen : len(tail)-4]
	} else {
		enc = make([]byte, hlen)
		if _, err := rd.ReadAt(enc, size-4-hlen); err != nil {
			return nil, fmt.Errorf("read pack header: %w", err)
		}
	}
	plain, err := key.Open(nil, enc)
	if err != nil {
		return nil, fmt.Errorf("%w: decrypt header: %w", ErrInvalidPack, err)
	}
	blobs, err := DecodeHeader(plain)
	if err != nil {
		return nil, err
	}
	if len(blobs) == 0 {
		return nil, fmt.Errorf("%w: header lists no blobs", ErrInvalidPack)
	}
	var dataEnd int64
	for _, b := range blobs {
		dataEnd += int64(b.Length)
	}
	if dataEnd+hlen+4 != size {
		return nil, fmt.Errorf("%w: blobs (%d bytes) and header (%d bytes) do not fill the pack (%d bytes)", ErrInvalidPack, dataEnd, hlen+4, size)
	}
	return blobs, nil
}

// Writer assembles a pack in memory. It is not safe for concurrent use.
type Writer struct {
	key       *crypto.Key
	buf       []byte
	blobs     []Blob
	headerLen int // plaintext header size of blobs, kept up to date by Add
}

// NewWriter returns a writer that appends to buf[:0] (which may be nil; a
// pooled buffer avoids reallocations).
func NewWriter(key *crypto.Key, buf []byte) *Writer {
	return &Writer{key: key, buf: buf[:0]}
}

// Add appends an already encrypted blob. uncompressedLength is 0 for an
// uncompressed blob.
func (w *Writer) Add(h core.BlobHandle, sealed []byte, uncompressedLength uint32) error {
	if len(sealed) < crypto.Extension {
		return fmt.Errorf("add blob %v: %d bytes is below the encryption overhead", h, len(sealed))
	}
	if len(w.blobs) >= MaxHeaderEntries {
		return fmt.Errorf("add blob %v: pack header full", h)
	}
	if int64(len(w.buf))+int64(len(sealed)) > 1<<32-1 {
		return fmt.Errorf("add blob %v: pack would exceed 4 GiB", h)
	}
	b := Blob{BlobHandle: h, Offset: uint32(len(w.buf)), Length: uint32(len(sealed)), UncompressedLength: uncompressedLength}
	w.blobs = append(w.blobs, b)
	w.headerLen += b.EntrySize()
	w.buf = append(w.buf, sealed...)
	return nil
}

// Size returns the current size of the blob data plus the header the pack
// would have if finalised now.
func (w *Writer) Size() int {
	return len(w.buf) + w.headerLen + HeaderOverhead
}

// Count returns the number of blobs added.
func (w *Writer) Count() int { return len(w.blobs) }

// Blobs returns the entries added so far (do not modify).
func (w *Writer) Blobs() []Blob { return w.blobs }

// HeaderFull reports whether another (compressed) entry would overflow the
// maximum header size.
func (w *Writer) HeaderFull() bool {
	return w.headerLen+entrySizeCompressed+HeaderOverhead > MaxHeaderSize
}

// Finalize appends the encrypted header and its length and returns the
// complete pack bytes and the pack ID. The header is decoded again to verify it
// before the pack is returned.
func (w *Writer) Finalize() ([]byte, core.ID, error) {
	if len(w.blobs) == 0 {
		return nil, core.ID{}, errors.New("finalize pack: no blobs")
	}
	plain, err := EncodeHeader(make([]byte, 0, HeaderPlaintextSize(w.blobs)), w.blobs)
	if err != nil {
		return nil, core.ID{}, fmt.Errorf("finalize pack: %w", err)
	}
	start := len(w.buf)
	w.buf = w.key.Seal(w.buf, plain)
	hlen := len(w.buf) - start
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(hlen))
	// verify the header round-trips before the pack leaves memory
	check, err := w.key.Open(nil, w.buf[start:start+hlen])
	if err != nil {
		return nil, core.ID{}, fmt.Errorf("finalize pack: verify header: %w", err)
	}
	dec, err := DecodeHeader(check)
	if err != nil || len(dec) != len(w.blobs) {
		return nil, core.ID{}, fmt.Errorf("finalize pack: header does not decode back: %v", err)
	}
	for i := range dec {
		if dec[i] != w.blobs[i] {
			return nil, core.ID{}, fmt.Errorf("finalize pack: header entry %d does not decode back", i)
		}
	}
	return w.buf, core.Hash(w.buf), nil
}
