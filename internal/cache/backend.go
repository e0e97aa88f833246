package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
)

// Backend is a backend decorator that serves index files, snapshot files
// and metadata packs from a Cache:
//
//   - Save of an index or snapshot file also stores it in the cache.
//   - Load of an index or snapshot file is served from the cache when a
//     verified copy is there, else loaded whole from the backend and cached.
//   - Load of a pack that is in the cache is served from it; a pack for
//     which the metadata predicate (SetMetadataPacks) holds is first
//     downloaded whole into the cache, once per process at a time.
//   - A successful, complete List of a type evicts cached files of that
//     type that were not listed; Remove evicts; Stat reporting "not found"
//     evicts.
//
// Cache failures never fail an operation: the backend is the truth.
type Backend struct {
	be backend.Backend
	c  *Cache

	isMeta atomic.Pointer[func(core.ID) bool]

	mu sync.Mutex // guards inflight
	// inflight holds the pack downloads in progress, by pack name.
	inflight map[string]*download
}

// download is one whole-pack download into the cache; done is closed when
// it ends, and err is set before that.
type download struct {
	done chan struct{}
	err  error
}

var _ backend.Backend = (*Backend)(nil)

// Wrap returns be with the cache c in front of it.
func Wrap(be backend.Backend, c *Cache) *Backend {
	return &Backend{be: be, c: c, inflight: make(map[string]*download)}
}

// SetMetadataPacks sets the predicate telling which packs are metadata
// packs (hold tree blobs) and should be cached whole when first read. It
// is called for every pack load not served from the cache, so it must be
// cheap and safe for concurrent use. Nil means "none".
func (b *Backend) SetMetadataPacks(fn func(core.ID) bool) {
	if fn == nil {
		b.isMeta.Store(nil)
		return
	}
	b.isMeta.Store(&fn)
}

// Cache returns the cache.
func (b *Backend) Cache() *Cache { return b.c }

// Unwrap returns the decorated backend.
func (b *Backend) Unwrap() backend.Backend { return b.be }

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.be.Location() }

// Connections implements backend.Backend.
func (b *Backend) Connections() uint { return b.be.Connections() }

// Close implements backend.Backend.
func (b *Backend) Close() error { return b.be.Close() }

func (b *Backend) warn(err error) {
	if err != nil {
		b.c.logf("%v\n", err)
	}
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	if err := b.be.Save(ctx, h, rd); err != nil {
		return err
	}
	if !cacheableHandle(h) || h.Type == core.PackFile {
		return nil
	}
	if err := rd.Rewind(); err != nil {
		b.warn(fmt.Errorf("cache: save %v: rewind: %w", h, err))
		return nil
	}
	b.warn(b.c.put(h, func(w io.Writer, _ func() error) error {
		n, err := io.Copy(w, rd)
		if err == nil && n != rd.Length() {
			err = fmt.Errorf("read %d bytes, want %d", n, rd.Length())
		}
		return err
	}))
	return nil
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	fi, err := b.be.Stat(ctx, h)
	if err != nil && backend.IsNotExist(err) {
		b.warn(b.c.Evict(h))
	}
	return fi, err
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	err := b.be.Remove(ctx, h)
	// Evicting is right whether or not the removal worked: the cache only
	// saves downloads.
	b.warn(b.c.Evict(h))
	return err
}

// List implements backend.Backend. Only a listing that completed without
// error evicts anything (H24).
func (b *Backend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	if !cacheable(t) {
		return b.be.List(ctx, t, fn)
	}
	start := time.Now()
	var mu sync.Mutex // guards seen
	seen := make(map[string]struct{})
	err := b.be.List(ctx, t, func(fi backend.FileInfo) error {
		mu.Lock()
		seen[fi.Name] = struct{}{}
		mu.Unlock()
		return fn(fi)
	})
	if err != nil {
		return err
	}
	b.warn(b.c.evictExcept(t, seen, start))
	return nil
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(rd io.Reader) error) error {
	if !cacheableHandle(h) || length < 0 || offset < 0 {
		return b.be.Load(ctx, h, length, offset, fn)
	}
	if h.Type == core.PackFile {
		return b.loadPack(ctx, h, length, offset, fn)
	}
	return b.loadSmall(ctx, h, length, offset, fn)
}

// section returns the requested range of buf, or false if it lies outside.
func section(buf []byte, length int, offset int64) (io.Reader, bool) {
	if offset > int64(len(buf)) {
		return nil, false
	}
	buf = buf[offset:]
	if length > 0 {
		if length > len(buf) {
			return nil, false
		}
		buf = buf[:length]
	}
	return bytes.NewReader(buf), true
}

