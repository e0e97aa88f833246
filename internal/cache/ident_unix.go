//go:build unix

package cache

import (
	"os"
	"syscall"
)

// fileIdent identifies one version of a file: a file replaced by rename,
// truncated, or written in place (which moves its change time) gets a
// different identity.
type fileIdent struct {
	dev, ino uint64
	size     int64
	mtime    int64 // ns
	ctime    int64 // ns
}

// openFlags make opening a FIFO put in the cache's place return at once
// instead of blocking (it is then rejected as not a regular file).
const openFlags = syscall.O_NONBLOCK

func identOf(fi os.FileInfo) fileIdent {
	id := fileIdent{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev = uint64(st.Dev)
		id.ino = uint64(st.Ino)
		id.ctime = ctimeOf(st)
	}
	return id
}
