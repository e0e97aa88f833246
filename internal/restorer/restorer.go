// Package restorer writes a snapshot's tree back to the filesystem.
//
// It works in two phases. The walk visits the trees depth first (loaders
// fetch and decode the subtrees of the directory being visited in the
// background), creates every directory, special file and empty file, and
// lists the blobs of every other file. Then the content phase reads each
// pack that holds needed blobs once, as one range or (for packs with many
// small files) as a few ranges, several at a time, costliest first. Each
// blob is decrypted in place, decompressed into a per-worker buffer,
// checked against its MAC and its ID (a valid MAC only proves that the
// blob was written with the key; the ID check catches data that was
// corrupted before encryption or an index entry that points at the wrong
// blob, which would otherwise be restored silently), and written with
// pwrite to every file and offset that needs it.
//
// A regular file is created by the first worker that writes to it (in
// parallel, with one open, one write and one close for a small file), and
// its handle stays open while more of its blobs are pending, up to a limit.
// All-zero blocks are not written: the file is new, so they stay holes and
// sparse files stay sparse; the file is extended to its full size at the
// end. Metadata is applied to a file once its last blob is written, hard
// links are made after all content, and directories get their metadata at
// the end, deepest first.
//
// Inside a directory this restore created itself nothing can be in the way,
// so entries there are created without looking for old ones first.
package restorer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/fsnode"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/tree"
)

// Overwrite says what to do with files that already exist at the target.
type Overwrite int

const (
	OverwriteAlways Overwrite = iota
	OverwriteIfChanged
	OverwriteIfNewer
	OverwriteNever
)

// ParseOverwrite parses always|if-changed|if-newer|never.
func ParseOverwrite(s string) (Overwrite, error) {
	switch s {
	case "", "always":
		return OverwriteAlways, nil
	case "if-changed":
		return OverwriteIfChanged, nil
	case "if-newer":
		return OverwriteIfNewer, nil
	case "never":
		return OverwriteNever, nil
	}
	return 0, fmt.Errorf("invalid --overwrite %q (want always, if-changed, if-newer or never)", s)
}

// SelectFunc decides whether the entry at the snapshot path item is
// restored, and whether anything below it may be.
type SelectFunc func(item string, isDir bool) (selected, childMayMatch bool)

// Options configure a restore.
type Options struct {
	Target    string
	Select    SelectFunc
	Overwrite Overwrite
	// Delete removes files in the target that are not in the snapshot.
	Delete bool
	// Verify rereads every restored file and checks it against the snapshot.
	Verify bool
	// Workers is the number of packs processed at once (default: the
	// backend's connections + 2).
	Workers         int
	IgnoreOwnership bool
	Progress        *Progress
	DryRun          bool
	// Direct says when large files on ext4, XFS and btrfs are written with
	// direct I/O, around the page cache (direct.go). The zero value is
	// DirectOff.
	Direct DirectMode
}

// Progress counts work; updated atomically.
type Progress struct {
	FilesTotal, FilesDone atomic.Uint64
	BytesTotal, BytesDone atomic.Uint64
	Errors                atomic.Uint64
}

// Result lists what went wrong per file; the restore of everything else
// went ahead.
type Result struct {
	Errors       []error
	FilesSkipped uint64
	Deleted      uint64
	Verified     uint64
	// DirectBytes is how much file data was written with direct I/O.
	DirectBytes uint64
}

// fileState is a regular file whose content is being restored.
type fileState struct {
	path string
	node *tree.Node
	// fresh: the parent directory was created by this restore, so nothing
	// has to be removed at path before the file is created.
	fresh bool

	remain  atomic.Int64 // blob uses not yet handled
	failed  atomic.Bool
	written atomic.Int64 // end of the highest range written

	mu        sync.Mutex // guards err, fd, created, createErr
	err       error
	fd        int  // handle kept open while blobs are pending; -1: none
	created   bool // creation was attempted
	createErr error
}

type blobUse struct {
	file *fileState
	off  int64
}

type hardLink struct {
	first, path string
}

type restorer struct {
	r     *repo.Repository
	opts  Options
	ropts fsnode.RestoreOptions

	mu   sync.Mutex // guards errs, and needed during the content phase
	errs []error
	// needed maps each data blob still to be written to its uses.
	needed map[core.ID][]blobUse

	// Walk state, used by the walking goroutine only.
	trees     *treeLoader
	creator   *creator
	dirs      []*dirEntry
	files     []*fileState
	links     map[[2]uint64]string // (device, inode) -> first restored path
	hardLinks []hardLink           // made after the content phase
	wanted    map[string]struct{}  // target paths in the snapshot (only for --delete)
	packOrder map[core.ID]int      // pack -> rank of its first use
	skipped   uint64
	deleted   uint64

	openFiles atomic.Int64   // handles kept in fileState.fd
	bufs      chan *packBufs // idle workers' buffers

	direct      atomic.Bool  // write large files with O_DIRECT (direct.go)
	directBytes atomic.Int64 // bytes written with O_DIRECT
}

