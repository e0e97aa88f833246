//go:build !linux

package local

import "os"

// dropCached is a no-op where posix_fadvise is not used.
func dropCached(*os.File) {}
