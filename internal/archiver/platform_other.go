//go:build !linux

package archiver

import (
	"errors"

	"golang.org/x/sys/unix"
)

// oNoAtime is 0: only Linux can open a file without updating its access
// time.
const oNoAtime = 0

// seekHoleUnsupported reports an lseek(SEEK_HOLE) error that means the file
// system cannot report holes (the file is then read in full). ENOTSUP is
// distinct from EOPNOTSUPP on macOS, and a file system without the
// FIOSEEKHOLE ioctl may answer ENOTTY.
func seekHoleUnsupported(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) ||
		errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.ENOTTY)
}
