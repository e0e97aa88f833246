//go:build unix

package crypto

import (
	"syscall"
	"time"
)

// processCPUTime returns the user+system CPU time consumed so far by all
// threads of this process, or false if it cannot be read.
func processCPUTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
