// Package archiver saves a set of filesystem paths into a repository as a
// tree of tree blobs and data blobs.
//
// Pipeline: one walker goroutine scans directories depth first (sorted by
// name) and stays ahead of the readers; file jobs go to a pool of file
// workers that read and chunk; the chunks of large files go to a pool of
// blob workers that hash, compress, encrypt and add them to packs, so one big
// file keeps every core busy; a directory's tree is encoded by a goroutine
// that waits for its children's results, so the completion of one file
// never blocks reading the next. Chunk buffers come from a pool and return
// to it only after SaveBlob returned (SaveBlob copies them into a pack).
package archiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/restic/chunker"

	"github.com/cairn-backup/cairn/internal/bufpool"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/fsnode"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/tree"
)

// SelectFunc decides whether a path is backed up. fi is from Lstat.
type SelectFunc func(path string, fi os.FileInfo) bool

// Options configure a backup run.
type Options struct {
	FileWorkers int // parallel file readers (default 2×GOMAXPROCS)
	BlobWorkers int // parallel chunk savers (default GOMAXPROCS)
	// ChunksInFlight bounds the chunks of one file being saved at once.
	ChunksInFlight int
	Select         SelectFunc
	// Parent is the root tree of the parent snapshot (nil: none).
	Parent *core.ID
	// Force rereads every file even when the parent says it is unchanged.
	Force         bool
	NodeOptions   fsnode.Options
	OneFileSystem bool
	// Progress receives counters as work proceeds (may be nil).
	Progress *Progress
	// OnError is called for files that cannot be read; returning nil skips
	// the file (the snapshot is then incomplete), an error aborts.
	OnError func(path string, err error) error
	// DirHook, if set, is told about each directory before its entries are
	// selected (per-directory ignore files).
	DirHook DirHook
	// DryRun reads and chunks everything but stores nothing: blobs are
	// only looked up in the index.
	DryRun bool
}

// DirHook sees every directory the walker enters and leaves, in depth-first
// order, before Select is called for its entries.
type DirHook interface {
	EnterDir(ctx context.Context, dir string, names []string) error
	LeaveDir(dir string)
}

// Progress counts work done; all fields are updated atomically.
type Progress struct {
	FilesDone, DirsDone, BytesDone atomic.Uint64
	FilesTotal, DirsTotal          atomic.Uint64
	BytesTotal                     atomic.Uint64
	ErrorCount                     atomic.Uint64
	ScanDone                       atomic.Bool
	CurrentFile                    atomic.Pointer[string]
}

// Result is the outcome of a run.
type Result struct {
	Tree    core.ID
	Summary snapshot.Summary
	// Errors lists files that could not be read (the snapshot then lacks them).
	Errors []error
}

type stats struct {
	filesNew, filesChanged, filesUnmodified atomic.Uint64
	dirsNew, dirsChanged, dirsUnmodified    atomic.Uint64
	dataBlobs, treeBlobs                    atomic.Int64
	dataAdded, dataAddedPacked              atomic.Uint64
	filesProcessed, bytesProcessed          atomic.Uint64
}

// Archiver runs one backup. Create one per run.
type Archiver struct {
	repo *repo.Repository
	opts Options
	pol  chunker.Pol

	st stats

	errMu  sync.Mutex // guards errs
	errs   []error
	ctx    context.Context
	cancel context.CancelCauseFunc

	dryMu   sync.Mutex // guards drySeen
	drySeen core.BlobSet

	prefetchMu sync.Mutex // guards prefetched
	// prefetched holds parent subtrees being loaded ahead of the walker.
	prefetched map[core.ID]*treeFuture

	// chunkSlots bounds the chunk buffers alive at once (memory bound).
	chunkSlots chan struct{}

	fileJobs    chan *fileJob
	blobJobs    chan *blobJob
	fileWorkers sync.WaitGroup
	blobWorkers sync.WaitGroup
}

