//go:build darwin || freebsd

package fsnode

import (
	"syscall"
	"time"
)

// statTimes returns the access, modification and change times of st.
func statTimes(st *syscall.Stat_t) (atime, mtime, ctime time.Time) {
	return time.Unix(st.Atimespec.Unix()), time.Unix(st.Mtimespec.Unix()), time.Unix(st.Ctimespec.Unix())
}
