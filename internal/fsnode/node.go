//go:build linux || darwin || freebsd

package fsnode

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"sync"
	"syscall"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/tree"
)

// Options controls NodeFromPath. The zero value is restic 0.14's default.
type Options struct {
	// WithAtime stores the real access time. By default (like restic
	// without --with-atime) atime is set equal to mtime, which keeps trees
	// stable when files are merely read.
	WithAtime bool
	// IgnoreXattrErrors drops extended attributes that cannot be read
	// instead of failing. ENOTSUP, EPERM and attributes that vanish between
	// listing and reading are always tolerated.
	IgnoreXattrErrors bool
}

// modeMask selects the os.FileMode bits restic stores.
const modeMask = os.ModePerm | os.ModeType | os.ModeSetuid | os.ModeSetgid | os.ModeSticky

// TypeFromMode maps the type bits of an os.FileMode to a node type.
func TypeFromMode(m os.FileMode) tree.NodeType {
	switch m & os.ModeType {
	case 0:
		return tree.NodeFile
	case os.ModeDir:
		return tree.NodeDir
	case os.ModeSymlink:
		return tree.NodeSymlink
	case os.ModeDevice | os.ModeCharDevice:
		return tree.NodeCharDev
	case os.ModeDevice:
		return tree.NodeDev
	case os.ModeNamedPipe:
		return tree.NodeFifo
	case os.ModeSocket:
		return tree.NodeSocket
	}
	return tree.NodeIrregular
}

// NodeFromPath builds the node for path from fi, which must come from
// os.Lstat (or an equivalent fstat) of path, filling every field restic 0.14
// fills (see the package documentation). path is used for readlink and the
// extended attributes; the node's name is fi.Name().
//
// For regular files Content is set to an empty, non-nil list; the caller
// appends the data blob IDs. For directories the caller sets Subtree.
func NodeFromPath(path string, fi os.FileInfo, opts Options) (*tree.Node, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("node from %s: file info carries no stat data (%T)", path, fi.Sys())
	}
	typ := TypeFromMode(fi.Mode())
	// The uint64 conversions below are needed on GOOSes and GOARCHes where
	// Stat_t fields are narrower.
	atime, mtime, ctime := statTimes(st)
	n := &tree.Node{
		Name:       fi.Name(),
		Type:       typ,
		Mode:       fi.Mode() & modeMask,
		ModTime:    mtime,
		AccessTime: mtime,
		ChangeTime: ctime,
		UID:        st.Uid,
		GID:        st.Gid,
		User:       lookupUser(st.Uid),
		Group:      lookupGroup(st.Gid),
		Inode:      uint64(st.Ino),
		DeviceID:   uint64(st.Dev),
	}
	if opts.WithAtime {
		n.AccessTime = atime
	}
	switch typ {
	case tree.NodeFile:
		n.Size = uint64(st.Size)
		n.Links = uint64(st.Nlink)
		n.Content = core.IDs{}
	case tree.NodeSymlink:
		target, err := os.Readlink(path)
		if err != nil {
			return nil, fmt.Errorf("node from %s: %w", path, err)
		}
		n.LinkTarget = target
		n.Links = uint64(st.Nlink)
	case tree.NodeDev, tree.NodeCharDev:
		n.Device = uint64(st.Rdev)
		n.Links = uint64(st.Nlink)
	}
	xattrs, err := readXattrs(path, opts.IgnoreXattrErrors)
	if err != nil {
		return nil, fmt.Errorf("node from %s: %w", path, err)
	}
	n.ExtendedAttributes = xattrs
	return n, nil
}

// readXattrs returns path's extended attributes in listxattr order, without
// following symlinks. It returns nil when there are none.
func readXattrs(path string, ignoreErrors bool) ([]tree.ExtendedAttribute, error) {
	var stack [512]byte
	list, err := llistxattr(path, stack[:])
	if err != nil {
		if ignoreErrors || xattrTolerated(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listxattr: %w", err)
	}
	if len(list) == 0 {
		return nil, nil
	}
	var attrs []tree.ExtendedAttribute
	var valBuf [1024]byte
	for len(list) > 0 {
		i := 0
		for i < len(list) && list[i] != 0 {
			i++
		}
		name := string(list[:i])
		if i < len(list) {
			i++ // NUL terminator
		}
		list = list[i:]
		if name == "" {
			continue
		}
		val, err := lgetxattr(path, name, valBuf[:])
		if err != nil {
			if ignoreErrors || xattrTolerated(err) {
				continue
			}
			return nil, fmt.Errorf("getxattr %s: %w", name, err)
		}
		// Copy out of the scratch buffer; an empty value stays non-nil so
		// that it encodes as "" like restic's.
		attrs = append(attrs, tree.ExtendedAttribute{Name: name, Value: append(make([]byte, 0, len(val)), val...)})
	}
	return attrs, nil
}

// nameCache caches uid/gid → name lookups (including failures, as "").
var nameCache struct {
	mu     sync.RWMutex // guards users and groups
	users  map[uint32]string
	groups map[uint32]string
}

// lookupUser returns the user name of uid, or "" if there is none. Results
// are cached for the life of the process, like restic's.
func lookupUser(uid uint32) string {
	return cachedLookup(&nameCache.users, uid, func(id string) (string, error) {
		u, err := user.LookupId(id)
		if err != nil {
			return "", err
		}
		return u.Username, nil
	})
}

// lookupGroup returns the group name of gid, or "" if there is none.
func lookupGroup(gid uint32) string {
	return cachedLookup(&nameCache.groups, gid, func(id string) (string, error) {
		g, err := user.LookupGroupId(id)
		if err != nil {
			return "", err
		}
		return g.Name, nil
	})
}

func cachedLookup(m *map[uint32]string, id uint32, lookup func(string) (string, error)) string {
	nameCache.mu.RLock()
	name, ok := (*m)[id]
	nameCache.mu.RUnlock()
	if ok {
		return name
	}
	name, err := lookup(strconv.FormatUint(uint64(id), 10))
	if err != nil {
		name = ""
	}
	nameCache.mu.Lock()
	if *m == nil {
		*m = make(map[uint32]string)
	}
	(*m)[id] = name
	nameCache.mu.Unlock()
	return name
}
