// Package restorer writes a snapshot's tree back to the filesystem.
//
// It works in pack order: first every directory, special file and empty
// file is created and every file's blobs are listed; then each pack that
// holds needed blobs is downloaded once (several in parallel) and each blob
// is written to every file and offset that needs it. Files are created at
// their final size, so all-zero blobs are skipped and stay holes (sparse
// files stay sparse). Metadata is applied to a file once its last blob is
// written, and to directories at the end, deepest first.
package restorer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/fsnode"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/index"
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
	Verify          bool
	Workers         int
	IgnoreOwnership bool
	Progress        *Progress
	DryRun          bool
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
}

type fileState struct {
	path   string
	node   *tree.Node
	offs   []int64 // offset of each content blob
	remain atomic.Int64
	failed atomic.Bool
	mu     sync.Mutex // guards err
	err    error
}

type blobUse struct {
	file *fileState
	off  int64
}

type restorer struct {
	r    *repo.Repository
	opts Options

	mu      sync.Mutex // guards errs, dirs
	errs    []error
	dirs    []*dirEntry
	files   []*fileState
	needed  map[core.ID][]blobUse // data blob -> uses
	links   map[[2]uint64]string  // (device, inode) -> first restored path
	wanted  map[string]struct{}   // target paths that are in the snapshot (for --delete)
	skipped uint64
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
	rs := &restorer{r: r, opts: opts, needed: map[core.ID][]blobUse{}, links: map[[2]uint64]string{}, wanted: map[string]struct{}{}}
	if !opts.DryRun {
		if err := os.MkdirAll(opts.Target, 0o700); err != nil {
			return nil, fmt.Errorf("restore: create target: %w", err)
		}
	}
	if err := rs.walk(ctx, rootID, opts.Target, "/", 0); err != nil {
		return nil, err
	}
	if !opts.DryRun {
		if err := rs.writeContent(ctx); err != nil {
			return nil, err
		}
		rs.finishDirs()
		if opts.Delete {
			rs.deleteExtra(opts.Target)
		}
	}
	res := &Result{Errors: rs.errs, FilesSkipped: rs.skipped}
	if opts.Verify && !opts.DryRun {
		n, errs := rs.verify(ctx)
		res.Verified = n
		res.Errors = append(res.Errors, errs...)
	}
	return res, nil
}

func (rs *restorer) fail(path string, err error) {
	rs.mu.Lock()
	rs.errs = append(rs.errs, fmt.Errorf("%s: %w", path, err))
	rs.mu.Unlock()
	if rs.opts.Progress != nil {
		rs.opts.Progress.Errors.Add(1)
	}
}

func (rs *restorer) loadTree(ctx context.Context, id core.ID) (*tree.Tree, error) {
	buf, err := rs.r.LoadBlob(ctx, core.TreeBlob, id, nil)
	if err != nil {
		return nil, err
	}
	return tree.DecodeTree(buf)
}

// safeJoin joins a node name to a directory, refusing names that would
// escape it.
func safeJoin(dir, name string) (string, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("refusing unsafe file name %q", name)
	}
	return filepath.Join(dir, name), nil
}

// walk creates directories and special files, and plans file content.
func (rs *restorer) walk(ctx context.Context, id core.ID, dir, item string, depth int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := rs.loadTree(ctx, id)
	if err != nil {
		rs.fail(dir, fmt.Errorf("load tree %v: %w", id.Str(), err))
		return nil
	}
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
		rs.wanted[p] = struct{}{}
		switch n.Type {
		case tree.NodeDir:
			if n.Subtree == nil {
				rs.fail(p, errors.New("directory without subtree"))
				continue
			}
			if !rs.opts.DryRun {
				if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
					rs.fail(p, err)
					continue
				}
			}
			if err := rs.walk(ctx, *n.Subtree, p, it, depth+1); err != nil {
				return err
			}
			if selected {
				rs.dirs = append(rs.dirs, &dirEntry{path: p, node: n, depth: depth})
			}
		case tree.NodeFile:
			if !selected {
				continue
			}
			rs.planFile(p, n)
		default:
			if !selected || rs.opts.DryRun {
				continue
			}
			if rs.skipExisting(p, n) {
				continue
			}
			_ = os.Remove(p)
			if err := fsnode.CreateSpecial(p, n); err != nil {
				if !errors.Is(err, fsnode.ErrNotRestorable) {
					rs.fail(p, err)
				}
				continue
			}
			if err := fsnode.RestoreMetadata(p, n, fsnode.RestoreOptions{IgnoreOwnership: rs.opts.IgnoreOwnership}); err != nil {
				rs.fail(p, err)
			}
		}
	}
	return nil
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

