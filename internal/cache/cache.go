// Package cache keeps local copies of a repository's metadata files (index
// files, snapshot files and packs holding tree blobs) so that they are read
// from the network once.
//
// Layout (restic's, see docs/restic-format.md §11):
//
//	<base>/CACHEDIR.TAG
//	<base>/<repository config ID>/version      ("1")
//	<base>/<repository config ID>/index/xx/<id>
//	<base>/<repository config ID>/snapshots/xx/<id>
//	<base>/<repository config ID>/data/xx/<id>
//
// Cached files are byte copies of the repository files, so they stay
// encrypted. The base directory is --cache-dir, else $CAIRN_CACHE_DIR, else
// os.UserCacheDir()/cairn ($XDG_CACHE_HOME/cairn or ~/.cache/cairn on
// Linux). It is deliberately not restic's cache directory: the two programs
// may not agree on the cache format, so they must not share one.
//
// Many processes may share one cache. Every entry is written to a temporary
// file in its final directory, fsynced and renamed into place, so a reader
// never sees a partial file; every entry is verified against its name (the
// SHA-256 of its content) before it is used, and a damaged entry is deleted
// and fetched again. Removing entries, or the whole directory, while
// processes run is allowed: missing directories are recreated on the next
// write and reads fall back to the repository. The cache is never the
// source of truth: its errors are logged, never returned to the caller.
package cache

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
)

// Version is the cache layout version written to the version file.
const Version = 1

// DefaultMaxAge is the age after which a repository's cache directory
// counts as old (restic's MaxCacheAge).
const DefaultMaxAge = 30 * 24 * time.Hour

// TagSignature is the first line of a CACHEDIR.TAG file
// (https://bford.info/cachedir/).
const TagSignature = "Signature: 8a477f597d28d172789f06886806bc55"

const (
	tagFileName     = "CACHEDIR.TAG"
	versionFileName = "version"
	tagContent      = TagSignature + "\n# This file is a cache directory tag created by cairn.\n# For information about cache directory tags, see https://bford.info/cachedir/\n"
	// tempPrefix starts the names of files being written. No cache entry
	// has such a name (entries are 64 hex characters).
	tempPrefix = ".tmp-"
	// staleTempAge is how old a temporary file must be before clean-up
	// removes it: younger ones may belong to a writer still running.
	staleTempAge = time.Hour
	// evictGrace protects entries written shortly before a listing started
	// from being evicted by it (clock granularity of file times).
	evictGrace = 2 * time.Second
	dirMode    = 0o700
	fileMode   = 0o644
)

// ErrNewerVersion means the cache directory was written by a newer,
// incompatible version.
var ErrNewerVersion = errors.New("cache version is newer")

// errCorrupt marks an entry whose content does not match its name.
var errCorrupt = errors.New("cached file does not match its ID")

// DefaultDir returns the default base directory: $CAIRN_CACHE_DIR, else
// os.UserCacheDir()/cairn.
func DefaultDir() (string, error) {
	if d := os.Getenv("CAIRN_CACHE_DIR"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache: find the default cache directory: %w", err)
	}
	return filepath.Join(d, "cairn"), nil
}

// Options tune a Cache.
type Options struct {
	// Logf receives warnings about cache problems (which never fail an
	// operation). Nil discards them.
	Logf func(format string, args ...any)
}

// Cache is one repository's directory in a cache base directory. It is safe
// for concurrent use, also by several processes sharing the directory.
type Cache struct {
	base string
	path string
	logf func(format string, args ...any)

	mu sync.Mutex // guards verified
	// verified holds, per entry path, the identity (inode, size, times) of
	// the file last verified against its name; an open file with the same
	// identity need not be hashed again.
	verified map[string]fileIdent
}

