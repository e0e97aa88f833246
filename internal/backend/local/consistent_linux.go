//go:build linux

package local

import (
	"golang.org/x/sys/unix"
)

// localFileSystems are the file system magic numbers (statfs f_type) whose
// directory listings are read-after-write consistent for every process
// that can see them: disk and memory file systems of one kernel. Network
// and FUSE file systems (NFS, CIFS, sshfs, …) cache directory contents on
// each client, so they are left out. The magic numbers are 32 bits wide
// (f_type is a signed int32 on 32-bit systems, so btrfs's and f2fs's look
// negative there until converted).
var localFileSystems = map[uint32]bool{
	unix.EXT4_SUPER_MAGIC:      true, // also ext2/ext3
	unix.XFS_SUPER_MAGIC:       true,
	unix.BTRFS_SUPER_MAGIC:     true,
	unix.TMPFS_MAGIC:           true,
	unix.F2FS_SUPER_MAGIC:      true,
	unix.OVERLAYFS_SUPER_MAGIC: true,
	0x2fc12fc1:                 true, // ZFS
}

// localFS reports whether dir is on one of localFileSystems.
func localFS(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return localFileSystems[uint32(st.Type)] // f_type is an int32 on 32-bit systems
}
