//go:build darwin || freebsd

package cache

import "syscall"

// ctimeOf is the change time in nanoseconds.
func ctimeOf(st *syscall.Stat_t) int64 {
	return int64(st.Ctimespec.Sec)*1e9 + int64(st.Ctimespec.Nsec)
}
