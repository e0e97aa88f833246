// Package local stores a repository in a directory of the local file system,
// using restic's layout (config, data/xx/<id>, index/<id>, keys/<id>,
// locks/<id>, snapshots/<id>).
//
// Files are written durably and atomically: the body goes to a temporary
// file "<name>-tmp-<random>" in the target directory, its length is checked
// against the reader's, it is fsynced, made read-only, and then published
// under its final name with a rename that refuses to replace an existing
// file, after which the directory is fsynced.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/failpoint"
)

// Default modes; the group variants are used when the repository's config
// is group-readable.
const (
	defaultDirMode  os.FileMode = 0o700
	defaultFileMode os.FileMode = 0o600
	groupDirMode    os.FileMode = 0o770
	groupFileMode   os.FileMode = 0o660
)

// tempMarker separates the final name from the random suffix of a
// temporary file.
const tempMarker = "-tmp-"

// Backend is a repository in a local directory.
type Backend struct {
	dir      string
	dirMode  os.FileMode
	fileMode os.FileMode
	// publishers are the publish strategies, best first (see
	// defaultPublishers); fixed after construction.
	publishers []func(tmp, final string) error
	// strategy indexes the first entry of publishers still believed to
	// work on this file system; accessed atomically.
	strategy atomic.Int32
	// fsyncFile and fsyncDir make a file's data and a directory's entries
	// durable (f.Sync and syncDir). They are the seam through which tests
	// record the order of the durability steps; fixed after construction.
	fsyncFile func(f *os.File) error
	fsyncDir  func(dir string) error
}

// newBackend returns a backend for the absolute path dir with the default
// modes, publish strategies and sync calls.
func newBackend(dir string) *Backend {
	return &Backend{
		dir:        dir,
		dirMode:    defaultDirMode,
		fileMode:   defaultFileMode,
		publishers: defaultPublishers(),
		fsyncFile:  (*os.File).Sync,
		fsyncDir:   syncDir,
	}
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Creator = (*Backend)(nil)
)

// Open opens the repository in dir, which must exist.
func Open(ctx context.Context, dir string) (*Backend, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open local repository %s: %w", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open local repository %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open local repository %s: directory does not exist: %w", abs, backend.ErrNotExist)
		}
		return nil, fmt.Errorf("open local repository %s: %w", abs, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open local repository %s: not a directory", abs)
	}
	b := newBackend(abs)
	b.deriveModes()
	return b, nil
}

// Create creates dir (if needed) and every directory of the repository
// layout, and returns the backend. It does not fail if the directories
// already exist: whether a repository is already there is decided by the
// config file, which Save never overwrites.
func Create(ctx context.Context, dir string) (*Backend, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("create local repository %s: %w", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("create local repository %s: %w", dir, err)
	}
	b := newBackend(abs)
	if err := os.MkdirAll(abs, b.dirMode); err != nil {
		return nil, fmt.Errorf("create local repository %s: %w", abs, classify(err))
	}
	b.deriveModes()
	if err := b.Create(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// deriveModes switches to group-accessible modes when the existing config
// is group-readable, as restic does.
func (b *Backend) deriveModes() {
	fi, err := os.Stat(filepath.Join(b.dir, "config"))
	if err != nil {
		return
	}
	if fi.Mode().Perm()&0o040 != 0 {
		b.dirMode, b.fileMode = groupDirMode, groupFileMode
	}
}

// Create implements backend.Creator: it creates every layout directory and
// makes their creation durable.
func (b *Backend) Create(ctx context.Context) error {
	for _, d := range backend.Dirs() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("create local repository %s: %w", b.dir, err)
		}
		p := filepath.Join(b.dir, filepath.FromSlash(d))
		if err := os.Mkdir(p, b.dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create local repository %s: %w", b.dir, classify(err))
		}
	}
	// Make the new directory entries durable: each parent that received
	// new entries, then the root's own entry.
	for _, d := range []string{"data", "."} {
		if err := b.fsyncDir(filepath.Join(b.dir, d)); err != nil {
			return fmt.Errorf("create local repository %s: %w", b.dir, err)
		}
	}
	if err := b.fsyncDir(filepath.Dir(b.dir)); err != nil {
		return fmt.Errorf("create local repository %s: %w", b.dir, err)
	}
	return nil
}

// Location implements backend.Backend.
func (b *Backend) Location() string { return "local:" + b.dir }

// Connections implements backend.Backend.
func (b *Backend) Connections() uint { return 2 }

// Close implements backend.Backend.
func (b *Backend) Close() error { return nil }

