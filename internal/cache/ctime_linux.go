package cache

import "syscall"

// ctimeOf is the change time in nanoseconds (the fields are 32 bits wide on
// 32-bit systems, so they are widened before the product).
func ctimeOf(st *syscall.Stat_t) int64 { return int64(st.Ctim.Sec)*1e9 + int64(st.Ctim.Nsec) }
