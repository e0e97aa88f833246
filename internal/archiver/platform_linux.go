//go:build linux

package archiver

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// oNoAtime opens files without updating their access time (allowed to the
// owner and CAP_FOWNER; saveFileContent retries without it on EPERM).
const oNoAtime = syscall.O_NOATIME

// seekHoleUnsupported reports an lseek(SEEK_HOLE) error that means the file
// system cannot report holes (the file is then read in full).
func seekHoleUnsupported(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)
}
