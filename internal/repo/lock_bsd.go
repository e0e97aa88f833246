//go:build darwin || freebsd

package repo

import (
	"time"

	"golang.org/x/sys/unix"
)

// bootTime is the clock that lets a process notice it was suspended while
// holding a lock (H02): CLOCK_MONOTONIC on both systems.
//   - macOS: CLOCK_MONOTONIC (mach_continuous_time) keeps counting while the
//     machine sleeps, like Linux's CLOCK_BOOTTIME; CLOCK_UPTIME_RAW would
//     stop.
//   - FreeBSD (up to 14 at least) has no clock that counts suspended time:
//     its C header's CLOCK_BOOTTIME is an alias of CLOCK_MONOTONIC (x/sys/unix
//     does not define it) and CLOCK_UPTIME stops too. A FreeBSD process
//     suspended past the staleness bound is therefore not detected by this
//     clock; every other lock check (the lock file's presence, refresh
//     failures) still applies.
func bootTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Duration(time.Now().UnixNano())
	}
	return time.Duration(ts.Nano())
}
