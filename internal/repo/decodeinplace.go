package repo

import (
	"fmt"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

// maxPresize bounds how much DecodeBlobInPlace allocates ahead on the
// index's word alone; larger plaintexts grow as the decoder produces them.
const maxPresize = 64 << 20

// DecodeBlobInPlace is DecodeBlob for a caller that reads a stored blob only
// to consume it once: it decrypts sealed in place (sealed is clobbered) and,
// for a compressed blob, decompresses into dst[:0], growing dst only if its
// capacity is short. It returns the verified plaintext, which aliases sealed
// (uncompressed blobs) or dst's memory (compressed ones), and dst, possibly
// grown, for the caller to reuse.
func (r *Repository) DecodeBlobInPlace(b pack.Blob, sealed, dst []byte) (plain, newDst []byte, err error) {
	return r.decodeBlobInPlace(b, sealed, dst, true)
}

func (r *Repository) decodeBlobInPlace(b pack.Blob, sealed, dst []byte, checkID bool) (plain, newDst []byte, err error) {
	if len(sealed) != int(b.Length) {
		return nil, dst, fmt.Errorf("blob %v: got %d bytes, want %d: %w", b.BlobHandle, len(sealed), b.Length, ErrInvalidData)
	}
	open, err := r.key.OpenInPlace(sealed)
	if err != nil {
		return nil, dst, fmt.Errorf("blob %v: %w: %w", b.BlobHandle, ErrInvalidData, err)
	}
	plain = open
	if b.IsCompressed() {
		// zstd decodes fastest with a little slack past the frame's end
		if want := int(b.UncompressedLength) + 64; cap(dst) < want && want <= maxPresize {
			dst = make([]byte, 0, want)
		}
		plain, err = decompress(dst, open, int(b.UncompressedLength))
		if err != nil {
			return nil, dst, fmt.Errorf("blob %v: %w: %w", b.BlobHandle, ErrInvalidData, err)
		}
		if cap(plain) <= maxPresize {
			dst = plain[:0]
		}
	}
	if checkID && core.Hash(plain) != b.ID {
		return nil, dst, fmt.Errorf("blob %v: content does not match its ID: %w", b.BlobHandle, ErrInvalidData)
	}
	return plain, dst, nil
}

// DecodeBlobUnchecked is DecodeBlobInPlace without the comparison with the
// blob's ID: the caller must compare SHA-256(plain) with b.ID before it
// trusts or reports anything about the content (check does, hashing two
// streams at a time). sealed is clobbered; plain aliases sealed
// (uncompressed blobs) or dst's memory (compressed ones).
func (r *Repository) DecodeBlobUnchecked(b pack.Blob, sealed, dst []byte) (plain, newDst []byte, err error) {
	return r.decodeBlobInPlace(b, sealed, dst, false)
}

// OpenBlobPieces verifies an uncompressed blob's MAC and decrypts it piece
// by piece into buf without modifying sealed (crypto.Key.OpenPieces). The
// caller must compare the SHA-256 of the pieces with b.ID.
func (r *Repository) OpenBlobPieces(b pack.Blob, sealed, buf []byte, fn func(off int, plain []byte)) error {
	if b.IsCompressed() {
		return fmt.Errorf("blob %v: OpenBlobPieces of a compressed blob", b.BlobHandle)
	}
	if len(sealed) != int(b.Length) {
		return fmt.Errorf("blob %v: got %d bytes, want %d: %w", b.BlobHandle, len(sealed), b.Length, ErrInvalidData)
	}
	if err := r.key.OpenPieces(sealed, buf, fn); err != nil {
		return fmt.Errorf("blob %v: %w: %w", b.BlobHandle, ErrInvalidData, err)
	}
	return nil
}
