//go:build darwin || freebsd || (linux && !386 && !arm && !mips && !mipsle)

package fusefs

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/tree"
)

// TimeFormat names snapshot directories.
const TimeFormat = "2006-01-02T15:04:05Z07:00"

// FS holds what every node needs.
type FS struct {
	r *repo.Repository

	mu    sync.Mutex // guards trees, blobs, order
	trees map[core.ID]*tree.Tree
	blobs map[core.ID][]byte // small cache of data blobs
	order []core.ID          // eviction order for blobs
}

// New returns the root node for snapshots of r (index already loaded).
func New(r *repo.Repository, snaps []*snapshot.Snapshot) fs.InodeEmbedder {
	f := &FS{r: r, trees: map[core.ID]*tree.Tree{}, blobs: map[core.ID][]byte{}}
	return &staticDir{fs: f, build: func(ctx context.Context, self *fs.Inode) { f.buildRoot(ctx, self, snaps) }}
}

// Mount mounts the file system at dir; the caller waits on the server.
func Mount(dir string, root fs.InodeEmbedder, debug bool) (*fuse.Server, error) {
	sec := time.Second
	return fs.Mount(dir, root, &fs.Options{
		EntryTimeout: &sec, AttrTimeout: &sec, NullPermissions: true,
		MountOptions: fuse.MountOptions{FsName: "cairn", Name: "cairn", Debug: debug, AllowOther: false, Options: []string{"ro"}},
	})
}

func snapName(sn *snapshot.Snapshot, used map[string]int) string {
	n := sn.Time.Format(TimeFormat)
	used[n]++
	if c := used[n]; c > 1 {
		n = fmt.Sprintf("%s-%d", n, c-1)
	}
	return n
}

func (f *FS) buildRoot(ctx context.Context, root *fs.Inode, snaps []*snapshot.Snapshot) {
	snapshot.SortByTime(snaps)
	ids := root.NewPersistentInode(ctx, &staticDir{fs: f}, fs.StableAttr{Mode: syscall.S_IFDIR})
	bytime := root.NewPersistentInode(ctx, &staticDir{fs: f}, fs.StableAttr{Mode: syscall.S_IFDIR})
	hosts := root.NewPersistentInode(ctx, &staticDir{fs: f}, fs.StableAttr{Mode: syscall.S_IFDIR})
	tags := root.NewPersistentInode(ctx, &staticDir{fs: f}, fs.StableAttr{Mode: syscall.S_IFDIR})
	root.AddChild("ids", ids, true)
	root.AddChild("snapshots", bytime, true)
	root.AddChild("hosts", hosts, true)
	root.AddChild("tags", tags, true)
	used := map[string]int{}
	hostUsed := map[string]map[string]int{}
	tagUsed := map[string]map[string]int{}
	var last string
	for _, sn := range snaps {
		mk := func() *fs.Inode {
			return root.NewPersistentInode(ctx, &treeDir{fs: f, id: *sn.Tree, node: &tree.Node{Type: tree.NodeDir, Mode: os.ModeDir | 0o555, ModTime: sn.Time, AccessTime: sn.Time, ChangeTime: sn.Time}}, fs.StableAttr{Mode: syscall.S_IFDIR})
		}
		ids.AddChild(sn.ID().String(), mk(), true)
		name := snapName(sn, used)
		bytime.AddChild(name, mk(), true)
		last = name
		h, ok := hosts.GetChild(sn.Hostname), false
		if h == nil {
			h = root.NewPersistentInode(ctx, &staticDir{fs: f}, fs.StableAttr{Mode: syscall.S_IFDIR})
			hosts.AddChild(sn.Hostname, h, true)
			hostUsed[sn.Hostname] = map[string]int{}
		}
		_ = ok
		h.AddChild(snapName(sn, hostUsed[sn.Hostname]), mk(), true)
		for _, tg := range sn.Tags {
			td := tags.GetChild(tg)
			if td == nil {
				td = root.NewPersistentInode(ctx, &staticDir{fs: f}, fs.StableAttr{Mode: syscall.S_IFDIR})
				tags.AddChild(tg, td, true)
				tagUsed[tg] = map[string]int{}
			}
			td.AddChild(snapName(sn, tagUsed[tg]), mk(), true)
		}
	}
	if last != "" {
		bytime.AddChild("latest", root.NewPersistentInode(ctx, &fs.MemSymlink{Data: []byte(last)}, fs.StableAttr{Mode: syscall.S_IFLNK}), true)
	}
}