// New returns an archiver writing into r.
func New(r *repo.Repository, opts Options) *Archiver {
	if opts.FileWorkers <= 0 {
		opts.FileWorkers = 2 * runtime.GOMAXPROCS(0)
	}
	if opts.BlobWorkers <= 0 {
		opts.BlobWorkers = runtime.GOMAXPROCS(0)
	}
	if opts.ChunksInFlight <= 0 {
		opts.ChunksInFlight = 4
	}
	return &Archiver{repo: r, opts: opts, pol: r.Config().ChunkerPolynomial, drySeen: core.NewBlobSet(),
		prefetched: map[core.ID]*treeFuture{}}
}

// future is the eventual result for one tree entry.
type future struct {
	done chan struct{}
	node *tree.Node // nil when the entry was skipped
	err  error      // fatal error
	// changed reports whether content differs from the parent (dirs).
	status int
}

const (
	statusNew = iota
	statusChanged
	statusUnmodified
)

func newFuture() *future { return &future{done: make(chan struct{})} }

func (f *future) resolve(n *tree.Node, status int, err error) {
	f.node, f.status, f.err = n, status, err
	close(f.done)
}

type fileJob struct {
	path string
	node *tree.Node
	prev *tree.Node // node in the parent snapshot, if any
	fut  *future
}

type blobJob struct {
	ch     chunk
	result chan blobResult
}

type blobResult struct {
	id  core.ID
	err error
}

// Run backs up targets (as given on the command line) and returns the root
// tree.
func (a *Archiver) Run(ctx context.Context, targets []string) (*Result, error) {
	if len(targets) == 0 {
		return nil, errors.New("backup: no paths given")
	}
	start := time.Now()
	a.ctx, a.cancel = context.WithCancelCause(ctx)
	defer a.cancel(nil)
	a.chunkSlots = make(chan struct{}, a.opts.BlobWorkers+a.opts.FileWorkers)
	a.fileJobs = make(chan *fileJob, a.opts.FileWorkers*4)
	a.blobJobs = make(chan *blobJob, a.opts.BlobWorkers*2)
	for i := 0; i < a.opts.FileWorkers; i++ {
		a.fileWorkers.Add(1)
		go a.fileWorker()
	}
	for i := 0; i < a.opts.BlobWorkers; i++ {
		a.blobWorkers.Add(1)
		go a.blobWorker()
	}

	root, err := buildVirtualTree(targets)
	var rootFut *future
	if err == nil {
		var parent *tree.Tree
		if a.opts.Parent != nil {
			parent = a.loadTree(*a.opts.Parent)
		}
		if root.target {
			rootFut = a.saveRootDir(root.path)
		} else {
			rootFut = a.saveVirtual(root, parent)
		}
		select {
		case <-rootFut.done:
		case <-a.ctx.Done():
		}
	}
	close(a.fileJobs)
	a.fileWorkers.Wait()
	close(a.blobJobs)
	a.blobWorkers.Wait()
	if err != nil {
		return nil, err
	}
	if cerr := context.Cause(a.ctx); cerr != nil {
		return nil, cerr
	}
	if rootFut.err != nil {
		return nil, rootFut.err
	}
	if a.opts.Progress != nil {
		a.opts.Progress.ScanDone.Store(true)
	}
	if !a.opts.DryRun {
		if err := a.repo.Flush(ctx); err != nil {
			return nil, fmt.Errorf("backup: flush: %w", err)
		}
	}
	res := &Result{Tree: *rootFut.node.Subtree, Errors: a.errs}
	res.Summary = snapshot.Summary{
		BackupStart:         start,
		BackupEnd:           time.Now(),
		FilesNew:            uint(a.st.filesNew.Load()),
		FilesChanged:        uint(a.st.filesChanged.Load()),
		FilesUnmodified:     uint(a.st.filesUnmodified.Load()),
		DirsNew:             uint(a.st.dirsNew.Load()),
		DirsChanged:         uint(a.st.dirsChanged.Load()),
		DirsUnmodified:      uint(a.st.dirsUnmodified.Load()),
		DataBlobs:           int(a.st.dataBlobs.Load()),
		TreeBlobs:           int(a.st.treeBlobs.Load()),
		DataAdded:           a.st.dataAdded.Load(),
		DataAddedPacked:     a.st.dataAddedPacked.Load(),
		TotalFilesProcessed: uint(a.st.filesProcessed.Load()),
		TotalBytesProcessed: a.st.bytesProcessed.Load(),
	}
	return res, nil
}

