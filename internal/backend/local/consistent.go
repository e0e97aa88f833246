package local

import (
	"golang.org/x/sys/unix"
)

// localFileSystems are the file system magic numbers (statfs f_type) whose
// directory listings are read-after-write consistent for every process
// that can see them: disk and memory file systems of one kernel. Network
// and FUSE file systems (NFS, CIFS, sshfs, …) cache directory contents on
// each client, so they are left out.
var localFileSystems = map[int64]bool{
	unix.EXT4_SUPER_MAGIC:      true, // also ext2/ext3
	unix.XFS_SUPER_MAGIC:       true,
	unix.BTRFS_SUPER_MAGIC:     true,
	unix.TMPFS_MAGIC:           true,
	unix.F2FS_SUPER_MAGIC:      true,
	unix.OVERLAYFS_SUPER_MAGIC: true,
	0x2fc12fc1:                 true, // ZFS
}

// ListConsistent reports whether the repository's file system lists a file
// as soon as it was renamed into place (see backend.ListConsistent). It is
// decided per call, so a repository directory that is replaced by a mount
// point is judged by what is mounted now.
func (b *Backend) ListConsistent() bool {
	var st unix.Statfs_t
	if err := unix.Statfs(b.dir, &st); err != nil {
		return false
	}
	return localFileSystems[int64(st.Type)]
}