// Dir returns the repository directory (absolute).
func (b *Backend) Dir() string { return b.dir }

func (b *Backend) filename(h backend.Handle) string {
	return filepath.Join(b.dir, filepath.FromSlash(backend.Path(h)))
}

// classify maps a file-system error to the backend's sentinel errors while
// keeping the original error in the chain.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &noSpaceError{err: err}
	}
	return err
}

// noSpaceError wraps a disk-full or quota error so that it matches both
// backend.ErrNoSpace and the underlying errno.
type noSpaceError struct{ err error }

func (e *noSpaceError) Error() string {
	return "no space left on the repository's file system (disk full or quota exceeded): " + e.err.Error()
}
func (e *noSpaceError) Unwrap() []error { return []error{backend.ErrNoSpace, e.err} }

func randomSuffix() (string, error) {
	var buf [8]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(buf[:]), nil
}

// checkCall validates the handle and the context at the start of the
// operation op on h.
func checkCall(ctx context.Context, op string, h backend.Handle) error {
	err := h.Valid()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("%s %v: %w", op, h, err)
	}
	return nil
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	if err := checkCall(ctx, "save", h); err != nil {
		return err
	}
	final := b.filename(h)
	dir := filepath.Dir(final)
	// Fail fast without uploading; publish re-checks atomically.
	if _, err := os.Lstat(final); err == nil {
		return fmt.Errorf("save %v: %w", h, backend.ErrAlreadyExists)
	}

	f, tmp, createdDir, err := b.createTemp(dir, filepath.Base(final))
	if err != nil {
		return fmt.Errorf("save %v: create temporary file: %w", h, classify(err))
	}
	published := false
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		if !published {
			_ = os.Remove(tmp)
		}
	}()

	want := rd.Length()
	n, err := io.Copy(f, io.LimitReader(backend.NewCtxReader(ctx, rd), want+1))
	if err != nil {
		return fmt.Errorf("save %v: write: %w", h, classify(err))
	}
	if n < want {
		return fmt.Errorf("save %v: reader ended after %d bytes, want %d", h, n, want)
	}
	if n > want {
		return fmt.Errorf("save %v: reader delivered more than the %d bytes it announced", h, want)
	}
	// commit closes f.
	ff := f
	f = nil
	published, err = b.commit(ctx, h, ff, tmp, createdDir)
	return err
}

// commit makes the complete temporary file f, named tmp, durable and
// visible as h, in this order: fsync f, clear its write bits, close it,
// create h's directory if missing, rename tmp to h's name without
// replacing an existing file, fsync that directory, and, if the directory
// was created for this file (createdDir, or here), fsync its parent too.
// It closes f in every case; published reports whether tmp was renamed, so
// that the caller removes it otherwise.
func (b *Backend) commit(ctx context.Context, h backend.Handle, f *os.File, tmp string, createdDir bool) (published bool, err error) {
	defer func() {
		if f != nil {
			_ = f.Close()
		}
	}()
	if err := b.fsyncFile(f); err != nil {
		return false, fmt.Errorf("save %v: fsync: %w", h, classify(err))
	}
	if h.Type == core.PackFile {
		dropCached(f) // clean after the fsync, so the pages go now
	}
	if err := failpoint.Inject("upload.after-temp-write"); err != nil {
		return false, fmt.Errorf("save %v: %w", h, err)
	}
	// Clear the write bits before publishing, so the file never appears
	// writable under its final name. Some file systems (FUSE, CIFS) do not
	// support modes; that is not an error for the data.
	if err := f.Chmod(b.fileMode &^ 0o222); err != nil && !chmodUnsupported(err) {
		return false, fmt.Errorf("save %v: chmod: %w", h, err)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return false, fmt.Errorf("save %v: close: %w", h, classify(cerr))
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("save %v: %w", h, err)
	}
	final := b.filename(h)
	dir := filepath.Dir(final)
	if filepath.Dir(tmp) != dir {
		// An adopted file may come from another directory.
		if _, err := os.Stat(dir); err != nil {
			if err := b.mkdirLayout(dir); err != nil {
				return false, fmt.Errorf("save %v: %w", h, classify(err))
			}
			createdDir = true
		}
	}
	if err := failpoint.Inject("upload.before-rename"); err != nil {
		return false, fmt.Errorf("save %v: %w", h, err)
	}
	if err := b.publish(tmp, final); err != nil {
		return false, fmt.Errorf("save %v: %w", h, err)
	}
	if err := failpoint.Inject("upload.after-rename"); err != nil {
		return true, fmt.Errorf("save %v: %w", h, err)
	}
	if err := b.fsyncDir(dir); err != nil {
		return true, fmt.Errorf("save %v: %w", h, err)
	}
	if createdDir {
		if err := b.fsyncDir(filepath.Dir(dir)); err != nil {
			return true, fmt.Errorf("save %v: %w", h, err)
		}
	}
	return true, nil
}

