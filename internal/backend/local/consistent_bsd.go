//go:build darwin || freebsd

package local

import (
	"golang.org/x/sys/unix"
)

// localFileSystems are the file system type names (statfs f_fstypename)
// whose directory listings are read-after-write consistent for every
// process that can see them: disk and memory file systems of one kernel.
// Network file systems (nfs, smbfs, afpfs, webdav) and FUSE (macfuse,
// osxfuse, fusefs, …) are not listed, nor is anything unknown.
var localFileSystems = map[string]bool{
	"apfs":  true, // macOS
	"hfs":   true, // macOS
	"ufs":   true, // FreeBSD
	"zfs":   true,
	"tmpfs": true,
}

// localFS reports whether dir is on one of localFileSystems.
func localFS(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return localFileSystems[unix.ByteSliceToString(st.Fstypename[:])]
}
