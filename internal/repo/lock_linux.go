//go:build linux

package repo

import (
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// bootTime is CLOCK_BOOTTIME: unlike Go's monotonic clock it keeps
// counting while the machine is suspended, so a laptop that slept through
// its lock's staleness bound notices (H02).
func bootTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Duration(time.Now().UnixNano())
	}
	return time.Duration(ts.Nano())
}

var (
	bootIDOnce sync.Once
	bootID     string
)

// machineBootID identifies this boot of this machine; with the PID
// namespace it tells whether a PID in a lock can be checked here (the
// initial PID namespace has the same inode on every host).
func machineBootID() string {
	bootIDOnce.Do(func() {
		b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
		if err == nil {
			bootID = strings.TrimSpace(string(b))
		}
	})
	return bootID
}

// pidNamespace identifies this process's PID namespace (Linux), so a lock
// from the same host but another container is never judged by PID (H04).
func pidNamespace() uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/pid", &st); err != nil {
		return 0
	}
	return st.Ino
}
