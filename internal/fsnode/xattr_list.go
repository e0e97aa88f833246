//go:build linux || darwin

package fsnode

import (
	"errors"

	"golang.org/x/sys/unix"
)

// llistxattr returns the NUL-separated attribute names of path, reading
// into buf when it is large enough and into a buffer of the size the kernel
// reports otherwise (retrying if the list grows in between). The result may
// alias buf.
func llistxattr(path string, buf []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		n, err := unix.Llistxattr(path, buf)
		switch {
		case err == nil:
			return buf[:n], nil
		case errors.Is(err, unix.EINTR):
			continue
		case !errors.Is(err, unix.ERANGE) || attempt >= 8:
			return nil, err
		}
		size, err := unix.Llistxattr(path, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		buf = make([]byte, size+1)
	}
}

// lgetxattr returns the value of attribute name of path, like llistxattr.
func lgetxattr(path, name string, buf []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		n, err := unix.Lgetxattr(path, name, buf)
		switch {
		case err == nil:
			return buf[:n], nil
		case errors.Is(err, unix.EINTR):
			continue
		case !errors.Is(err, unix.ERANGE) || attempt >= 8:
			return nil, err
		}
		size, err := unix.Lgetxattr(path, name, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		buf = make([]byte, size+1)
	}
}