// staticDir is a directory whose children are added up front.
type staticDir struct {
	fs.Inode
	fs    *FS
	build func(ctx context.Context, self *fs.Inode)
}

var _ = (fs.NodeOnAdder)((*staticDir)(nil))
var _ = (fs.NodeGetattrer)((*staticDir)(nil))

func (d *staticDir) OnAdd(ctx context.Context) {
	if d.build != nil {
		d.build(ctx, &d.Inode)
	}
}

func (d *staticDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	return 0
}

func (f *FS) loadTree(ctx context.Context, id core.ID) (*tree.Tree, error) {
	f.mu.Lock()
	t, ok := f.trees[id]
	f.mu.Unlock()
	if ok {
		return t, nil
	}
	buf, err := f.r.LoadBlob(ctx, core.TreeBlob, id, nil)
	if err != nil {
		return nil, err
	}
	t, err = tree.DecodeTree(buf)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.trees[id] = t
	f.mu.Unlock()
	return t, nil
}

func (f *FS) loadBlob(ctx context.Context, id core.ID) ([]byte, error) {
	f.mu.Lock()
	b, ok := f.blobs[id]
	f.mu.Unlock()
	if ok {
		return b, nil
	}
	b, err := f.r.LoadBlob(ctx, core.DataBlob, id, nil)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.blobs[id]; !ok {
		f.blobs[id] = b
		f.order = append(f.order, id)
		for len(f.order) > 32 {
			delete(f.blobs, f.order[0])
			f.order = f.order[1:]
		}
	}
	return b, nil
}

func fillAttr(n *tree.Node, out *fuse.Attr) {
	out.Mode = uint32(n.Mode.Perm())
	switch n.Type {
	case tree.NodeDir:
		out.Mode |= syscall.S_IFDIR
	case tree.NodeSymlink:
		out.Mode |= syscall.S_IFLNK
		out.Size = uint64(len(n.LinkTarget))
	case tree.NodeFifo:
		out.Mode |= syscall.S_IFIFO
	case tree.NodeDev:
		out.Mode |= syscall.S_IFBLK
		out.Rdev = uint32(n.Device)
	case tree.NodeCharDev:
		out.Mode |= syscall.S_IFCHR
		out.Rdev = uint32(n.Device)
	case tree.NodeSocket:
		out.Mode |= syscall.S_IFSOCK
	default:
		out.Mode |= syscall.S_IFREG
		out.Size = n.Size
	}
	if n.Mode&os.ModeSetuid != 0 {
		out.Mode |= syscall.S_ISUID
	}
	if n.Mode&os.ModeSetgid != 0 {
		out.Mode |= syscall.S_ISGID
	}
	if n.Mode&os.ModeSticky != 0 {
		out.Mode |= syscall.S_ISVTX
	}
	out.Uid, out.Gid = n.UID, n.GID
	out.Nlink = 1
	if n.Links > 0 {
		out.Nlink = uint32(n.Links)
	}
	out.Blocks = (out.Size + 511) / 512
	out.SetTimes(&n.AccessTime, &n.ModTime, &n.ChangeTime)
}

func modeOf(n *tree.Node) uint32 {
	var a fuse.Attr
	fillAttr(n, &a)
	return a.Mode & syscall.S_IFMT
}

// treeDir is a directory of a snapshot.
type treeDir struct {
	fs.Inode
	fs   *FS
	id   core.ID
	node *tree.Node
}