func (a *Archiver) fatal(err error) {
	a.cancel(err)
}

// fileError records a per-file problem; it aborts the run if OnError says so.
func (a *Archiver) fileError(path string, err error) error {
	err = fmt.Errorf("%s: %w", path, err)
	if a.opts.Progress != nil {
		a.opts.Progress.ErrorCount.Add(1)
	}
	if a.opts.OnError != nil {
		if ferr := a.opts.OnError(path, err); ferr != nil {
			a.fatal(ferr)
			return ferr
		}
	}
	a.errMu.Lock()
	a.errs = append(a.errs, err)
	a.errMu.Unlock()
	return nil
}

// vnode is a node of the virtual tree built from the targets' path
// components: intermediate directories plus the targets themselves.
type vnode struct {
	name     string
	path     string // real path (for metadata)
	target   bool   // a target given by the user: back up its contents
	children map[string]*vnode
}

func buildVirtualTree(targets []string) (*vnode, error) {
	root := &vnode{children: map[string]*vnode{}}
	for _, t := range targets {
		if _, err := os.Lstat(t); err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		clean := filepath.ToSlash(filepath.Clean(t))
		parts := strings.Split(clean, "/")
		cur := root
		var last *vnode
		for i, p := range parts {
			if p == "" || p == "." || p == ".." {
				continue
			}
			real := strings.Join(parts[:i+1], "/")
			child, ok := cur.children[p]
			if !ok {
				child = &vnode{name: p, path: filepath.FromSlash(real), children: map[string]*vnode{}}
				cur.children[p] = child
			}
			cur, last = child, child
		}
		if last == nil {
			// "." or "/": its contents go straight into the root tree
			if len(targets) > 1 {
				return nil, fmt.Errorf("backup: %q cannot be combined with other paths", t)
			}
			root.target, root.path = true, t
			continue
		}
		last.target = true
	}
	return root, nil
}

// saveRootDir saves the contents of dir as the root tree.
func (a *Archiver) saveRootDir(dir string) *future {
	var prev *tree.Node
	if a.opts.Parent != nil {
		prev = &tree.Node{Type: tree.NodeDir, Subtree: a.opts.Parent}
	}
	node := &tree.Node{Type: tree.NodeDir}
	if fi, err := os.Lstat(dir); err == nil {
		if n, err := fsnode.NodeFromPath(dir, fi, a.opts.NodeOptions); err == nil {
			node.DeviceID = n.DeviceID
		}
	}
	return a.saveDir(dir, node, prev)
}

