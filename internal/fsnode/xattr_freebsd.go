//go:build freebsd

package fsnode

import (
	"errors"

	"golang.org/x/sys/unix"
)

// xattrNamespaces are the FreeBSD extended attribute namespaces listed, with
// the prefix that names their attributes (as restic names them, and as
// unix.Lgetxattr and unix.Lsetxattr expect).
var xattrNamespaces = []struct {
	id     int
	prefix string
}{
	{unix.EXTATTR_NAMESPACE_USER, "user."},
	{unix.EXTATTR_NAMESPACE_SYSTEM, "system."},
}

// llistxattr returns the attribute names of path as a NUL-separated list,
// as Linux's llistxattr does. FreeBSD lists each namespace separately, as
// names preceded by a length byte and without the namespace, so they are
// converted here (appendExtattrNames). The system namespace is skipped
// when it is not readable (EPERM for non-root users), as on Linux. buf is
// not used.
func llistxattr(path string, _ []byte) ([]byte, error) {
	var out []byte
	for _, ns := range xattrNamespaces {
		raw, err := listxattrNS(path, ns.id)
		if err != nil {
			if errors.Is(err, unix.EPERM) && ns.id != unix.EXTATTR_NAMESPACE_USER {
				continue
			}
			return nil, err
		}
		if out, err = appendExtattrNames(out, raw, ns.prefix); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// listxattrNS returns the raw extattr_list_link(2) list of one namespace.
// FreeBSD truncates a list that does not fit instead of failing, so the
// buffer is one byte larger than the reported size and a full buffer means
// the list grew in between: it is read again.
func listxattrNS(path string, ns int) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		size, err := unix.LlistxattrNS(path, ns, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if size == 0 {
			return nil, nil
		}
		buf := make([]byte, size+1)
		n, err := unix.LlistxattrNS(path, ns, buf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return nil, err
		case n < len(buf):
			return buf[:n], nil
		case attempt >= 8:
			return nil, unix.ERANGE
		}
	}
}

// lgetxattr returns the value of attribute name ("user.x" or "system.x")
// of path, reading into buf when it is large enough. FreeBSD returns the
// bytes that fit instead of failing with ERANGE, so a value that fills buf
// is read again into a buffer larger than the size the kernel reports. The
// result may alias buf.
func lgetxattr(path, name string, buf []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		n, err := unix.Lgetxattr(path, name, buf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return nil, err
		case n < len(buf):
			return buf[:n], nil
		case attempt >= 8:
			return nil, unix.ERANGE
		}
		size, err := unix.Lgetxattr(path, name, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		buf = make([]byte, max(size, len(buf))+1)
	}
}