var _ = (fs.NodeLookuper)((*treeDir)(nil))
var _ = (fs.NodeReaddirer)((*treeDir)(nil))
var _ = (fs.NodeGetattrer)((*treeDir)(nil))

func (d *treeDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(d.node, &out.Attr)
	return 0
}

func (d *treeDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	t, err := d.fs.loadTree(ctx, d.id)
	if err != nil {
		return nil, syscall.EIO
	}
	entries := make([]fuse.DirEntry, 0, len(t.Nodes))
	for _, n := range t.Nodes {
		entries = append(entries, fuse.DirEntry{Name: n.Name, Mode: modeOf(n)})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	return fs.NewListDirStream(entries), 0
}

func (d *treeDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, err := d.fs.loadTree(ctx, d.id)
	if err != nil {
		return nil, syscall.EIO
	}
	n := t.Find(name)
	if n == nil {
		return nil, syscall.ENOENT
	}
	fillAttr(n, &out.Attr)
	var child fs.InodeEmbedder
	switch n.Type {
	case tree.NodeDir:
		if n.Subtree == nil {
			return nil, syscall.EIO
		}
		child = &treeDir{fs: d.fs, id: *n.Subtree, node: n}
	case tree.NodeSymlink:
		child = &linkNode{node: n}
	case tree.NodeFile:
		child = &fileNode{fs: d.fs, node: n}
	default:
		child = &specialNode{node: n}
	}
	return d.NewInode(ctx, child, fs.StableAttr{Mode: modeOf(n)}), 0
}

type linkNode struct {
	fs.Inode
	node *tree.Node
}

var _ = (fs.NodeReadlinker)((*linkNode)(nil))

func (l *linkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(l.node.LinkTarget), 0
}

func (l *linkNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(l.node, &out.Attr)
	return 0
}

type specialNode struct {
	fs.Inode
	node *tree.Node
}

func (s *specialNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(s.node, &out.Attr)
	return 0
}

// fileNode reads a file's content blob by blob.
type fileNode struct {
	fs.Inode
	fs   *FS
	node *tree.Node

	once    sync.Once
	offsets []int64 // start of each blob; len(Content)+1 entries
	err     error
}

var _ = (fs.NodeOpener)((*fileNode)(nil))
var _ = (fs.NodeReader)((*fileNode)(nil))
var _ = (fs.NodeGetattrer)((*fileNode)(nil))

func (f *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(f.node, &out.Attr)
	return 0
}

func (f *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EROFS
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (f *fileNode) layout() error {
	f.once.Do(func() {
		f.offsets = make([]int64, len(f.node.Content)+1)
		for i, id := range f.node.Content {
			loc, ok := f.fs.r.Index().Lookup(core.BlobHandle{ID: id, Type: core.DataBlob})
			if !ok {
				f.err = fmt.Errorf("blob %v not in index", id.Str())
				return
			}
			f.offsets[i+1] = f.offsets[i] + int64(loc.DataLength())
		}
	})
	return f.err
}

func (f *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if err := f.layout(); err != nil {
		return nil, syscall.EIO
	}
	end := off + int64(len(dest))
	if total := f.offsets[len(f.offsets)-1]; end > total {
		end = total
	}
	if off >= end {
		return fuse.ReadResultData(nil), 0
	}
	i := sort.Search(len(f.node.Content), func(i int) bool { return f.offsets[i+1] > off })
	n := 0
	for pos := off; pos < end && i < len(f.node.Content); i++ {
		b, err := f.fs.loadBlob(ctx, f.node.Content[i])
		if err != nil {
			return nil, syscall.EIO
		}
		start := pos - f.offsets[i]
		stop := int64(len(b))
		if f.offsets[i]+stop > end {
			stop = end - f.offsets[i]
		}
		n += copy(dest[n:], b[start:stop])
		pos = f.offsets[i] + stop
	}
	return fuse.ReadResultData(dest[:n]), 0
}