// saveVirtual saves a virtual directory: its children are intermediate
// directories or targets. The result node's Subtree is the tree ID.
func (a *Archiver) saveVirtual(v *vnode, parent *tree.Tree) *future {
	names := make([]string, 0, len(v.children))
	for n := range v.children {
		names = append(names, n)
	}
	sort.Strings(names)
	var futs []*future
	for _, n := range names {
		c := v.children[n]
		var prev *tree.Node
		if parent != nil {
			prev = parent.Find(n)
		}
		if c.target {
			fi, err := os.Lstat(c.path)
			if err != nil {
				f := newFuture()
				f.resolve(nil, 0, nil)
				_ = a.fileError(c.path, err)
				futs = append(futs, f)
				continue
			}
			futs = append(futs, a.saveEntry(c.path, n, fi, prev))
			continue
		}
		// intermediate directory: metadata from the real directory, its
		// contents only the further path components.
		fi, err := os.Lstat(c.path)
		if err != nil {
			f := newFuture()
			f.resolve(nil, 0, a.fileError(c.path, err))
			futs = append(futs, f)
			continue
		}
		node, err := fsnode.NodeFromPath(c.path, fi, a.opts.NodeOptions)
		if err != nil {
			f := newFuture()
			f.resolve(nil, 0, a.fileError(c.path, err))
			futs = append(futs, f)
			continue
		}
		node.Name = n
		var sub *tree.Tree
		if prev != nil && prev.Type == tree.NodeDir && prev.Subtree != nil {
			sub = a.loadTree(*prev.Subtree)
		}
		inner := a.saveVirtual(c, sub)
		futs = append(futs, a.finishDir(node, prev, []*future{inner}, true))
	}
	dirNode := &tree.Node{Name: "", Type: tree.NodeDir}
	return a.finishDir(dirNode, nil, futs, false)
}

// finishDir waits for children and saves the directory's tree. With
// unwrap, the single child future is a virtual dir whose subtree is used.
func (a *Archiver) finishDir(node *tree.Node, prev *tree.Node, children []*future, unwrap bool) *future {
	f := newFuture()
	go func() {
		var nodes []*tree.Node
		for _, c := range children {
			select {
			case <-c.done:
			case <-a.ctx.Done():
				f.resolve(nil, 0, context.Cause(a.ctx))
				return
			}
			if c.err != nil {
				f.resolve(nil, 0, c.err)
				return
			}
			if unwrap {
				node.Subtree = c.node.Subtree
				continue
			}
			if c.node != nil {
				nodes = append(nodes, c.node)
			}
		}
		if !unwrap {
			buf, err := tree.EncodeTree(nodes)
			if err != nil {
				f.resolve(nil, 0, fmt.Errorf("encode tree: %w", err))
				return
			}
			res, err := a.saveBlob(core.TreeBlob, buf, core.ID{}, 0)
			if err != nil {
				a.fatal(err)
				f.resolve(nil, 0, err)
				return
			}
			if !res.Known {
				a.st.treeBlobs.Add(1)
				a.added(len(buf))
				a.st.dataAddedPacked.Add(uint64(res.Size))
			}
			id := res.ID
			node.Subtree = &id
		}
		status := statusNew
		if prev != nil {
			status = statusChanged
			if prev.Subtree != nil && node.Subtree != nil && *prev.Subtree == *node.Subtree {
				status = statusUnmodified
			}
		}
		if node.Name != "" || unwrap {
			countStatus(status, &a.st.dirsNew, &a.st.dirsChanged, &a.st.dirsUnmodified)
		}
		if a.opts.Progress != nil {
			a.opts.Progress.DirsDone.Add(1)
		}
		f.resolve(node, status, nil)
	}()
	return f
}

// loadTree returns the parent tree id, prefetched if it was (see
// prefetchSubtrees), or nil if it cannot be read.
func (a *Archiver) loadTree(id core.ID) *tree.Tree {
	a.prefetchMu.Lock()
	f, ok := a.prefetched[id]
	if ok {
		delete(a.prefetched, id)
	}
	a.prefetchMu.Unlock()
	if ok {
		<-f.done
		return f.t
	}
	return a.readTree(id)
}

func (a *Archiver) readTree(id core.ID) *tree.Tree {
	buf, err := a.repo.LoadBlob(a.ctx, core.TreeBlob, id, nil)
	if err != nil {
		return nil // parent unreadable: back up as if there were none
	}
	t, err := tree.DecodeTree(buf)
	if err != nil {
		return nil
	}
	return t
}