// IsRepoDirName reports whether name can be a repository's cache directory
// (a repository config ID: 64 hex characters).
func IsRepoDirName(name string) bool {
	if len(name) != 2*core.IDSize {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// New opens (creating it if needed) the cache directory of the repository
// with config ID repoID under base ("" means DefaultDir), and marks it as
// used now.
func New(base, repoID string, opts Options) (*Cache, error) {
	if !IsRepoDirName(repoID) {
		return nil, fmt.Errorf("cache: repository ID %q is not 64 hex characters", repoID)
	}
	if base == "" {
		d, err := DefaultDir()
		if err != nil {
			return nil, err
		}
		base = d
	}
	abs, err := filepath.Abs(base)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c := &Cache{
		base:     abs,
		path:     filepath.Join(abs, repoID),
		logf:     logf,
		verified: make(map[string]fileIdent),
	}
	if err := c.ensureLayout(); err != nil {
		return nil, err
	}
	now := time.Now()
	if err := os.Chtimes(c.path, now, now); err != nil {
		return nil, fmt.Errorf("cache: mark %s as used: %w", c.path, err)
	}
	return c, nil
}

// Base returns the base directory.
func (c *Cache) Base() string { return c.base }

// Path returns the repository's cache directory.
func (c *Cache) Path() string { return c.path }

// ParseVersion decodes the content of a version file.
func ParseVersion(b []byte) (int, error) {
	s := strings.TrimSpace(string(b))
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("cache: invalid version file content %q", truncate(s, 20))
	}
	return v, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// ensureLayout creates the base directory, its CACHEDIR.TAG, the
// repository directory and its version file where they are missing. It is
// idempotent and safe to run concurrently, from several processes too.
func (c *Cache) ensureLayout() error {
	if err := os.MkdirAll(c.base, dirMode); err != nil {
		return fmt.Errorf("cache: create %s: %w", c.base, err)
	}
	if _, err := os.Lstat(filepath.Join(c.base, tagFileName)); errors.Is(err, fs.ErrNotExist) {
		if err := c.writeMeta(c.base, tagFileName, []byte(tagContent)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(c.path, dirMode); err != nil {
		return fmt.Errorf("cache: create %s: %w", c.path, err)
	}
	vf := filepath.Join(c.path, versionFileName)
	b, err := readRegular(vf)
	if err == nil {
		v, perr := ParseVersion(b)
		switch {
		case perr == nil && v > Version:
			return fmt.Errorf("cache %s: version %d, this cairn knows %d: %w", c.path, v, Version, ErrNewerVersion)
		case perr == nil:
			return nil
		}
		// An unreadable version file is rewritten: the entries are checked
		// against their names anyway.
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cache: read %s: %w", vf, err)
	}
	return c.writeMeta(c.path, versionFileName, []byte(strconv.Itoa(Version)))
}

// readRegular reads a small file, refusing anything but a regular file
// (a FIFO in its place must not block us).
func readRegular(p string) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	return io.ReadAll(io.LimitReader(f, 1<<10))
}

// writeMeta atomically writes a small layout file.
func (c *Cache) writeMeta(dir, name string, content []byte) error {
	return c.createAtomic(dir, name, false, func(w io.Writer, _ func() error) error {
		_, err := w.Write(content)
		return err
	}, nil)
}

// cacheable reports whether files of type t are kept in the cache.
func cacheable(t core.FileType) bool {
	return t == core.PackFile || t == core.IndexFile || t == core.SnapshotFile
}

func cacheableHandle(h backend.Handle) bool {
	return cacheable(h.Type) && core.IsValidName(h.Name)
}

func (c *Cache) typeDir(t core.FileType) string { return filepath.Join(c.path, t.String()) }

func (c *Cache) filename(h backend.Handle) string {
	return filepath.Join(c.typeDir(h.Type), h.Name[:2], h.Name)
}

// Has reports whether an entry for h exists (without verifying it).
func (c *Cache) Has(h backend.Handle) bool {
	if !cacheableHandle(h) {
		return false
	}
	fi, err := os.Lstat(c.filename(h))
	return err == nil && fi.Mode().IsRegular()
}

// Evict deletes the entry for h. A missing entry is success.
func (c *Cache) Evict(h backend.Handle) error {
	if !cacheableHandle(h) {
		return nil
	}
	p := c.filename(h)
	c.forget(p)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cache: evict %v: %w", h, err)
	}
	return nil
}

func (c *Cache) forget(p string) {
	c.mu.Lock()
	delete(c.verified, p)
	c.mu.Unlock()
}

// discard deletes the entry at p if it is still the file described by fi
// (another process may have replaced it with a good copy meanwhile).
func (c *Cache) discard(p string, fi os.FileInfo) {
	c.forget(p)
	cur, err := os.Lstat(p)
	if err != nil || !os.SameFile(cur, fi) {
		return
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.logf("cache: remove damaged entry %s: %v\n", p, err)
	}
}

// load returns the verified content of the entry for h. A missing entry
// returns an error wrapping fs.ErrNotExist; a damaged one is deleted and
// reported as errCorrupt.
func (c *Cache) load(h backend.Handle) ([]byte, error) {
	p := c.filename(h)
	f, err := os.OpenFile(p, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, fmt.Errorf("cache: open %v: %w", h, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cache: stat %v: %w", h, err)
	}
	if !fi.Mode().IsRegular() {
		c.discard(p, fi)
		return nil, fmt.Errorf("cache: %v is not a regular file: %w", h, errCorrupt)
	}
	buf := make([]byte, 0, fi.Size()+bytes.MinRead)
	w := bytes.NewBuffer(buf)
	if _, err := w.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("cache: read %v: %w", h, err)
	}
	if core.Hash(w.Bytes()).String() != h.Name {
		c.discard(p, fi)
		return nil, fmt.Errorf("cache: %v: %w (deleted)", h, errCorrupt)
	}
	return w.Bytes(), nil
}

// openVerified opens the entry for h and makes sure its content matches
// its name, hashing it unless this very file (same identity) was verified
// before. The caller closes the file.
func (c *Cache) openVerified(h backend.Handle) (*os.File, fileIdent, error) {
	p := c.filename(h)
	f, err := os.OpenFile(p, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, fileIdent{}, fmt.Errorf("cache: open %v: %w", h, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fileIdent{}, fmt.Errorf("cache: stat %v: %w", h, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		c.discard(p, fi)
		return nil, fileIdent{}, fmt.Errorf("cache: %v is not a regular file: %w", h, errCorrupt)
	}
	id := identOf(fi)
	c.mu.Lock()
	known, ok := c.verified[p]
	c.mu.Unlock()
	if ok && known == id {
		return f, id, nil
	}
	hasher := sha256.New()
	if _, err := io.Copy(hasher, io.NewSectionReader(f, 0, fi.Size())); err != nil {
		f.Close()
		return nil, fileIdent{}, fmt.Errorf("cache: read %v: %w", h, err)
	}
	if fmt.Sprintf("%x", hasher.Sum(nil)) != h.Name {
		f.Close()
		c.discard(p, fi)
		return nil, fileIdent{}, fmt.Errorf("cache: %v: %w (deleted)", h, errCorrupt)
	}
	after, err := f.Stat()
	if err != nil || identOf(after) != id {
		// changed while it was being hashed: trust nothing
		f.Close()
		return nil, fileIdent{}, fmt.Errorf("cache: %v changed while being verified", h)
	}
	c.mu.Lock()
	c.verified[p] = id
	c.mu.Unlock()
	return f, id, nil
}

// stillVerified reports whether the open file f still has identity id
// (nobody modified it in place since it was verified).
func (c *Cache) stillVerified(f *os.File, id fileIdent) bool {
	fi, err := f.Stat()
	return err == nil && identOf(fi) == id
}

// put stores an entry for h whose content produce writes to w. produce may
// call restart to discard what it wrote so far (a retried download). The
// content must hash to h.Name, else nothing is stored and the error wraps
// errCorrupt.
func (c *Cache) put(h backend.Handle, produce func(w io.Writer, restart func() error) error) error {
	dir := filepath.Dir(c.filename(h))
	return c.createAtomic(dir, h.Name, true, produce, func(sum []byte) error {
		if fmt.Sprintf("%x", sum) != h.Name {
			return fmt.Errorf("cache: content of %v does not match its ID: %w", h, errCorrupt)
		}
		return nil
	})
}

// putBytes stores buf as the entry for h.
func (c *Cache) putBytes(h backend.Handle, buf []byte) error {
	return c.put(h, func(w io.Writer, _ func() error) error {
		_, err := w.Write(buf)
		return err
	})
}

// createAtomic writes dir/name: a temporary file in dir is filled by
// produce, checked by check (with the SHA-256 of what was written), synced
// and renamed into place, then dir is synced. Missing directories are
// (re)created. If record is true, the new file is remembered as verified.
func (c *Cache) createAtomic(dir, name string, record bool, produce func(w io.Writer, restart func() error) error, check func(sum []byte) error) error {
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if errors.Is(err, fs.ErrNotExist) {
		// The directory (or the whole cache) was removed: rebuild it.
		if dir != c.base && dir != c.path {
			if lerr := c.ensureLayout(); lerr != nil {
				return lerr
			}
		}
		if merr := os.MkdirAll(dir, dirMode); merr != nil {
			return fmt.Errorf("cache: create %s: %w", dir, merr)
		}
		f, err = os.CreateTemp(dir, tempPrefix+"*")
	}
	if err != nil {
		return fmt.Errorf("cache: create temporary file in %s: %w", dir, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			_ = os.Remove(tmp)
		}
	}()
	hasher := sha256.New()
	w := io.MultiWriter(f, hasher)
	restart := func() error {
		hasher.Reset()
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		return f.Truncate(0)
	}
	if err := produce(w, restart); err != nil {
		return fmt.Errorf("cache: write %s: %w", name, err)
	}
	if check != nil {
		if err := check(hasher.Sum(nil)); err != nil {
			return err
		}
	}
	if err := f.Chmod(fileMode); err != nil {
		return fmt.Errorf("cache: write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("cache: sync %s: %w", name, err)
	}
	// What was written is not necessarily what the file holds: another
	// process may have truncated or rewritten the temporary file meanwhile
	// (the cache directory is shared). An entry is only remembered as
	// verified after its bytes on disk were hashed again, unchanged from
	// before to after that pass.
	var ident fileIdent
	if record && check != nil {
		var err error
		if ident, err = rehash(f, check); err != nil {
			return fmt.Errorf("cache: write %s: %w", name, err)
		}
	}
	final := filepath.Join(dir, name)
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("cache: rename %s: %w", name, err)
	}
	syncDir(dir)
	if record && check != nil {
		if fi, err := f.Stat(); err == nil && identOf(fi) == ident {
			c.mu.Lock()
			c.verified[final] = ident
			c.mu.Unlock()
		}
	}
	done = true
	return f.Close()
}

// rehash hashes f's content as it is on disk, checks it, and returns f's
// identity, which must not change during the pass.
func rehash(f *os.File, check func(sum []byte) error) (fileIdent, error) {
	before, err := f.Stat()
	if err != nil {
		return fileIdent{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, before.Size())); err != nil {
		return fileIdent{}, err
	}
	if err := check(h.Sum(nil)); err != nil {
		return fileIdent{}, fmt.Errorf("changed on disk while it was written: %w", err)
	}
	after, err := f.Stat()
	if err != nil {
		return fileIdent{}, err
	}
	if identOf(after) != identOf(before) {
		return fileIdent{}, fmt.Errorf("changed on disk while it was verified: %w", errCorrupt)
	}
	return identOf(before), nil
}

// syncDir makes a rename in dir durable. Errors are ignored: the entry is
// only a cache entry, and every read verifies it.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// evictExcept deletes the entries of type t whose names are not in keep
// and that were written before since (minus a grace period), and removes
// stale temporary files left by crashed writers. Missing files and
// directories are not errors.
func (c *Cache) evictExcept(t core.FileType, keep map[string]struct{}, since time.Time) error {
	if !cacheable(t) {
		return nil
	}
	td := c.typeDir(t)
	subs, err := os.ReadDir(td)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("cache: read %s: %w", td, err)
	}
	limit := since.Add(-evictGrace)
	var errs []error
	for _, sub := range subs {
		if !sub.IsDir() || len(sub.Name()) != 2 {
			continue
		}
		sd := filepath.Join(td, sub.Name())
		ents, err := os.ReadDir(sd)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("cache: read %s: %w", sd, err))
			}
			continue
		}
		for _, e := range ents {
			name := e.Name()
			p := filepath.Join(sd, name)
			switch {
			case strings.HasPrefix(name, tempPrefix):
				fi, err := e.Info()
				if err != nil || time.Since(fi.ModTime()) < staleTempAge {
					continue
				}
			case core.IsValidName(name):
				if _, ok := keep[name]; ok {
					continue
				}
				fi, err := e.Info()
				if err != nil || !fi.ModTime().Before(limit) {
					continue
				}
				c.forget(p)
			default:
				continue
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("cache: evict %s: %w", p, err))
			}
		}
	}
	return errors.Join(errs...)
}
