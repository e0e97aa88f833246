//go:build linux || darwin || freebsd

package fsnode

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/tree"
)

// ErrNotRestorable is returned (wrapped) by CreateSpecial for node types that
// cannot be recreated from a tree: sockets (a socket is only meaningful
// while a process listens on it; restic skips them too) and irregular files.
// Callers should report it as a warning and not call RestoreMetadata.
var ErrNotRestorable = errors.New("node type cannot be restored")

// CreateSpecial creates the special file n at path: a symlink, a fifo, or a
// block or character device (mknod, which needs CAP_MKNOD). The file is
// created with restrictive permissions; RestoreMetadata sets the final ones.
// An existing file at path is an error (EEXIST). Regular files and
// directories are not special and are rejected, as are sockets and irregular
// files (with ErrNotRestorable).
func CreateSpecial(path string, n *tree.Node) error {
	var err error
	switch n.Type {
	case tree.NodeSymlink:
		err = os.Symlink(n.LinkTarget, path)
	case tree.NodeFifo:
		err = unix.Mkfifo(path, 0o600)
	case tree.NodeDev:
		err = mknod(path, unix.S_IFBLK|0o600, n.Device)
	case tree.NodeCharDev:
		err = mknod(path, unix.S_IFCHR|0o600, n.Device)
	case tree.NodeSocket, tree.NodeIrregular:
		err = fmt.Errorf("%s: %w", n.Type, ErrNotRestorable)
	default:
		err = fmt.Errorf("node type %q is not a special file", n.Type)
	}
	if err != nil {
		return fmt.Errorf("create %s %s: %w", n.Type, path, err)
	}
	return nil
}

// RestoreOptions controls RestoreMetadata.
type RestoreOptions struct {
	// IgnoreOwnership skips lchown, leaving files owned by the restoring
	// user.
	IgnoreOwnership bool
}

// RestoreMetadata applies n's metadata to the existing file at path, in this
// order: owner and group (lchown, numeric IDs; permission errors are ignored
// when not running as root, like cp -a), permission bits including setuid,
// setgid and sticky (after lchown, which may clear them; skipped for
// symlinks, whose mode cannot be changed on Linux), extended attributes, and
// last the access and modification times (without following symlinks), so
// nothing afterwards disturbs them. For directories it must be called after
// the directory's entries have been restored.
//
// Every step is attempted; the errors are joined and wrapped with the path.
// Paths are not opened with O_NOFOLLOW: the caller must make sure no
// untrusted process can swap path for a symlink during a restore.
func RestoreMetadata(path string, n *tree.Node, opts RestoreOptions) error {
	var errs []error
	if !opts.IgnoreOwnership {
		if err := unix.Lchown(path, int(n.UID), int(n.GID)); err != nil {
			if os.Geteuid() == 0 || !errors.Is(err, unix.EPERM) {
				errs = append(errs, fmt.Errorf("lchown %d:%d: %w", n.UID, n.GID, err))
			}
		}
	}
	if n.Type != tree.NodeSymlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, path, unixMode(n.Mode), 0); err != nil {
			errs = append(errs, fmt.Errorf("chmod %04o: %w", unixMode(n.Mode), err))
		}
	}
	for _, a := range n.ExtendedAttributes {
		if err := setxattr(path, a.Name, a.Value); err != nil {
			errs = append(errs, fmt.Errorf("setxattr %s: %w", a.Name, err))
		}
	}
	if err := setTimes(path, n.AccessTime, n.ModTime); err != nil {
		errs = append(errs, fmt.Errorf("set times: %w", err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("restore metadata of %s: %w", path, errors.Join(errs...))
	}
	return nil
}

func setxattr(path, name string, value []byte) error {
	for {
		err := unix.Lsetxattr(path, name, value, 0)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// unixMode converts the permission and special bits of an os.FileMode to
// the st_mode layout chmod expects.
func unixMode(m os.FileMode) uint32 {
	mode := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		mode |= unix.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		mode |= unix.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		mode |= unix.S_ISVTX
	}
	return mode
}

// setTimes sets atime and mtime of path without following a symlink. The
// conversion avoids time.UnixNano, which overflows outside 1678..2262.
func setTimes(path string, atime, mtime time.Time) error {
	a, err := unix.TimeToTimespec(atime)
	if err != nil {
		return fmt.Errorf("atime %v: %w", atime, err)
	}
	m, err := unix.TimeToTimespec(mtime)
	if err != nil {
		return fmt.Errorf("mtime %v: %w", mtime, err)
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{a, m}, unix.AT_SYMLINK_NOFOLLOW)
}
