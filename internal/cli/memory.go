package cli

import (
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

const (
	// arenaBase and arenaPerCPU size a backup's buffer arena: chunk
	// buffers (three per CPU in flight), their compressed frames and
	// verification copies (one each per CPU), and the pack writers'
	// direct I/O buffers (a few, whatever the CPU count). On 2 CPUs a full
	// backup of the benchmark corpus used at most 36 of the 48 MiB, with
	// no request turned away.
	arenaBase   = 16 << 20
	arenaPerCPU = 16 << 20
	arenaMax    = 1 << 30
	// backupHeadroom is the room a backup's memory limit leaves for
	// everything but the index and the arena: with the pipelines' buffers
	// in the arena, little else is allocated (a full backup of the
	// benchmark corpus: 10 collections with 24 MiB, 59 with 16).
	backupHeadroom = 24 << 20
)

// backupMemory prepares memory for a backup once the index is loaded. The
// pipelines' large buffers come from an arena (bufpool.SetArena) that is
// live for the whole backup, so the collector neither scans nor frees them
// and their pages fault in once: without it a full backup of the benchmark
// corpus collected garbage 100-180 times, each time dropping pooled
// buffers that the runtime returned to the kernel and faulted in again
// (130,000-240,000 page faults; 40,000 with it, most of them the key
// derivation's), and took 6.21 s instead of 5.57 s (mean of 3 alternating
// runs) at a lower peak RSS (100-105 MiB instead of 107-109). The soft
// limit is what is live now twice, the arena, and backupHeadroom. The
// returned function drops the arena again (if no buffer of it is out).
// GOMEMLIMIT, if the user set it, replaces the limit; the arena stays.
func backupMemory() (release func()) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	size := min(arenaBase+arenaPerCPU*runtime.GOMAXPROCS(0), arenaMax)
	if !bufpool.SetArena(size) {
		// another backup in this process has buffers out of the
		// current arena: share it
		size = bufpool.Arena().Size
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(ms.HeapAlloc)*2 + int64(size) + backupHeadroom)
	}
	return func() { bufpool.SetArena(0) }
}
