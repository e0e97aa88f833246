//go:build darwin

package fsnode

import (
	"errors"

	"golang.org/x/sys/unix"
)

// xattrTolerated reports errors that mean "no (readable) attributes here"
// rather than a failure: the filesystem does not support them (ENOTSUP and
// EOPNOTSUPP, distinct values on macOS), the attribute is not accessible
// (EPERM), or the attribute vanished (ENOATTR).
func xattrTolerated(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) ||
		errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOATTR)
}

// mknod creates a device node with the device number dev.
func mknod(path string, mode uint32, dev uint64) error {
	return unix.Mknod(path, mode, int(dev))
}