type dirEntry struct {
	path  string
	node  *tree.Node
	depth int
}

// Restore restores the tree rootID (a snapshot's tree or a subtree) into
// opts.Target.
func Restore(ctx context.Context, r *repo.Repository, rootID core.ID, opts Options) (*Result, error) {
	if opts.Workers <= 0 {
		opts.Workers = r.Connections() + 2
	}
	rs := &restorer{
		r: r, opts: opts, ropts: fsnode.RestoreOptions{IgnoreOwnership: opts.IgnoreOwnership},
		needed: map[core.ID][]blobUse{}, links: map[[2]uint64]string{}, packOrder: map[core.ID]int{},
		bufs: make(chan *packBufs, opts.Workers),
	}
	if opts.Delete {
		rs.wanted = map[string]struct{}{}
	}
	fresh := false
	if !opts.DryRun {
		var err error
		if fresh, err = makeTarget(opts.Target); err != nil {
			return nil, err
		}
		rs.direct.Store(opts.Direct.use(opts.Target))
	}
	rs.trees = newTreeLoader(ctx, r, min(opts.Workers, maxTreeLoaders))
	rs.creator = newCreator()
	err := rs.walk(ctx, rootID, opts.Target, "/", 0, fresh)
	rs.trees.close()
	rs.creator.close()
	if err != nil {
		return nil, err
	}
	if !opts.DryRun {
		if err := rs.writeContent(ctx); err != nil {
			return nil, err
		}
		rs.makeHardLinks()
		if opts.Delete {
			rs.deleteExtra(opts.Target) // before finishDirs: it changes directory mtimes
		}
		rs.finishDirs()
	}
	res := &Result{Errors: rs.errs, FilesSkipped: rs.skipped, Deleted: rs.deleted, DirectBytes: uint64(rs.directBytes.Load())}
	if opts.Verify && !opts.DryRun {
		n, errs := rs.verify(ctx)
		res.Verified = n
		res.Errors = append(res.Errors, errs...)
	}
	return res, nil
}

// makeTarget creates the target directory if needed. fresh reports whether
// it did not exist before.
func makeTarget(target string) (fresh bool, err error) {
	err = os.Mkdir(target, 0o700)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrExist):
		if fi, err := os.Stat(target); err != nil {
			return false, fmt.Errorf("restore: target: %w", err)
		} else if !fi.IsDir() {
			return false, fmt.Errorf("restore: target %s exists and is not a directory", target)
		}
		return false, nil
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(target, 0o700); err != nil {
			return false, fmt.Errorf("restore: create target: %w", err)
		}
		return true, nil
	}
	return false, fmt.Errorf("restore: create target: %w", err)
}

func (rs *restorer) fail(path string, err error) {
	rs.mu.Lock()
	rs.errs = append(rs.errs, fmt.Errorf("%s: %w", path, err))
	rs.mu.Unlock()
	if rs.opts.Progress != nil {
		rs.opts.Progress.Errors.Add(1)
	}
}

// safeJoin joins a node name to a directory, refusing names that would
// escape it.
func safeJoin(dir, name string) (string, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("refusing unsafe file name %q", name)
	}
	return filepath.Join(dir, name), nil
}

// entry is a node of the directory being walked, with what to do with it.
type entry struct {
	n        *tree.Node
	path     string
	item     string
	selected bool
}

