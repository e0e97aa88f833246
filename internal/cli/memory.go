package cli

import (
	"os"
	"runtime"
	"runtime/debug"

	"github.com/cairn-backup/cairn/internal/bufpool"
)

// tuneMemory sets a soft memory limit once the long-lived data (the index)
// is loaded: what is live now, twice, plus room for the pipelines' buffers
// and retain bytes of recycled buffers kept across collections (see
// bufpool.SetRetain). Without it the heap may grow to twice its peak
// working set before a collection runs. GOMEMLIMIT, if the user set it,
// wins (buffers are then retained all the same).
func tuneMemory(retain int) {
	bufpool.SetRetain(retain)
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	debug.SetMemoryLimit(int64(ms.HeapAlloc)*2 + 64<<20 + int64(retain))
}
