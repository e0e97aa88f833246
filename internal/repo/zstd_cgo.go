//go:build cgo

package repo

/*
#include <stddef.h>

// libzstd's stable API (zstd.h). The library itself is the copy that
// github.com/DataDog/zstd bundles and compiles; this package links against
// it (the blank import below) rather than wrapping it, so that it can set
// advanced parameters, which that package's API does not expose.
typedef struct ZSTD_CCtx_s ZSTD_CCtx;
typedef struct ZSTD_DCtx_s ZSTD_DCtx;
ZSTD_CCtx* ZSTD_createCCtx(void);
size_t ZSTD_freeCCtx(ZSTD_CCtx* cctx);
size_t ZSTD_CCtx_setParameter(ZSTD_CCtx* cctx, int param, int value);
size_t ZSTD_compress2(ZSTD_CCtx* cctx, void* dst, size_t dstCapacity, const void* src, size_t srcSize);
ZSTD_DCtx* ZSTD_createDCtx(void);
size_t ZSTD_freeDCtx(ZSTD_DCtx* dctx);
size_t ZSTD_decompressDCtx(ZSTD_DCtx* dctx, void* dst, size_t dstCapacity, const void* src, size_t srcSize);
size_t ZSTD_compressBound(size_t srcSize);
unsigned ZSTD_isError(size_t code);
const char* ZSTD_getErrorName(size_t code);
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	_ "github.com/DataDog/zstd" // links the bundled libzstd
)

// zstdEngine names the encoder that compresses blobs and unpacked files in
// this build: the reference C library (libzstd 1.5.7, bundled by
// github.com/DataDog/zstd and compiled with cgo). In auto mode it stores the
// benchmark corpus ~1 % smaller than the pure-Go encoder's default level
// (which is what restic uses) and encodes it about twice as fast; see
// docs/performance.md. Builds without cgo use the pure-Go encoder
// (zstd_nocgo.go). Every frame is plain zstd: any decoder reads it. Blobs
// of a known size are decoded with libzstd when the caller's buffer has the
// room (decompressSized: the verification before upload, check, restore),
// everything else with the pure-Go decoder restic uses.
const zstdEngine = "libzstd (cgo, github.com/DataDog/zstd)"

// libzstd parameter numbers (zstd.h: ZSTD_cParameter).
const (
	zstdCompressionLevel = 100
	zstdChainLog         = 103
	zstdBlockSplitter    = 1017 // ZSTD_c_blockSplitterLevel (experimental): 1 = off
)

// cParams are the libzstd settings of each compression mode: each is at
// least as small as the pure-Go level of the same name on text, source code
// and mixed disk images, and faster, except fastest (level 1 is 2× faster
// than the pure-Go fastest and ~1.4 points larger).
//
// Auto is level 3 with a 2^14-entry table for short matches (the level's
// own is 2^16, sized for windows of 2 MiB; blobs average 1 MiB) and without
// the pre-compression block splitter (which fingerprints every block to
// look for a better place to end it): on the benchmark corpus 15 % less
// compression time for 0.8 % larger output, which keeps the repository
// under restic's. See docs/performance.md.
func cParams(c Compression) [][2]int {
	switch c {
	case CompressionFastest:
		return [][2]int{{zstdCompressionLevel, 1}}
	case CompressionBetter:
		return [][2]int{{zstdCompressionLevel, 6}}
	case CompressionMax:
		return [][2]int{{zstdCompressionLevel, 11}}
	}
	return [][2]int{{zstdCompressionLevel, 3}, {zstdChainLog, 14}, {zstdBlockSplitter, 1}}
}

// ctxPool is a free list of libzstd contexts of one kind. A context's
// tables (up to a few MiB, outside the Go heap) are set up on first use,
// so contexts are kept rather than made per blob. As many exist as
// compressions ever ran at once (the blob workers, GOMAXPROCS, plus tree
// and unpacked-file writers); at most maxIdleCtxs are kept idle, the rest
// are freed when they are put back.
type ctxPool[T any] struct {
	mu   sync.Mutex // guards free
	free []T        // idle contexts, each used by one goroutine at a time
}

const maxIdleCtxs = 64

func (p *ctxPool[T]) get(create func() T) T {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		c := p.free[n-1]
		var zero T
		p.free[n-1] = zero
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return c
	}
	p.mu.Unlock()
	return create()
}

// put returns c to the list, or reports false if the list is full (the
// caller frees c).
func (p *ctxPool[T]) put(c T) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) < maxIdleCtxs {
		p.free = append(p.free, c)
		return true
	}
	return false
}

var (
	cctxs [CompressionMax + 1]ctxPool[*C.ZSTD_CCtx] // compression contexts, by mode
	dctxs ctxPool[*C.ZSTD_DCtx]
)

func zstdErr(code C.size_t) error {
	return errors.New(C.GoString(C.ZSTD_getErrorName(code)))
}

// newCCtx makes a compression context with mode c's parameters, which stay
// set for every frame it compresses.
func newCCtx(c Compression) *C.ZSTD_CCtx {
	ctx := C.ZSTD_createCCtx()
	if ctx == nil {
		panic("zstd: cannot allocate a compression context")
	}
	for _, p := range cParams(c) {
		if r := C.ZSTD_CCtx_setParameter(ctx, C.int(p[0]), C.int(p[1])); C.ZSTD_isError(r) != 0 {
			panic(fmt.Sprintf("zstd: parameter %d = %d: %v", p[0], p[1], zstdErr(r)))
		}
	}
	return ctx
}

// compressBound is the largest frame appendCompressed can produce for n
// bytes: callers that size their buffer to it never cause an allocation.
func compressBound(n int) int { return int(C.ZSTD_compressBound(C.size_t(n))) }

// appendCompressed appends one zstd frame holding src to dst.
func appendCompressed(dst, src []byte, c Compression) ([]byte, error) {
	if c == CompressionOff || c > CompressionMax {
		c = CompressionAuto
	}
	need := compressBound(len(src))
	if cap(dst)-len(dst) < need {
		nd := make([]byte, len(dst), len(dst)+need)
		copy(nd, dst)
		dst = nd
	}
	out := dst[len(dst):cap(dst)]
	var in unsafe.Pointer
	if len(src) > 0 {
		in = unsafe.Pointer(&src[0])
	}
	pool := &cctxs[c]
	ctx := pool.get(func() *C.ZSTD_CCtx { return newCCtx(c) })
	// The library writes into the spare capacity of dst (at least the
	// bound); neither buffer holds Go pointers.
	r := C.ZSTD_compress2(ctx, unsafe.Pointer(&out[0]), C.size_t(len(out)), in, C.size_t(len(src)))
	if !pool.put(ctx) {
		C.ZSTD_freeCCtx(ctx)
	}
	if C.ZSTD_isError(r) != 0 {
		return nil, fmt.Errorf("compress: %w", zstdErr(r))
	}
	return dst[:len(dst)+int(r)], nil
}

// decompressSized decodes zstd data that must hold exactly want (> 0)
// bytes into dst[:want] with libzstd, in one pass (the frame is decoded
// straight into dst, without a window buffer).
// Concatenated frames are decoded as one stream, as the pure-Go decoder
// does. Data that is not zstd, damaged, or of another size is an error.
func decompressSized(dst, src []byte, want int) ([]byte, error) {
	if want <= 0 || cap(dst) < want || len(src) == 0 {
		return nil, fmt.Errorf("decompress: no room for %d bytes", want)
	}
	ctx := dctxs.get(func() *C.ZSTD_DCtx {
		d := C.ZSTD_createDCtx()
		if d == nil {
			panic("zstd: cannot allocate a decompression context")
		}
		return d
	})
	out := dst[:want]
	r := C.ZSTD_decompressDCtx(ctx, unsafe.Pointer(&out[0]), C.size_t(want), unsafe.Pointer(&src[0]), C.size_t(len(src)))
	if !dctxs.put(ctx) {
		C.ZSTD_freeDCtx(ctx)
	}
	if C.ZSTD_isError(r) != 0 {
		return nil, fmt.Errorf("decompress: %w", zstdErr(r))
	}
	if int(r) != want {
		return nil, fmt.Errorf("decompress: got %d bytes, expected %d", int(r), want)
	}
	return out, nil
}