func (rs *restorer) planFile(p string, n *tree.Node) {
	if rs.opts.Progress != nil {
		rs.opts.Progress.FilesTotal.Add(1)
		rs.opts.Progress.BytesTotal.Add(n.Size)
	}
	if rs.opts.DryRun {
		return
	}
	if rs.skipExisting(p, n) {
		return
	}
	if n.Links > 1 && n.Inode != 0 {
		key := [2]uint64{n.DeviceID, n.Inode}
		if first, ok := rs.links[key]; ok {
			_ = os.Remove(p)
			if err := os.Link(first, p); err != nil {
				rs.fail(p, fmt.Errorf("hard link to %s: %w", first, err))
			}
			if rs.opts.Progress != nil {
				rs.opts.Progress.FilesDone.Add(1)
			}
			return
		}
		rs.links[key] = p
	}
	_ = os.Remove(p) // replace, never write through an existing (maybe hard-linked) file
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_EXCL, 0o600)
	if err != nil {
		rs.fail(p, err)
		return
	}
	if err := f.Truncate(int64(n.Size)); err != nil {
		f.Close()
		rs.fail(p, err)
		return
	}
	if err := f.Close(); err != nil {
		rs.fail(p, err)
		return
	}
	fs := &fileState{path: p, node: n, offs: make([]int64, len(n.Content))}
	var off int64
	idx := rs.r.Index()
	for i, id := range n.Content {
		fs.offs[i] = off
		loc, ok := idx.Lookup(core.BlobHandle{ID: id, Type: core.DataBlob})
		if !ok {
			fs.setErr(fmt.Errorf("data blob %v is not in the index", id.Str()))
			continue
		}
		off += int64(loc.DataLength())
		rs.needed[id] = append(rs.needed[id], blobUse{file: fs, off: fs.offs[i]})
	}
	fs.remain.Store(int64(len(n.Content)))
	rs.files = append(rs.files, fs)
	if len(n.Content) == 0 {
		rs.finishFile(fs)
	}
}

func (fs *fileState) setErr(err error) {
	fs.mu.Lock()
	if fs.err == nil {
		fs.err = err
	}
	fs.mu.Unlock()
	fs.failed.Store(true)
}

// finishFile applies metadata, or reports the file as damaged.
func (rs *restorer) finishFile(fs *fileState) {
	if fs.failed.Load() {
		fs.mu.Lock()
		err := fs.err
		fs.mu.Unlock()
		rs.fail(fs.path, fmt.Errorf("not restored completely: %w", err))
		return
	}
	if err := fsnode.RestoreMetadata(fs.path, fs.node, fsnode.RestoreOptions{IgnoreOwnership: rs.opts.IgnoreOwnership}); err != nil {
		rs.fail(fs.path, err)
	}
	if rs.opts.Progress != nil {
		rs.opts.Progress.FilesDone.Add(1)
	}
}

type packJob struct {
	pack  core.ID
	blobs []index.Location
}

func (rs *restorer) writeContent(ctx context.Context) error {
	byPack := map[core.ID][]index.Location{}
	idx := rs.r.Index()
	for id := range rs.needed {
		loc, ok := idx.Lookup(core.BlobHandle{ID: id, Type: core.DataBlob})
		if !ok {
			continue // already reported in planFile
		}
		byPack[loc.Pack] = append(byPack[loc.Pack], loc)
	}
	jobs := make([]packJob, 0, len(byPack))
	for p, locs := range byPack {
		sort.Slice(locs, func(i, j int) bool { return locs[i].Offset < locs[j].Offset })
		jobs = append(jobs, packJob{pack: p, blobs: locs})
	}
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].pack.String() < jobs[j].pack.String() })
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(rs.opts.Workers)
	for _, job := range jobs {
		g.Go(func() error { return rs.restorePack(gctx, job) })
	}
	return g.Wait()
}

// restorePack downloads the needed range of one pack and writes its blobs.
func (rs *restorer) restorePack(ctx context.Context, job packJob) error {
	start := int64(job.blobs[0].Offset)
	last := job.blobs[len(job.blobs)-1]
	end := int64(last.Offset) + int64(last.Length)
	h := backend.Handle{Type: core.PackFile, Name: job.pack.String()}
	var plain []byte
	// Blobs that fail to decode here are fetched again from their other
	// copies only after Load returned: loading inside the callback would
	// need a second backend slot while this one is held.
	var damaged []index.Location
	err := rs.r.Backend().Load(ctx, h, int(end-start), start, func(rd io.Reader) error {
		damaged = damaged[:0] // the callback runs again on a retry
		pos := start
		for _, b := range job.blobs {
			if skip := int64(b.Offset) - pos; skip > 0 {
				if _, err := io.CopyN(io.Discard, rd, skip); err != nil {
					return err
				}
				pos += skip
			}
			sealed := make([]byte, b.Length)
			if _, err := io.ReadFull(rd, sealed); err != nil {
				return err
			}
			pos += int64(b.Length)
			var err error
			plain, err = rs.r.DecodeBlob(b.Blob, sealed, plain)
			if err != nil {
				damaged = append(damaged, b)
				continue
			}
			rs.writeBlob(b.ID, plain, nil)
		}
		return nil
	})
	if err == nil {
		for _, b := range damaged {
			var lerr error
			plain, lerr = rs.r.LoadBlob(ctx, core.DataBlob, b.ID, plain)
			rs.writeBlob(b.ID, plain, lerr)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// the pack could not be read: every file that needs it fails,
		// unless another copy of a blob exists elsewhere.
		for _, b := range job.blobs {
			if rs.allWritten(b.ID) {
				continue
			}
			var lerr error
			plain, lerr = rs.r.LoadBlob(ctx, core.DataBlob, b.ID, plain)
			if lerr != nil {
				lerr = fmt.Errorf("pack %v: %w", job.pack.Str(), err)
			}
			rs.writeBlob(b.ID, plain, lerr)
		}
	}
	return nil
}

// allWritten reports whether blob id has been handled already (e.g. before
// a pack download broke off).
func (rs *restorer) allWritten(id core.ID) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	_, ok := rs.needed[id]
	return !ok
}