// createTemp creates a new temporary file for base in dir, creating dir
// (but never the repository root) if it is missing.
func (b *Backend) createTemp(dir, base string) (f *os.File, name string, createdDir bool, err error) {
	for attempt := 0; attempt < 3; attempt++ {
		suffix, err := randomSuffix()
		if err != nil {
			return nil, "", false, err
		}
		name = filepath.Join(dir, base+tempMarker+suffix)
		f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, b.fileMode)
		switch {
		case err == nil:
			return f, name, createdDir, nil
		case errors.Is(err, fs.ErrExist):
			continue
		case errors.Is(err, fs.ErrNotExist) && dir != b.dir && !createdDir:
			if err := b.mkdirLayout(dir); err != nil {
				return nil, "", false, err
			}
			createdDir = true
		default:
			return nil, "", false, err
		}
	}
	return nil, "", false, fmt.Errorf("cannot create a temporary file in %s", dir)
}

// mkdirLayout creates dir and its parents below the repository root. The
// root itself must exist: a vanished repository is an error, not something
// to recreate silently.
func (b *Backend) mkdirLayout(dir string) error {
	rel, err := filepath.Rel(b.dir, dir)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("directory %s is outside the repository", dir)
	}
	p := b.dir
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		p = filepath.Join(p, part)
		if err := os.Mkdir(p, b.dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

// publish moves tmp to final without ever replacing an existing final.
func (b *Backend) publish(tmp, final string) error {
	for {
		s := b.strategy.Load()
		err := b.publishers[s](tmp, final)
		if errors.Is(err, errUnsupported) && int(s) < len(b.publishers)-1 {
			b.strategy.CompareAndSwap(s, s+1)
			continue
		}
		return err
	}
}

// defaultPublishers are the publish strategies, best first: an atomic
// no-replace rename, a hard link (atomic, fails if the name exists), and a
// checked rename for file systems that support neither.
func defaultPublishers() []func(tmp, final string) error {
	return []func(tmp, final string) error{renameNoReplace, publishByLink, publishByCheckedRename}
}

// errUnsupported reports that a publish strategy does not work on this
// file system.
var errUnsupported = errors.New("operation not supported by the file system")

func errnoIn(err error, errnos ...syscall.Errno) bool {
	for _, e := range errnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// renameUnsupported: RENAME_NOREPLACE is not implemented by the kernel or
// the file system.
func renameUnsupported(err error) bool {
	return errnoIn(err, syscall.EINVAL, syscall.ENOSYS, syscall.ENOTSUP, syscall.EOPNOTSUPP)
}

// linkUnsupported: the file system has no hard links (Linux reports EPERM).
func linkUnsupported(err error) bool {
	return errnoIn(err, syscall.EPERM, syscall.ENOSYS, syscall.ENOTSUP, syscall.EOPNOTSUPP)
}

// chmodUnsupported: the file system does not keep Unix modes.
func chmodUnsupported(err error) bool {
	return errnoIn(err, syscall.EPERM, syscall.ENOSYS, syscall.ENOTSUP, syscall.EOPNOTSUPP)
}

// dirSyncUnsupported: the file system cannot fsync directories.
func dirSyncUnsupported(err error) bool {
	return errnoIn(err, syscall.EINVAL, syscall.ENOSYS, syscall.ENOTSUP, syscall.EOPNOTSUPP)
}

// publishByLink hard-links tmp to final (link fails if final exists) and
// then removes tmp.
func publishByLink(tmp, final string) error {
	err := os.Link(tmp, final)
	switch {
	case err == nil:
		// The file is published; a leftover temp name is only garbage that
		// RemoveStaleTemp collects.
		_ = os.Remove(tmp)
		return nil
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("publish: %w", backend.ErrAlreadyExists)
	case linkUnsupported(err):
		return fmt.Errorf("publish by link: %w (%w)", errUnsupported, err)
	}
	return fmt.Errorf("publish: %w", classify(err))
}

// publishByCheckedRename is the last resort for file systems with neither
// RENAME_NOREPLACE nor hard links: it checks that final does not exist and
// renames. Two writers racing on the same name may both succeed; since names
// are content hashes, both then wrote the same bytes.
func publishByCheckedRename(tmp, final string) error {
	if _, err := os.Lstat(final); err == nil {
		return fmt.Errorf("publish: %w", backend.ErrAlreadyExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("publish: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("publish: %w", classify(err))
	}
	return nil
}

// syncDir fsyncs a directory so that entries created in it are durable.
// File systems that cannot sync directories are tolerated.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	err = d.Sync()
	cerr := d.Close()
	if err != nil && !dirSyncUnsupported(err) {
		return fmt.Errorf("fsync directory %s: %w", dir, classify(err))
	}
	if cerr != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, cerr)
	}
	return nil
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if err := backend.CheckLoad(h, length, offset); err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	f, err := os.Open(b.filename(h))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("load %v: %w", h, backend.ErrNotExist)
		}
		return fmt.Errorf("load %v: %w", h, err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("load %v: not a regular file", h)
	}
	n, err := backend.LoadRange(fi.Size(), length, offset)
	if err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	rd := backend.NewCtxReader(ctx, io.NewSectionReader(f, offset, n))
	if err := fn(rd); err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	return nil
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := checkCall(ctx, "stat", h); err != nil {
		return backend.FileInfo{}, err
	}
	fi, err := b.statFile(h)
	if err != nil {
		return backend.FileInfo{}, err
	}
	if !fi.Mode().IsRegular() {
		return backend.FileInfo{}, fmt.Errorf("stat %v: not a regular file", h)
	}
	return backend.FileInfo{Name: h.Name, Size: fi.Size()}, nil
}