// saveEntry saves one filesystem entry (file, dir, special) at path.
func (a *Archiver) saveEntry(path, name string, fi os.FileInfo, prev *tree.Node) *future {
	if a.ctx.Err() != nil {
		f := newFuture()
		f.resolve(nil, 0, context.Cause(a.ctx))
		return f
	}
	node, err := fsnode.NodeFromPath(path, fi, a.opts.NodeOptions)
	if err != nil {
		f := newFuture()
		f.resolve(nil, 0, a.fileError(path, err))
		return f
	}
	node.Name = name
	if node.Type == tree.NodeSocket {
		// sockets cannot be restored meaningfully; restic skips them too
		f := newFuture()
		f.resolve(nil, 0, nil)
		return f
	}
	if prev != nil && prev.Type != node.Type {
		prev = nil
	}
	switch node.Type {
	case tree.NodeDir:
		return a.saveDir(path, node, prev)
	case tree.NodeFile:
		if a.opts.Progress != nil {
			a.opts.Progress.FilesTotal.Add(1)
			a.opts.Progress.BytesTotal.Add(node.Size)
		}
		f := newFuture()
		job := &fileJob{path: path, node: node, prev: prev, fut: f}
		if a.unchanged(node, prev) {
			// nothing to read: settle it here instead of handing it to
			// a file worker (an incremental backup is mostly these)
			node.Content = prev.Content
			a.fileDone(job, statusUnmodified)
			f.resolve(node, statusUnmodified, nil)
			return f
		}
		select {
		case a.fileJobs <- job:
		case <-a.ctx.Done():
			f.resolve(nil, 0, context.Cause(a.ctx))
		}
		return f
	default:
		f := newFuture()
		status := statusNew
		if prev != nil {
			status = statusUnmodified
		}
		f.resolve(node, status, nil)
		return f
	}
}

func (a *Archiver) saveDir(path string, node *tree.Node, prev *tree.Node) *future {
	if a.opts.Progress != nil {
		a.opts.Progress.DirsTotal.Add(1)
	}
	entries, err := readDirSorted(path)
	if err != nil {
		// keep the directory itself, record the error
		if ferr := a.fileError(path, err); ferr != nil {
			f := newFuture()
			f.resolve(nil, 0, ferr)
			return f
		}
		node.Error = err.Error()
		return a.finishDir(node, prev, nil, false)
	}
	if a.opts.DirHook != nil {
		if err := a.opts.DirHook.EnterDir(a.ctx, path, entries); err != nil {
			if ferr := a.fileError(path, err); ferr != nil {
				f := newFuture()
				f.resolve(nil, 0, ferr)
				return f
			}
		}
		defer a.opts.DirHook.LeaveDir(path)
	}
	var parentTree *tree.Tree
	if prev != nil && prev.Subtree != nil {
		parentTree = a.loadTree(*prev.Subtree)
	}
	pf := a.prefetchSubtrees(parentTree)
	defer pf.finish()
	devID := node.DeviceID
	children := make([]*future, 0, len(entries))
	for _, name := range entries {
		if a.ctx.Err() != nil {
			break
		}
		p := filepath.Join(path, name)
		fi, err := os.Lstat(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // vanished since the directory was read
			}
			f := newFuture()
			f.resolve(nil, 0, a.fileError(p, err))
			children = append(children, f)
			continue
		}
		if a.opts.Select != nil && !a.opts.Select(p, fi) {
			continue
		}
		if a.opts.OneFileSystem && fi.IsDir() {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && uint64(st.Dev) != devID && devID != 0 {
				continue
			}
		}
		var prevChild *tree.Node
		if parentTree != nil {
			prevChild = parentTree.Find(name)
			if fi.IsDir() {
				pf.reached(prevChild)
			}
		}
		children = append(children, a.saveEntry(p, name, fi, prevChild))
	}
	return a.finishDir(node, prev, children, false)
}

