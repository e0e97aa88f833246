//go:build linux

package pack

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// setDirect sets or clears O_DIRECT on f. When setting, it first asks the
// file system (statx STATX_DIOALIGN, Linux 6.1+) whether it supports direct
// I/O with directAlign; file systems that do not report it are tried, and
// a refusal of the first write falls back to buffered writing.
func setDirect(f *os.File, on bool) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("set O_DIRECT: %w", err)
	}
	var opErr error
	err = rc.Control(func(fd uintptr) {
		if on {
			var st unix.Statx_t
			if unix.Statx(int(fd), "", unix.AT_EMPTY_PATH, unix.STATX_TYPE|unix.STATX_DIOALIGN, &st) == nil {
				if st.Mask&unix.STATX_TYPE != 0 && st.Mode&unix.S_IFMT != unix.S_IFREG {
					opErr = errors.New("set O_DIRECT: not a regular file")
					return
				}
				if st.Mask&unix.STATX_DIOALIGN != 0 {
					if st.Dio_mem_align == 0 || st.Dio_offset_align == 0 {
						opErr = errors.New("set O_DIRECT: file system has no direct I/O")
						return
					}
					if st.Dio_mem_align > directAlign || st.Dio_offset_align > directAlign {
						opErr = fmt.Errorf("set O_DIRECT: alignment %d/%d exceeds %d", st.Dio_mem_align, st.Dio_offset_align, directAlign)
						return
					}
				}
			}
		}
		flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil {
			opErr = fmt.Errorf("get file flags: %w", err)
			return
		}
		nf := flags &^ unix.O_DIRECT
		if on {
			nf |= unix.O_DIRECT
		}
		if nf == flags {
			return
		}
		if _, err := unix.FcntlInt(fd, unix.F_SETFL, nf); err != nil {
			opErr = fmt.Errorf("set file flags: %w", err)
		}
	})
	if err != nil {
		return fmt.Errorf("set O_DIRECT: %w", err)
	}
	return opErr
}

// directRefused reports whether a direct write failed because the file
// system or device refuses direct I/O with this alignment (EINVAL), as
// opposed to a real write error.
func directRefused(err error) bool { return errors.Is(err, unix.EINVAL) }
