//go:build linux

package restorer

import "golang.org/x/sys/unix"

// File system magic numbers (statfs f_type) where direct I/O is used.
const (
	ext4Magic  = 0xEF53
	xfsMagic   = 0x58465342
	btrfsMagic = 0x9123683E
)

// directFS reports whether the file system holding dir is one where
// restores write large files with O_DIRECT. A variable for tests.
var directFS = func(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	switch uint32(st.Type) {
	case ext4Magic, xfsMagic, btrfsMagic:
		return true
	}
	return false
}

// openDirect opens path for O_DIRECT writes (see pwriteDirect).
var openDirect = func(path string) (int, error) {
	return openFD(path, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_DIRECT, 0)
}
