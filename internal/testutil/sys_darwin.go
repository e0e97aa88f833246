//go:build darwin

package testutil

import "golang.org/x/sys/unix"

// oNoAtime is 0: macOS has no open flag that leaves the access time alone.
const oNoAtime = 0

// errNoXattr is the error for an extended attribute that does not exist.
var errNoXattr error = unix.ENOATTR

// mknod creates a device node with the device number dev.
func mknod(path string, mode uint32, dev uint64) error { return unix.Mknod(path, mode, int(dev)) }
