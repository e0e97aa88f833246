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
	if core.Hash(plain) != b.ID {
		return nil, dst, fmt.Errorf("blob %v: content does not match its ID: %w", b.BlobHandle, ErrInvalidData)
	}
	return plain, dst, nil
}

// DecodeBlobUnchecked decrypts and decompresses a stored blob like
// DecodeBlobInPlace but leaves sealed intact and does not compare the
// plaintext with the blob's ID: the caller must compare SHA-256(plain) with
// b.ID before it trusts or reports anything about the content (check does,
// hashing two streams at a time). A compressed blob is decrypted into
// scratch and decompressed into dst, an uncompressed one decrypted into dst;
// plain never aliases sealed or scratch. The buffers (grown if short) are
// returned for reuse.
func (r *Repository) DecodeBlobUnchecked(b pack.Blob, sealed, scratch, dst []byte) (plain, newScratch, newDst []byte, err error) {
	if len(sealed) != int(b.Length) {
		return nil, scratch, dst, fmt.Errorf("blob %v: got %d bytes, want %d: %w", b.BlobHandle, len(sealed), b.Length, ErrInvalidData)
	}
	if !b.IsCompressed() {
		plain, err = r.key.Open(dst[:0], sealed)
		if err != nil {
			return nil, scratch, dst, fmt.Errorf("blob %v: %w: %w", b.BlobHandle, ErrInvalidData, err)
		}
		if cap(plain) <= maxPresize {
			dst = plain[:0]
		}
		return plain, scratch, dst, nil
	}
	open, err := r.key.Open(scratch[:0], sealed)
	if err != nil {
		return nil, scratch, dst, fmt.Errorf("blob %v: %w: %w", b.BlobHandle, ErrInvalidData, err)
	}
	if cap(open) <= maxPresize {
		scratch = open[:0]
	}
	if want := int(b.UncompressedLength) + 64; cap(dst) < want && want <= maxPresize {
		dst = make([]byte, 0, want)
	}
	plain, err = decompress(dst, open, int(b.UncompressedLength))
	if err != nil {
		return nil, scratch, dst, fmt.Errorf("blob %v: %w: %w", b.BlobHandle, ErrInvalidData, err)
	}
	if cap(plain) <= maxPresize {
		dst = plain[:0]
	}
	return plain, scratch, dst, nil
}
