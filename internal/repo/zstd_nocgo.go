//go:build !cgo

package repo

// zstdEngine names the encoder of this build: without cgo, the pure-Go
// encoder of github.com/klauspost/compress/zstd (the one restic uses).
const zstdEngine = pureGoEngine

// compressBound is the largest frame appendCompressed can produce for n
// bytes (the format's bound: the input plus a small per-block overhead).
func compressBound(n int) int { return n + n>>8 + 64 }

// appendCompressed appends one zstd frame holding src to dst.
func appendCompressed(dst, src []byte, c Compression) ([]byte, error) {
	return zstdEncoder(c).EncodeAll(src, dst), nil
}

// decompressSized is decompress for a dst with room for want bytes: without
// cgo, the pure-Go decoder.
func decompressSized(dst, src []byte, want int) ([]byte, error) {
	return decompressGo(dst, src, want)
}
