//go:build !unix

package cache

import "os"

// fileIdent identifies one version of a file as far as this platform
// allows (size and modification time).
type fileIdent struct {
	size  int64
	mtime int64 // ns
}

const openFlags = 0

func identOf(fi os.FileInfo) fileIdent {
	return fileIdent{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}
