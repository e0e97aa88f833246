package cli

import (
	"os"
	"runtime"
	"sync"
)

// procs counts the backups and restores running in this process (tests run
// several at once), so that the first raises GOMAXPROCS and the last puts
// it back. (Setting it explicitly ends the runtime's own updates of
// GOMAXPROCS when a container's CPU limit changes, for the rest of the
// process: a command's process ends with the command.)
var procs struct {
	mu    sync.Mutex // guards users and cpus
	users int
	cpus  int // GOMAXPROCS before the first user raised it
}

// spareProc gives the Go scheduler one processor (P) more than there are
// CPUs for the length of a backup or restore, and returns the CPU count the
// backup pipeline sizes its workers by; restore puts the old setting back.
//
// A goroutine blocked in a system call keeps its P until the runtime's
// monitor thread takes it back, after 20 µs to 10 ms depending on how idle
// the monitor has found the process. A backup blocks often: a pack's
// direct write waits for the device, an fsync for the disk, and libzstd's
// long cgo calls hand their P back and forth the same way. On a 2-core
// machine each such wait could leave one core idle: scheduler traces of a
// full backup of the benchmark corpus showed 1.35 s of idle CPU in 8 s, most
// of it right after a thread returned from a call and found no P. With a
// spare P (and the workers still sized by the CPU count, so CPU-bound
// goroutines do not outnumber the cores for long) it was 0.84-0.92 s.
// Restores, whose workers wait in direct writes, gain the same way, and so
// does check --read-data since its blobs are decoded by libzstd (its
// workers sized by the CPU count too: a third worker made it slower):
// without the spare P, 2.28-2.38 s instead of 2.04-2.16 s with the pure-Go
// decoder, with it 2.00-2.06 s. GOMAXPROCS set by the user is left as it is.
func spareProc() (cpus int, restore func()) {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0), func() {}
	}
	procs.mu.Lock()
	defer procs.mu.Unlock()
	if procs.users == 0 {
		procs.cpus = runtime.GOMAXPROCS(0)
		runtime.GOMAXPROCS(procs.cpus + 1)
	}
	procs.users++
	var once sync.Once
	return procs.cpus, func() {
		once.Do(func() {
			procs.mu.Lock()
			defer procs.mu.Unlock()
			if procs.users--; procs.users == 0 {
				runtime.GOMAXPROCS(procs.cpus)
			}
		})
	}
}