// writeBlob writes one blob to every place that needs it. blobErr marks
// those files damaged instead.
func (rs *restorer) writeBlob(id core.ID, plain []byte, blobErr error) {
	rs.mu.Lock()
	uses := rs.needed[id]
	delete(rs.needed, id)
	rs.mu.Unlock()
	zero := blobErr == nil && isZero(plain)
	for _, u := range uses {
		fs := u.file
		if blobErr != nil {
			fs.setErr(fmt.Errorf("data blob %v: %w", id.Str(), blobErr))
		} else if !fs.failed.Load() && !zero {
			if err := writeAt(fs.path, plain, u.off); err != nil {
				fs.setErr(err)
			}
		}
		if rs.opts.Progress != nil && blobErr == nil {
			rs.opts.Progress.BytesDone.Add(uint64(len(plain)))
		}
		if fs.remain.Add(-1) == 0 {
			rs.finishFile(fs)
		}
	}
}

// writeAt writes buf at off, leaving all-zero blocks as holes (the file
// was created at its final size, so unwritten blocks read as zeros).
func writeAt(path string, buf []byte, off int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = fsnode.WriteAtSkippingZeros(f, buf, off)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// finishDirs applies directory metadata, deepest first, so that setting a
// parent's mtime is not undone by writes into it.
func (rs *restorer) finishDirs() {
	sort.SliceStable(rs.dirs, func(i, j int) bool { return rs.dirs[i].depth > rs.dirs[j].depth })
	for _, d := range rs.dirs {
		if err := fsnode.RestoreMetadata(d.path, d.node, fsnode.RestoreOptions{IgnoreOwnership: rs.opts.IgnoreOwnership}); err != nil {
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
			}
			continue
		}
		if e.IsDir() {
			rs.deleteExtra(p)
		}
	}
}

// verify rereads every restored file and checks each blob's hash.
func (rs *restorer) verify(ctx context.Context) (uint64, []error) {
	var n atomic.Uint64
	var mu sync.Mutex // guards errs
	var errs []error
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(rs.opts.Workers)
	for _, fs := range rs.files {
		if fs.failed.Load() {
			continue
		}
		g.Go(func() error {
			if err := rs.verifyFile(gctx, fs); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("verify %s: %w", fs.path, err))
				mu.Unlock()
				return nil
			}
			n.Add(1)
			return nil
		})
	}
	_ = g.Wait()
	return n.Load(), errs
}

func (rs *restorer) verifyFile(ctx context.Context, fs *fileState) error {
	f, err := os.Open(fs.path)
	if err != nil {
		return err
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err == nil && uint64(st.Size) != fs.node.Size {
		return fmt.Errorf("size %d, snapshot says %d", st.Size, fs.node.Size)
	}
	idx := rs.r.Index()
	var buf []byte
	for i, id := range fs.node.Content {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		loc, ok := idx.Lookup(core.BlobHandle{ID: id, Type: core.DataBlob})
		if !ok {
			return fmt.Errorf("blob %v not in index", id.Str())
		}
		n := int(loc.DataLength())
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := f.ReadAt(buf, fs.offs[i]); err != nil {
			return fmt.Errorf("read at %d: %w", fs.offs[i], err)
		}
		if core.Hash(buf) != id {
			return fmt.Errorf("content at offset %d does not match blob %v", fs.offs[i], id.Str())
		}
	}
	var one [1]byte
	if n, _ := f.ReadAt(one[:], int64(fs.node.Size)); n != 0 {
		return errors.New("file is longer than in the snapshot")
	}
	return nil
}

// FindSubtree resolves a slash-separated path inside the tree rootID and
// returns the subtree ID of the directory there.
func FindSubtree(ctx context.Context, r *repo.Repository, rootID core.ID, p string) (core.ID, error) {
	cur := rootID
	for _, comp := range strings.Split(strings.Trim(p, "/"), "/") {
		if comp == "" {
			continue
		}
		buf, err := r.LoadBlob(ctx, core.TreeBlob, cur, nil)
		if err != nil {
			return core.ID{}, err
		}
		t, err := tree.DecodeTree(buf)
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