// Remove implements backend.Backend. A missing file is success.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := checkCall(ctx, "remove", h); err != nil {
		return err
	}
	name := b.filename(h)
	err := os.Remove(name)
	if err != nil && (errors.Is(err, fs.ErrPermission)) {
		// Some systems refuse to unlink read-only files: make it writable
		// and try again.
		if cerr := os.Chmod(name, b.fileMode); cerr == nil {
			err = os.Remove(name)
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // already gone: success (idempotent)
		}
		return fmt.Errorf("remove %v: %w", h, err)
	}
	// Make the removal durable before reporting it: prune deletes an
	// index file before the packs it listed, and after a power loss that
	// order must hold on disk too (a pack gone while an index file
	// listing it came back would be a missing pack).
	if err := b.fsyncDir(filepath.Dir(name)); err != nil {
		return fmt.Errorf("remove %v: sync directory: %w", h, err)
	}
	return nil
}

// List implements backend.Backend. Temporary files, names that are not
// valid IDs, pack files outside their data/xx directory and anything that
// is not a regular file are skipped; a missing type directory lists as
// empty; any other error is returned.
func (b *Backend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %v: %w", t, err)
	}
	switch t {
	case core.ConfigFile:
		fi, err := os.Stat(filepath.Join(b.dir, "config"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("list %v: %w", t, err)
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		return fn(backend.FileInfo{Name: "", Size: fi.Size()})
	case core.PackFile:
		base := filepath.Join(b.dir, t.String())
		var subdirs []string
		err := readDir(ctx, base, func(e fs.DirEntry) error {
			if e.IsDir() && isHexPrefix(e.Name()) {
				subdirs = append(subdirs, e.Name())
			}
			return nil
		})
		if errors.Is(err, errDirMissing) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %v: %w", t, err)
		}
		for _, sub := range subdirs {
			err := b.listDir(ctx, filepath.Join(base, sub), sub, fn)
			if err != nil && !errors.Is(err, errDirMissing) {
				return fmt.Errorf("list %v: %w", t, err)
			}
		}
		return nil
	case core.IndexFile, core.KeyFile, core.LockFile, core.SnapshotFile:
		err := b.listDir(ctx, filepath.Join(b.dir, t.String()), "", fn)
		if err != nil && !errors.Is(err, errDirMissing) {
			return fmt.Errorf("list %v: %w", t, err)
		}
		return nil
	}
	return fmt.Errorf("list: invalid file type %v", t)
}

func isHexPrefix(s string) bool {
	return len(s) == 2 && core.IsValidName(s+strings.Repeat("0", 62))
}

// listDir reports the valid files of dir. If prefix is set, names must
// start with it. errDirMissing is returned if dir itself is missing; errors
// from fn are returned unchanged.
func (b *Backend) listDir(ctx context.Context, dir, prefix string, fn func(backend.FileInfo) error) error {
	return readDir(ctx, dir, func(e fs.DirEntry) error {
		name := e.Name()
		if !core.IsValidName(name) || !strings.HasPrefix(name, prefix) || !e.Type().IsRegular() {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// Removed since the directory was read.
				return nil
			}
			return fmt.Errorf("stat %s: %w", filepath.Join(dir, name), err)
		}
		return fn(backend.FileInfo{Name: name, Size: fi.Size()})
	})
}