func readDirSorted(path string) ([]string, error) {
	d, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// unchanged reports whether a file can reuse its parent node's content.
func (a *Archiver) unchanged(node, prev *tree.Node) bool {
	if prev == nil || a.opts.Force || prev.Type != tree.NodeFile {
		return false
	}
	if node.Size != prev.Size || !node.ModTime.Equal(prev.ModTime) || !node.ChangeTime.Equal(prev.ChangeTime) || node.Inode != prev.Inode {
		return false
	}
	if prev.Content == nil {
		return false
	}
	idx := a.repo.Index()
	for _, id := range prev.Content {
		if !idx.Has(core.BlobHandle{ID: id, Type: core.DataBlob}) {
			return false // blob missing from the index: read the file again
		}
	}
	return true
}

// workerState is per file worker: a chunker whose 512 KiB read buffer is
// reused from file to file.
type workerState struct {
	cr *chunkReader
}

func (a *Archiver) fileWorker() {
	defer a.fileWorkers.Done()
	st := &workerState{}
	for job := range a.fileJobs {
		if a.ctx.Err() != nil {
			job.fut.resolve(nil, 0, context.Cause(a.ctx))
			continue
		}
		a.processFile(job, st)
	}
}

// countStatus adds one to the counter of status.
func countStatus(status int, isNew, changed, unmodified *atomic.Uint64) {
	switch status {
	case statusNew:
		isNew.Add(1)
	case statusChanged:
		changed.Add(1)
	default:
		unmodified.Add(1)
	}
}

// fileDone counts a finished file.
func (a *Archiver) fileDone(job *fileJob, status int) {
	a.st.filesProcessed.Add(1)
	a.st.bytesProcessed.Add(job.node.Size)
	countStatus(status, &a.st.filesNew, &a.st.filesChanged, &a.st.filesUnmodified)
	if a.opts.Progress != nil {
		a.opts.Progress.FilesDone.Add(1)
		a.opts.Progress.BytesDone.Add(job.node.Size)
	}
}

func (a *Archiver) processFile(job *fileJob, st *workerState) {
	if a.opts.Progress != nil {
		p := job.path
		a.opts.Progress.CurrentFile.Store(&p)
	}
	done := func(status int) { a.fileDone(job, status) }
	content, size, err := a.saveFileContent(job.path, job.prev, st)
	if err != nil {
		if a.ctx.Err() != nil {
			job.fut.resolve(nil, 0, context.Cause(a.ctx))
			return
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			a.fatal(fatal.err)
			job.fut.resolve(nil, 0, fatal.err)
			return
		}
		job.fut.resolve(nil, 0, a.fileError(job.path, err))
		return
	}
	job.node.Content = content
	job.node.Size = size
	status := statusNew
	if job.prev != nil {
		status = statusChanged
		if sameContent(job.prev.Content, content) {
			status = statusUnmodified
		}
	}
	done(status)
	job.fut.resolve(job.node, status, nil)
}

func sameContent(a, b core.IDs) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fatalError marks repository errors (as opposed to file read errors).
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// saveFileContent reads, chunks and saves one file's content.
func (a *Archiver) saveFileContent(path string, prev *tree.Node, st *workerState) (core.IDs, uint64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|oNoAtime, 0)
	if err != nil && oNoAtime != 0 && errors.Is(err, syscall.EPERM) {
		f, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("not a regular file any more")
	}
	if fi.Size() < chunker.MinSize {
		// The chunker never cuts before MinSize: a smaller file is one
		// blob. Read it whole (one byte more, to notice growth).
		buf := getBuf(int(fi.Size()) + 1)
		n, err := io.ReadFull(f, buf)
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = nil
		}
		if err != nil {
			putBuf(buf)
			return nil, 0, err
		}
		if n <= int(fi.Size()) {
			if n == 0 {
				putBuf(buf)
				return core.IDs{}, 0, nil
			}
			id, err := a.saveBlobNow(buf[:n])
			putBuf(buf)
			if err != nil {
				return nil, 0, err
			}
			return core.IDs{id}, uint64(n), nil
		}
		putBuf(buf)
		// the file grew while we read it: chunk it from the start
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, 0, err
		}
	}
	if st.cr == nil {
		cr, err := newChunkReader(a.pol)
		if err != nil {
			return nil, 0, err
		}
		st.cr = cr
	}
	sparse := false
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok && sys.Blocks*512 < fi.Size() {
		sparse = true
	}
	st.cr.reset(f, fi.Size(), sparse, a.hints(prev))
	// Without hints the blob workers hash the chunks: this worker's
	// serial part (read, rolling hash) gets shorter, which is what a
	// large incompressible file waits for.
	st.cr.deferIDs = true
	defer st.cr.close()
	return a.saveChunks(st.cr.next)
}