// walk creates directories and special files, and plans file content.
// fresh says that dir was created by this restore.
func (rs *restorer) walk(ctx context.Context, id core.ID, dir, item string, depth int, fresh bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := rs.trees.get(id)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rs.fail(dir, fmt.Errorf("load tree %v: %w", id.Str(), err))
		return nil
	}
	// Decide first, so that the subtrees to visit load in the background
	// while this directory is handled.
	entries := make([]entry, 0, len(t.Nodes))
	for _, n := range t.Nodes {
		p, err := safeJoin(dir, n.Name)
		if err != nil {
			rs.fail(dir, err)
			continue
		}
		it := pathJoin(item, n.Name)
		selected, childMay := true, true
		if rs.opts.Select != nil {
			selected, childMay = rs.opts.Select(it, n.Type == tree.NodeDir)
		}
		if !selected && !(n.Type == tree.NodeDir && childMay) {
			continue
		}
		entries = append(entries, entry{n: n, path: p, item: it, selected: selected})
	}
	// Queue in reverse, so the loaders (which take the newest first)
	// start with the subtree visited next.
	for i := len(entries) - 1; i >= 0; i-- {
		if n := entries[i].n; n.Type == tree.NodeDir && n.Subtree != nil {
			rs.trees.prefetch(*n.Subtree)
		}
	}
	for _, e := range entries {
		n, p := e.n, e.path
		if rs.wanted != nil {
			rs.wanted[p] = struct{}{}
		}
		switch n.Type {
		case tree.NodeDir:
			if n.Subtree == nil {
				rs.fail(p, errors.New("directory without subtree"))
				continue
			}
			subFresh := false
			switch {
			case rs.opts.DryRun:
			case fresh:
				// its parent is new, so it is new: no need to wait
				subFresh = true
				rs.creator.do(func() {
					if err := os.Mkdir(p, 0o700); err != nil {
						rs.fail(p, err)
					}
				})
			default:
				var err error
				if subFresh, err = rs.makeDir(p); err != nil {
					rs.fail(p, err)
					rs.trees.forget(*n.Subtree)
					continue
				}
			}
			if err := rs.walk(ctx, *n.Subtree, p, e.item, depth+1, subFresh); err != nil {
				return err
			}
			if e.selected {
				rs.dirs = append(rs.dirs, &dirEntry{path: p, node: retainNode(n, false), depth: depth})
			}
		case tree.NodeFile:
			rs.planFile(p, n, fresh)
		default:
			if rs.opts.DryRun || (!fresh && rs.skipExisting(p, n)) {
				continue
			}
			create := func() {
				if !fresh {
					_ = os.Remove(p)
				}
				if err := fsnode.CreateSpecial(p, n); err != nil {
					if !errors.Is(err, fsnode.ErrNotRestorable) {
						rs.fail(p, err)
					}
					return
				}
				if err := fsnode.RestoreMetadata(p, n, rs.ropts); err != nil {
					rs.fail(p, err)
				}
			}
			if fresh {
				rs.creator.do(create)
			} else {
				create()
			}
		}
	}
	return nil
}

// makeDir creates directory p in a directory that existed before. An
// existing directory is used as it is (fresh is false); anything else there
// (a file, or a symlink that would lead the restore out of the target) is
// replaced, unless the overwrite policy is never.
func (rs *restorer) makeDir(p string) (fresh bool, err error) {
	err = os.Mkdir(p, 0o700)
	if err == nil || !errors.Is(err, os.ErrExist) {
		return err == nil, err
	}
	fi, lerr := os.Lstat(p)
	if lerr != nil {
		return false, lerr
	}
	if fi.IsDir() {
		return false, nil
	}
	if rs.opts.Overwrite == OverwriteNever {
		return false, fmt.Errorf("exists and is not a directory (%v)", fi.Mode().Type())
	}
	if err := os.Remove(p); err != nil {
		return false, err
	}
	return true, os.Mkdir(p, 0o700)
}

// creator runs, in order and in the background, what the walk creates
// inside directories that are new: the directories themselves, special
// files and empty files. Each operation's directory is created by an
// earlier one, and nothing else depends on them until the content phase,
// which starts after close. So the walk goes on decoding trees while the
// filesystem creates inodes, which is slow on some filesystems.
type creator struct {
	ops  chan func()
	done chan struct{}
}

func newCreator() *creator {
	c := &creator{ops: make(chan func(), 4096), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for op := range c.ops {
			op()
		}
	}()
	return c
}

// do queues op.
func (c *creator) do(op func()) { c.ops <- op }

// close waits until every queued operation has run.
func (c *creator) close() {
	close(c.ops)
	<-c.done
}

func pathJoin(item, name string) string {
	if item == "/" {
		return "/" + name
	}
	return item + "/" + name
}

// skipExisting applies the overwrite policy to an existing entry.
func (rs *restorer) skipExisting(p string, n *tree.Node) bool {
	fi, err := os.Lstat(p)
	if err != nil {
		return false
	}
	skip := false
	switch rs.opts.Overwrite {
	case OverwriteNever:
		skip = true
	case OverwriteIfNewer:
		skip = !fi.ModTime().Before(n.ModTime)
	case OverwriteIfChanged:
		skip = fi.Mode().IsRegular() == (n.Type == tree.NodeFile) && uint64(fi.Size()) == n.Size && fi.ModTime().Equal(n.ModTime)
	}
	if skip {
		rs.skipped++
	}
	return skip
}