// errDirMissing is returned by readDir when the directory does not exist.
// It deliberately does not wrap fs.ErrNotExist, so that it cannot be
// confused with an error returned by a callback.
var errDirMissing = errors.New("directory does not exist")

// readDir streams the entries of dir to fn in batches and stops at the
// first error fn returns, which it returns unchanged.
func readDir(ctx context.Context, dir string, fn func(fs.DirEntry) error) error {
	d, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errDirMissing
		}
		return fmt.Errorf("read directory: %w", err)
	}
	defer func() { _ = d.Close() }()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		entries, err := d.ReadDir(1024)
		for _, e := range entries {
			if ferr := fn(e); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read directory %s: %w", dir, err)
		}
	}
}

// RemoveStaleTemp deletes temporary files left behind by crashed writers
// whose modification time is older than olderThan, and returns how many it
// removed. Pass an age comfortably larger than any upload can take: a
// younger temporary file may belong to a live writer.
func (b *Backend) RemoveStaleTemp(ctx context.Context, olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	dirs := []string{b.dir}
	for _, d := range backend.Dirs() {
		dirs = append(dirs, filepath.Join(b.dir, filepath.FromSlash(d)))
	}
	removed := 0
	for _, dir := range dirs {
		err := readDir(ctx, dir, func(e fs.DirEntry) error {
			if !isTempName(e.Name()) || !e.Type().IsRegular() {
				return nil
			}
			p := filepath.Join(dir, e.Name())
			fi, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return fmt.Errorf("stat %s: %w", p, err)
			}
			if !fi.ModTime().Before(cutoff) {
				return nil
			}
			if err := os.Remove(p); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			removed++
			return nil
		})
		// A missing directory (data/xx are created on demand) holds nothing.
		if err != nil && !errors.Is(err, errDirMissing) {
			return removed, fmt.Errorf("remove stale temporary files: %w", err)
		}
	}
	return removed, nil
}

// isTempName reports whether name is "<id or config>-tmp-<suffix>".
func isTempName(name string) bool {
	i := strings.Index(name, tempMarker)
	if i < 0 || i+len(tempMarker) == len(name) {
		return false
	}
	base := name[:i]
	return base == "config" || core.IsValidName(base)
}

// zeroName prefixes temporary files made by CreateTemp, so that they look
// like every other temporary file ("<id>-tmp-<random>"): never listed,
// and removed by RemoveStaleTemp.
const zeroName = "0000000000000000000000000000000000000000000000000000000000000000"

var _ backend.FileAdopter = (*Backend)(nil)

// CreateTemp implements backend.FileAdopter.
func (b *Backend) CreateTemp(t core.FileType) (*os.File, error) {
	dir := filepath.Join(b.dir, t.String())
	if t == core.ConfigFile {
		dir = b.dir
	}
	f, _, _, err := b.createTemp(dir, zeroName)
	if err != nil {
		return nil, fmt.Errorf("create temporary %v file: %w", t, classify(err))
	}
	return f, nil
}

// Adopt implements backend.FileAdopter.
func (b *Backend) Adopt(ctx context.Context, h backend.Handle, f *os.File) (err error) {
	tmp := f.Name()
	published := false
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		if !published {
			_ = os.Remove(tmp)
		}
	}()
	if err := checkCall(ctx, "save", h); err != nil {
		return err
	}
	ff := f
	f = nil
	published, err = b.commit(ctx, h, ff, tmp, false)
	return err
}

// ModTime returns the modification time of h: how long a file has existed,
// by this machine's clock (used to judge lock age without trusting the
// writer's clock, H03).
func (b *Backend) ModTime(ctx context.Context, h backend.Handle) (time.Time, error) {
	if err := h.Valid(); err != nil {
		return time.Time{}, err
	}
	fi, err := b.statFile(h)
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

// statFile stats the file of h (following links), reporting a missing
// file as backend.ErrNotExist.
func (b *Backend) statFile(h backend.Handle) (fs.FileInfo, error) {
	fi, err := os.Stat(b.filename(h))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("stat %v: %w", h, backend.ErrNotExist)
		}
		return nil, fmt.Errorf("stat %v: %w", h, err)
	}
	return fi, nil
}