// saveChunks saves the chunks next returns until io.EOF, in parallel on
// the blob workers (at most ChunksInFlight results pending, each chunk
// holding a chunkSlots slot until it is saved), and returns their IDs in
// order. An error from next is returned as it is; the blob workers' errors
// are *fatalError.
func (a *Archiver) saveChunks(next func() (chunk, error)) (core.IDs, uint64, error) {
	content := core.IDs{}
	var size uint64
	// results preserves chunk order while chunks are saved in parallel.
	var results []chan blobResult
	collect := func(limit int) error {
		var first error
		for len(results) > limit {
			r := <-results[0]
			results = results[1:]
			if r.err != nil && first == nil {
				first = r.err
			}
			if first == nil {
				content = append(content, r.id)
			}
			if first != nil {
				limit = 0 // drain everything on error
			}
		}
		return first
	}
	for {
		select {
		case a.chunkSlots <- struct{}{}:
		case <-a.ctx.Done():
			_ = collect(0)
			return nil, 0, context.Cause(a.ctx)
		}
		ch, err := next()
		if err == io.EOF {
			<-a.chunkSlots
			break
		}
		if err != nil {
			<-a.chunkSlots
			_ = collect(0)
			return nil, 0, err
		}
		size += uint64(len(ch.data))
		res := make(chan blobResult, 1)
		if !ch.needID && !a.opts.DryRun && a.repo.Index().Has(core.BlobHandle{ID: ch.id, Type: core.DataBlob}) {
			// already stored: no need to hand it to a blob worker
			ch.release()
			<-a.chunkSlots
			res <- blobResult{id: ch.id}
		} else {
			job := &blobJob{ch: ch, result: res}
			select {
			case a.blobJobs <- job:
			case <-a.ctx.Done():
				ch.release()
				<-a.chunkSlots
				_ = collect(0)
				return nil, 0, context.Cause(a.ctx)
			}
		}
		results = append(results, res)
		if err := collect(a.opts.ChunksInFlight); err != nil {
			return nil, 0, err
		}
	}
	if err := collect(0); err != nil {
		return nil, 0, err
	}
	return content, size, nil
}

// hints returns the chunks of a file's parent node that can guide the
// chunker (see chunkReader): every chunk but the last (which may have been
// cut by the end of the file rather than by the chunker), as long as the
// index knows their sizes and they could have been cut by the chunker.
func (a *Archiver) hints(prev *tree.Node) []hint {
	if prev == nil || prev.Type != tree.NodeFile || len(prev.Content) < 2 {
		return nil
	}
	idx := a.repo.Index()
	hs := make([]hint, 0, len(prev.Content)-1)
	for _, id := range prev.Content[:len(prev.Content)-1] {
		loc, ok := idx.Lookup(core.BlobHandle{ID: id, Type: core.DataBlob})
		n := int(loc.DataLength())
		if !ok || n < chunker.MinSize || n > chunker.MaxSize {
			break
		}
		hs = append(hs, hint{id: id, size: n})
	}
	return hs
}

