//go:build linux

package testutil

import "golang.org/x/sys/unix"

// oNoAtime opens a file without updating its access time (owner or
// CAP_FOWNER only; openNoAtime retries without it).
const oNoAtime = unix.O_NOATIME

// errNoXattr is the error for an extended attribute that does not exist.
var errNoXattr error = unix.ENODATA

// mknod creates a device node with the device number dev.
func mknod(path string, mode uint32, dev uint64) error { return unix.Mknod(path, mode, int(dev)) }
