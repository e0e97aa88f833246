package cli

import (
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"time"
)

// startCPUProfile writes a CPU profile to path until the returned function
// is called (CAIRN_CPU_PROFILE=path, for performance work).
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// startHeapSnapshot writes a heap profile (live objects as of the last
// garbage collection) to path after delay (CAIRN_HEAP_PROFILE=path and
// CAIRN_HEAP_PROFILE_AFTER=duration, for memory work).
func startHeapSnapshot(path string, delay time.Duration) {
	time.AfterFunc(delay, func() {
		f, err := os.Create(path)
		if err != nil {
			return
		}
		defer f.Close()
		_ = pprof.Lookup("heap").WriteTo(f, 0)
	})
}

// startTrace writes an execution trace to path until the returned function
// is called (CAIRN_TRACE=path, for performance work: `go tool trace` shows
// when each core is idle, and `go tool trace -pprof=sync|syscall|sched`
// where goroutines wait).
func startTrace(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("trace: %w", err)
	}
	return func() {
		trace.Stop()
		f.Close()
	}, nil
}
