//go:build cgo

package repo

import (
	"fmt"
	"sync"

	ddzstd "github.com/DataDog/zstd"
)

// zstdEngine names the encoder that compresses blobs and unpacked files in
// this build: the reference C library (libzstd, bundled by
// github.com/DataDog/zstd and compiled with cgo). At level 3 it stores the
// benchmark corpus ~1–2 % smaller than the pure-Go encoder's default level
// (which is what restic uses) and encodes it 1.5–1.9× faster; see
// docs/performance.md. Builds without cgo use the pure-Go encoder
// (zstd_nocgo.go). Every frame is plain zstd: any decoder reads it. cairn
// decodes repository data with the pure-Go decoder, as restic does; only the
// verification before upload decodes its own fresh frames with libzstd
// (decompressCheck).
const zstdEngine = "libzstd (cgo, github.com/DataDog/zstd)"

// cLevel maps cairn's compression modes to libzstd levels: each is at least
// as small as the pure-Go level of the same name on text, source code and
// mixed disk images, and faster, except fastest (level 1 is 2× faster than
// the pure-Go fastest and ~1.4 points larger).
func cLevel(c Compression) int {
	switch c {
	case CompressionFastest:
		return 1
	case CompressionBetter:
		return 6
	case CompressionMax:
		return 11
	}
	return 3
}

// cctxs is a free list of libzstd contexts. A context's tables (up to a few
// MiB, outside the Go heap) are set up on first use, so contexts are kept
// rather than made per blob. As many exist as compressions ever ran at once
// (the blob workers, GOMAXPROCS, plus tree and unpacked-file writers); at
// most maxIdleCtxs are kept idle, and a context dropped from the list is
// freed by the library's finalizer.
var cctxs struct {
	mu   sync.Mutex   // guards free
	free []ddzstd.Ctx // idle contexts, each used by one goroutine at a time
}

const maxIdleCtxs = 64

func getCtx() ddzstd.Ctx {
	cctxs.mu.Lock()
	defer cctxs.mu.Unlock()
	if n := len(cctxs.free); n > 0 {
		c := cctxs.free[n-1]
		cctxs.free[n-1] = nil
		cctxs.free = cctxs.free[:n-1]
		return c
	}
	return ddzstd.NewCtx()
}

func putCtx(c ddzstd.Ctx) {
	cctxs.mu.Lock()
	defer cctxs.mu.Unlock()
	if len(cctxs.free) < maxIdleCtxs {
		cctxs.free = append(cctxs.free, c)
	}
}

// compressBound is the largest frame appendCompressed can produce for n
// bytes: callers that size their buffer to it never cause an allocation.
func compressBound(n int) int { return ddzstd.CompressBound(n) }

// appendCompressed appends one zstd frame holding src to dst.
func appendCompressed(dst, src []byte, c Compression) ([]byte, error) {
	need := compressBound(len(src))
	if cap(dst)-len(dst) < need {
		nd := make([]byte, len(dst), len(dst)+need)
		copy(nd, dst)
		dst = nd
	}
	ctx := getCtx()
	// The library writes into the spare capacity of dst (it is at least
	// the bound) and returns that memory.
	out, err := ctx.CompressLevel(dst[len(dst):len(dst)], src, cLevel(c))
	putCtx(ctx)
	if err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	return dst[:len(dst)+len(out)], nil
}

// decompressCheck decodes a frame cairn has just made, which must hold
// exactly want bytes, into dst (which must have room for want bytes). It is
// the pre-upload verification's decoder: the C decoder is faster than the
// pure-Go one on libzstd's frames, and these frames are our own.
func decompressCheck(dst, src []byte, want int) ([]byte, error) {
	if want == 0 {
		return decompress(dst, src, want)
	}
	ctx := getCtx()
	n, err := ctx.DecompressInto(dst[:want], src)
	putCtx(ctx)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	if n != want {
		return nil, fmt.Errorf("decompress: got %d bytes, expected %d", n, want)
	}
	return dst[:n], nil
}
