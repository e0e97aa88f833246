package cli

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/cairn-backup/cairn/internal/bufpool"
)

// tuneMemory sets a soft memory limit once the long-lived data (the index)
// is loaded: what is live now, twice, plus room for the pipelines' buffers.
// Without it the heap may grow to twice its peak working set before a
// collection runs. GOMEMLIMIT, if the user set it, wins.
func tuneMemory() {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	debug.SetMemoryLimit(int64(ms.HeapAlloc)*2 + 64<<20)
}

// bulkRetain is the memory a backup that stores much new data gets on top
// of tuneMemory's limit, and keeps as recycled chunk buffers.
const bulkRetain = 16 << 20

// bulkMemory is called once a backup has stored 64 MiB of new data
// (archiver.Options.OnBulkData). Under tuneMemory's limit such a backup collects
// garbage often, and every collection empties the buffer pool's sync.Pool:
// a first backup of the benchmark corpus re-allocated 1.2 GB of chunk
// buffers, which the runtime kept returning to the kernel and faulting in
// again (90,000 instead of 200,000-320,000 page faults with this, and
// 0.3-1 s less on 2 cores). So it keeps bulkRetain bytes of buffers across
// collections and raises the limit by as much. Incremental backups, which
// add little, keep the tighter limit. With GOMEMLIMIT set, only the
// buffers are kept.
func bulkMemory() {
	bufpool.SetRetain(bulkRetain)
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	if cur := debug.SetMemoryLimit(-1); cur < math.MaxInt64-bulkRetain {
		debug.SetMemoryLimit(cur + bulkRetain)
	}
}