// saveBlob stores a blob, or in a dry run only checks whether it is new
// (each new blob counts once). id may be null (then it is computed);
// otherwise sum is its check sum: both come from chunkID.
func (a *Archiver) saveBlob(t core.BlobType, data []byte, id core.ID, sum uint64) (repo.SaveResult, error) {
	if !a.opts.DryRun {
		if id.IsNull() {
			return a.repo.SaveBlob(a.ctx, t, data, id, false)
		}
		return a.repo.SaveBlobSum(a.ctx, t, data, id, sum, false)
	}
	if id.IsNull() {
		id = core.Hash(data)
	}
	h := core.BlobHandle{ID: id, Type: t}
	if a.repo.Index().Has(h) {
		return repo.SaveResult{ID: id, Known: true}, nil
	}
	a.dryMu.Lock()
	defer a.dryMu.Unlock()
	if a.drySeen.Has(h) {
		return repo.SaveResult{ID: id, Known: true}, nil
	}
	a.drySeen.Insert(h)
	return repo.SaveResult{ID: id, Size: len(data)}, nil
}

// saveBlobNow saves one chunk in the calling goroutine.
func (a *Archiver) saveBlobNow(data []byte) (core.ID, error) {
	id, sum := chunkID(data)
	return id, a.saveData(data, id, sum)
}

// added counts n bytes of new blob data.
func (a *Archiver) added(n int) { a.st.dataAdded.Add(uint64(n)) }

// saveData saves a data blob whose ID and check sum (chunkID) are id and sum.
func (a *Archiver) saveData(data []byte, id core.ID, sum uint64) error {
	res, err := a.saveBlob(core.DataBlob, data, id, sum)
	if err != nil {
		return &fatalError{err: err}
	}
	if !res.Known {
		a.st.dataBlobs.Add(1)
		a.added(len(data))
		a.st.dataAddedPacked.Add(uint64(res.Size))
	}
	return nil
}

func (a *Archiver) blobWorker() {
	defer a.blobWorkers.Done()
	var h hashLanes
	// on cancellation: fail the chunks in the lanes, and drain without
	// work so that senders never block forever
	cancelled := func() {
		h.abandon(a)
		for job := range a.blobJobs {
			job.fail(a, context.Cause(a.ctx))
		}
	}
	for {
		// Wait for a job only with no chunk half hashed: a pending
		// chunk's result may be what the file's reader waits for.
		var job *blobJob
		ok := true
		if h.pending() {
			select {
			case job, ok = <-a.blobJobs:
			case <-a.ctx.Done():
				cancelled()
				return
			default:
				h.finishAlone(a)
				continue
			}
		} else {
			select {
			case job, ok = <-a.blobJobs:
			case <-a.ctx.Done():
				cancelled()
				return
			}
		}
		if !ok {
			h.finishAlone(a)
			return
		}
		if !job.ch.needID || isZeroChunk(job.ch.data) {
			a.saveChunk(job) // nothing to hash, or a cached zero ID
			continue
		}
		h.add(a, job)
	}
}

// fail releases a job's chunk and reports err as its result.
func (job *blobJob) fail(a *Archiver, err error) {
	job.ch.release()
	<-a.chunkSlots
	job.result <- blobResult{err: err}
}

func (a *Archiver) saveChunk(job *blobJob) {
	if job.ch.needID {
		job.ch.id, job.ch.sum = chunkID(job.ch.data)
		job.ch.needID = false
		if !a.opts.DryRun && a.repo.Index().Has(core.BlobHandle{ID: job.ch.id, Type: core.DataBlob}) {
			// already stored: nothing to save
			job.ch.release()
			<-a.chunkSlots
			job.result <- blobResult{id: job.ch.id}
			return
		}
	}
	err := a.saveData(job.ch.data, job.ch.id, job.ch.sum)
	job.ch.release() // SaveBlob has copied the data into a pack
	<-a.chunkSlots
	job.result <- blobResult{id: job.ch.id, err: err}
}

func getBuf(n int) []byte { return bufpool.Get(n) }
func putBuf(b []byte)     { bufpool.Put(b) }