// planFile records the blobs of a regular file. The file itself is created
// in the content phase, by the first worker that writes to it.
func (rs *restorer) planFile(p string, n *tree.Node, fresh bool) {
	if rs.opts.Progress != nil {
		rs.opts.Progress.FilesTotal.Add(1)
		rs.opts.Progress.BytesTotal.Add(n.Size)
	}
	if rs.opts.DryRun || (!fresh && rs.skipExisting(p, n)) {
		return
	}
	if n.Links > 1 && n.Inode != 0 {
		key := [2]uint64{n.DeviceID, n.Inode}
		if first, ok := rs.links[key]; ok {
			rs.hardLinks = append(rs.hardLinks, hardLink{first: first, path: p})
			return
		}
		rs.links[key] = p
	}
	fs := &fileState{path: p, node: retainNode(n, rs.opts.Verify), fresh: fresh, fd: -1}
	rs.files = append(rs.files, fs)
	var off int64
	idx := rs.r.Index()
	uses := int64(0)
	for _, id := range n.Content {
		loc, ok := idx.Lookup(core.BlobHandle{ID: id, Type: core.DataBlob})
		if !ok {
			// the offsets of later blobs are unknown: the file cannot be
			// restored, but it is still created and reported
			fs.setErr(fmt.Errorf("data blob %v is not in the index", id.Str()))
			break
		}
		if _, ok := rs.packOrder[loc.Pack]; !ok {
			rs.packOrder[loc.Pack] = len(rs.packOrder)
		}
		rs.needed[id] = append(rs.needed[id], blobUse{file: fs, off: off})
		off += int64(loc.DataLength())
		uses++
	}
	fs.remain.Store(uses)
	if uses == 0 {
		if fresh {
			rs.creator.do(func() { rs.finishFile(fs, -1) })
		} else {
			rs.finishFile(fs, -1)
		}
	}
}

// retainNode returns a copy of n with what is needed after the walk, so
// that the decoded tree n belongs to can be freed. Content is kept only for
// verification.
func retainNode(n *tree.Node, keepContent bool) *tree.Node {
	c := *n
	c.Name, c.LinkTarget, c.Error, c.Subtree = "", "", "", nil
	if !keepContent {
		c.Content = nil
	}
	return &c
}

func (fs *fileState) setErr(err error) {
	fs.mu.Lock()
	if fs.err == nil {
		fs.err = err
	}
	fs.mu.Unlock()
	fs.failed.Store(true)
}

// makeHardLinks creates the extra names of hard-linked files, now that the
// first names exist.
func (rs *restorer) makeHardLinks() {
	for _, l := range rs.hardLinks {
		_ = os.Remove(l.path) // never write through an existing name
		if err := os.Link(l.first, l.path); err != nil {
			rs.fail(l.path, fmt.Errorf("hard link to %s: %w", l.first, err))
			continue
		}
		if rs.opts.Progress != nil {
			rs.opts.Progress.FilesDone.Add(1)
		}
	}
}

// finishDirs applies directory metadata, deepest first, so that setting a
// parent's mtime is not undone by writes into it.
func (rs *restorer) finishDirs() {
	sort.SliceStable(rs.dirs, func(i, j int) bool { return rs.dirs[i].depth > rs.dirs[j].depth })
	for _, d := range rs.dirs {
		if err := fsnode.RestoreMetadata(d.path, d.node, rs.ropts); err != nil {
			rs.fail(d.path, err)
		}
	}
}

// deleteExtra removes entries below dir that the snapshot does not have.
func (rs *restorer) deleteExtra(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if _, ok := rs.wanted[p]; !ok {
			if err := os.RemoveAll(p); err != nil {
				rs.fail(p, err)
			} else {
				rs.deleted++
			}
			continue
		}
		if e.IsDir() {
			rs.deleteExtra(p)
		}
	}
}

// FindSubtree resolves a slash-separated path inside the tree rootID and
// returns the subtree ID of the directory there.
func FindSubtree(ctx context.Context, r *repo.Repository, rootID core.ID, p string) (core.ID, error) {
	cur := rootID
	for _, comp := range strings.Split(strings.Trim(p, "/"), "/") {
		if comp == "" {
			continue
		}
		t, err := loadTree(ctx, r, cur)
		if err != nil {
			return core.ID{}, err
		}
		n := t.Find(comp)
		if n == nil {
			return core.ID{}, fmt.Errorf("path %q: %q not found in snapshot", p, comp)
		}
		if n.Type != tree.NodeDir || n.Subtree == nil {
			return core.ID{}, fmt.Errorf("path %q: %q is not a directory", p, comp)
		}
		cur = *n.Subtree
	}
	return cur, nil
}
