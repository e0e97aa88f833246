// Package fsnode reads file metadata into tree.Node values exactly the way
// restic 0.14 does (so that cairn's trees hash like restic's), and writes it
// back when restoring: special files, ownership, permissions, extended
// attributes and timestamps. It also holds small restore helpers for sparse
// files and hard links. The metadata functions build on Linux, macOS and
// FreeBSD (and are tested on Linux); the sparse and hard link helpers are
// portable.
//
// What restic 0.14 stores, and so what NodeFromPath fills:
//   - name: fi.Name(); mode: fi.Mode() masked to permission, type, setuid,
//     setgid and sticky bits (Go's os.FileMode layout);
//   - mtime, ctime from stat, in the local time zone (time.Unix), so the
//     encoded offset depends on TZ exactly as restic's does; atime equals
//     mtime unless Options.WithAtime is set;
//   - uid, gid, and the user and group names (omitted when unknown);
//   - inode and device_id (st_dev) for every node type;
//   - size only for regular files;
//   - links (st_nlink) for files, symlinks and devices, never for
//     directories, fifos or sockets;
//   - linktarget for symlinks, device (st_rdev) for block/char devices;
//   - extended attributes in the order listxattr returns them (not sorted),
//     read without following symlinks.
//
// The archiver must add Content (data blob IDs, a non-nil empty list for
// empty files; NodeFromPath already sets it to an empty list for files) and
// Subtree for directories. Note that restic 0.14's archiver skips sockets
// entirely (they do not appear in its trees), and for an absolute backup
// path such as /a/b it stores nodes for "a" and "b" (each with the full
// metadata of that directory) above the backed-up directory; for a relative
// path only its own components appear.
package fsnode