// loadSmall serves index and snapshot files, which are read whole.
func (b *Backend) loadSmall(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	buf, err := b.c.load(h)
	if err == nil {
		if rd, ok := section(buf, length, offset); ok {
			return fn(rd)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		b.warn(err)
	}
	buf = nil
	err = b.be.Load(ctx, h, 0, 0, func(rd io.Reader) error {
		var err error
		buf, err = io.ReadAll(rd)
		return err
	})
	if err != nil {
		return err
	}
	if core.Hash(buf).String() == h.Name {
		b.warn(b.c.putBytes(h, buf))
	}
	rd, ok := section(buf, length, offset)
	if !ok {
		// let the backend report the bad range
		return b.be.Load(ctx, h, length, offset, fn)
	}
	return fn(rd)
}

// loadPack serves a range of a pack, from the cache when possible.
func (b *Backend) loadPack(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if done, err := b.loadCachedPack(ctx, h, length, offset, fn); done {
		return err
	}
	if b.metadata(h.Name) {
		if err := b.fetchPack(ctx, h); err == nil {
			if done, err := b.loadCachedPack(ctx, h, length, offset, fn); done {
				return err
			}
		} else if !errors.Is(err, context.Canceled) {
			b.warn(err)
		}
	}
	return b.be.Load(ctx, h, length, offset, fn)
}

func (b *Backend) metadata(name string) bool {
	p := b.isMeta.Load()
	if p == nil {
		return false
	}
	id, err := core.ParseID(name)
	return err == nil && (*p)(id)
}

// cacheReadError marks a read error of a cached file, as opposed to an
// error of the caller's function.
type cacheReadError struct{ err error }

func (e *cacheReadError) Error() string { return "cache: read: " + e.err.Error() }
func (e *cacheReadError) Unwrap() error { return e.err }

type cacheReader struct {
	rd  io.Reader
	err error
}

func (r *cacheReader) Read(p []byte) (int, error) {
	n, err := r.rd.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
		return n, &cacheReadError{err}
	}
	return n, err
}

// loadCachedPack serves the range from the cached pack if there is a
// verified copy. done is false when the caller must use the backend
// instead (fn may then have been called already; the backend contract lets
// Load call fn again).
func (b *Backend) loadCachedPack(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) (done bool, err error) {
	if err := ctx.Err(); err != nil {
		return true, err
	}
	f, id, err := b.c.openVerified(h)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			b.warn(err)
		}
		return false, nil
	}
	defer f.Close()
	n := int64(length)
	if length == 0 {
		n = id.size - offset
	}
	if offset > id.size || n < 0 || offset+n > id.size {
		return false, nil // let the backend report the bad range
	}
	cr := &cacheReader{rd: io.NewSectionReader(f, offset, n)}
	err = fn(cr)
	if cr.err != nil {
		b.warn(fmt.Errorf("cache: read %v: %w", h, cr.err))
		b.c.forget(f.Name())
		return false, nil
	}
	if !b.c.stillVerified(f, id) {
		// modified in place while we read it: what fn saw is suspect
		b.warn(fmt.Errorf("cache: %v changed while being read; loading it from the repository", h))
		b.c.forget(f.Name())
		return false, nil
	}
	return true, err
}

// fetchPack downloads the whole pack into the cache. Concurrent callers for
// the same pack share one download; a caller whose ctx ends stops waiting.
func (b *Backend) fetchPack(ctx context.Context, h backend.Handle) error {
	b.mu.Lock()
	if d, ok := b.inflight[h.Name]; ok {
		b.mu.Unlock()
		select {
		case <-d.done:
			return d.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if b.c.Has(h) {
		// A download that just ended stored it (the entry is renamed into
		// place before the download leaves inflight).
		b.mu.Unlock()
		return nil
	}
	d := &download{done: make(chan struct{})}
	b.inflight[h.Name] = d
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.inflight, h.Name)
		b.mu.Unlock()
		close(d.done)
	}()
	d.err = b.c.put(h, func(w io.Writer, restart func() error) error {
		return b.be.Load(ctx, h, 0, 0, func(rd io.Reader) error {
			if err := restart(); err != nil {
				return &localError{err}
			}
			_, err := io.Copy(&localWriter{w}, rd)
			return err
		})
	})
	return d.err
}

// localError is a failure of the cache's own disk while downloading. It is
// marked permanent so that a retrying backend below does not download
// again because the local disk is full.
type localError struct{ err error }

func (e *localError) Error() string   { return "cache: write: " + e.err.Error() }
func (e *localError) Unwrap() error   { return e.err }
func (e *localError) Permanent() bool { return true }

// localWriter tags its errors as localError.
type localWriter struct{ w io.Writer }

func (l *localWriter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if err != nil {
		return n, &localError{err}
	}
	return n, nil
}

// FileAdopter lets pack uploads bypass the cache when the backend below can
// adopt files (packs are cached when read, never when saved).
func (b *Backend) FileAdopter() (backend.FileAdopter, bool) { return backend.AdopterOf(b.be) }
