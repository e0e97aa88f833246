package pack

import (
	"os"
	"sync"
	"unsafe"

	"github.com/cairn-backup/cairn/internal/bufpool"
)

const (
	// directAlign is the alignment direct I/O is done with: of the buffer
	// address, the file offset and the length. 4096 covers devices with
	// 512- and 4096-byte sectors.
	directAlign = 4096
	// directBufSize is how much a direct-mode writer gathers per write.
	directBufSize = 4 << 20
)

// directBuf is the page-aligned buffer of a writer in direct mode.
type directBuf struct {
	buf   []byte // aligned to directAlign, length a multiple of it
	n     int    // bytes of buf holding pack data not yet written
	arena bool   // buf is from bufpool's arena: goes back there
}

// directPool recycles buffers of directBufSize, so a backup writing
// hundreds of packs does not grow the heap by a buffer per pack (fresh
// heap pages cost the same host faults as fresh page-cache pages).
var directPool = sync.Pool{New: func() any { return &directBuf{buf: alignedBuf(directBufSize)} }}

func getDirectBuf(size int) *directBuf {
	if size%directAlign == 0 {
		// within a backup's memory arena (aligned to 64 KiB): recycled
		// without the collector
		if b := bufpool.GetArena(size); b != nil {
			return &directBuf{buf: b, arena: true}
		}
	}
	if size == directBufSize {
		return directPool.Get().(*directBuf)
	}
	return &directBuf{buf: alignedBuf(size)}
}

func putDirectBuf(d *directBuf) {
	d.n = 0
	if d.arena {
		bufpool.Put(d.buf)
		d.buf, d.arena = nil, false
		return
	}
	if len(d.buf) == directBufSize {
		directPool.Put(d)
	}
}

// alignedBuf returns size bytes (rounded up to directAlign) starting at an
// address that is a multiple of directAlign. The Go heap does not move
// objects, so the alignment holds for the slice's lifetime.
func alignedBuf(size int) []byte {
	size = (size + directAlign - 1) &^ (directAlign - 1)
	raw := make([]byte, size+directAlign)
	skip := int(-uintptr(unsafe.Pointer(unsafe.SliceData(raw))) & (directAlign - 1))
	return raw[skip : skip+size : skip+size]
}

// directWrite writes a direct-mode buffer; a variable so that tests can
// inject refusals and errors.
var directWrite = func(f *os.File, p []byte) (int, error) { return f.Write(p) }
