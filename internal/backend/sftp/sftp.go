// Package sftp stores a repository on an SSH server over SFTP (OpenSSH or
// compatible), using restic's layout (config, data/xx/<id>, index/<id>, …).
//
// The server's host key must be listed in a known_hosts file: an unknown
// or changed key is an error, never accepted silently. Authentication uses
// key files and the ssh-agent; passwords are not supported.
//
// Saves are durable and atomic: the body goes to "<name>-tmp-<random>" in
// the target directory, its length is checked, it is fsynced when the
// server offers fsync@openssh.com, made read-only, and published under its
// final name without ever replacing an existing file: by a hard link
// (hardlink@openssh.com, atomic and failing if the name exists) or, without
// that extension, by the plain SFTP rename, which the protocol (and
// OpenSSH) define to fail if the target exists. Then the directory is
// fsynced where the server allows it.
//
// All requests share one SSH connection; a connection that died is
// replaced on the next request. SSH keepalives detect a server that stopped
// answering (hazard H30) and close the connection, failing the requests
// stuck on it. SFTP requests themselves cannot be cancelled: ctx is
// checked before each request and between the chunks of a transfer.
package sftp

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sync"
	"sync/atomic"

	pkgsftp "github.com/pkg/sftp"
	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/retry"
	"github.com/cairn-backup/cairn/internal/core"
)

// tempMarker separates the final name from the random suffix of a
// temporary file.
const tempMarker = "-tmp-"

// copyBuffer is the chunk size of uploads and downloads; the SFTP client
// splits each chunk into concurrent requests.
const copyBuffer = 1 << 20

// Backend is a repository on an SFTP server.
type Backend struct {
	cfg      Config
	user     string
	root     string // cfg.Path
	location string
	sem      chan struct{} // one token per request in flight

	mu  sync.Mutex // guards cur and closed
	cur *session   // the current connection; nil before the first request
	// closed is set by Close; later requests fail.
	closed bool

	// noDirSync is set once fsyncing a directory failed; accessed
	// atomically.
	noDirSync atomic.Bool
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Creator = (*Backend)(nil)
)

// Open connects to the server and checks that the repository directory
// exists (an error wrapping backend.ErrNotExist if not).
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	b, err := newBackend(cfg)
	if err != nil {
		return nil, err
	}
	s, err := b.session(ctx)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", b.location, err)
	}
	fi, err := s.sftp.Stat(b.root)
	if err != nil {
		_ = b.Close()
		if isNotExist(err) {
			return nil, fmt.Errorf("open %s: directory does not exist: %w", b.location, backend.ErrNotExist)
		}
		return nil, fmt.Errorf("open %s: %w", b.location, err)
	}
	if !fi.IsDir() {
		_ = b.Close()
		return nil, fmt.Errorf("open %s: not a directory", b.location)
	}
	return b, nil
}

// Create connects to the server and creates the repository directory and
// its layout (existing directories are fine: whether a repository is
// there is decided by the config file, which Save never overwrites).
func Create(ctx context.Context, cfg Config) (*Backend, error) {
	return backend.OpenCreate(ctx, func(context.Context) (*Backend, error) { return newBackend(cfg) })
}

func newBackend(cfg Config) (*Backend, error) {
	if cfg.Host == "" || cfg.Path == "" {
		return nil, errors.New("open sftp repository: host and path are required")
	}
	if cfg.Connections == 0 {
		cfg.Connections = DefaultConnections
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	u := cfg.User
	if u == "" {
		var err error
		if u, err = currentUser(); err != nil {
			return nil, fmt.Errorf("open sftp repository: %w", err)
		}
	}
	root := path.Clean(cfg.Path)
	return &Backend{
		cfg:      cfg,
		user:     u,
		root:     root,
		location: cfg.location(u),
		sem:      make(chan struct{}, cfg.Connections),
	}, nil
}

// session returns the live connection, dialing a new one if there is none
// or the last one died.
func (b *Backend) session(ctx context.Context) (*session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("backend is closed")
	}
	if b.cur != nil && b.cur.alive() {
		return b.cur, nil
	}
	if b.cur != nil {
		_ = b.cur.close()
		b.cur = nil
	}
	s, err := b.dial(ctx)
	if err != nil {
		return nil, err
	}
	b.cur = s
	return s, nil
}

// acquire takes a request slot and returns the connection; release the
// slot with b.release().
func (b *Backend) acquire(ctx context.Context) (*session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s, err := b.session(ctx)
	if err != nil {
		<-b.sem
		return nil, err
	}
	return s, nil
}

func (b *Backend) release() { <-b.sem }

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.location }

// Connections implements backend.Backend.
func (b *Backend) Connections() uint { return b.cfg.Connections }

// Close implements backend.Backend: it closes the connection.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.cur == nil {
		return nil
	}
	err := b.cur.close()
	b.cur = nil
	return err
}

func (b *Backend) filename(h backend.Handle) string {
	return path.Join(b.root, backend.Path(h))
}

// Create implements backend.Creator.
func (b *Backend) Create(ctx context.Context) error {
	s, err := b.acquire(ctx)
	if err != nil {
		return fmt.Errorf("create %s: %w", b.location, err)
	}
	defer b.release()
	if err := s.sftp.MkdirAll(b.root); err != nil {
		return fmt.Errorf("create %s: %w", b.location, err)
	}
	// Parents first, then the data/xx directories in parallel.
	dirs := backend.Dirs()
	for _, batch := range [][]string{dirs[:5], dirs[5:]} {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(4 * int(b.cfg.Connections))
		for _, d := range batch {
			g.Go(func() error {
				if err := gctx.Err(); err != nil {
					return err
				}
				p := path.Join(b.root, d)
				if err := s.sftp.Mkdir(p); err != nil {
					// Mkdir of an existing directory is a generic failure in SFTP.
					if fi, serr := s.sftp.Stat(p); serr != nil || !fi.IsDir() {
						return fmt.Errorf("mkdir %s: %w", d, err)
					}
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return fmt.Errorf("create %s: %w", b.location, err)
		}
	}
	for _, d := range []string{path.Join(b.root, "data"), b.root, path.Dir(b.root)} {
		b.syncDir(s, d)
	}
	return nil
}

// exists reports whether p exists (as anything).
func exists(s *session, p string) (bool, error) {
	_, err := s.sftp.Lstat(p)
	switch {
	case err == nil:
		return true, nil
	case isNotExist(err):
		return false, nil
	}
	return false, err
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	want, err := backend.CheckSave(h, rd)
	if err != nil {
		return retry.Permanent(fmt.Errorf("save %v: %w", h, err))
	}
	s, err := b.acquire(ctx)
	if err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	defer b.release()
	final := b.filename(h)
	dir := path.Dir(final)
	// Fail fast without uploading (publish re-checks atomically); the
	// check and the creation of the temporary file run in parallel to
	// save a round trip.
	existsCh := make(chan error, 1)
	go func() {
		ok, err := exists(s, final)
		if err == nil && ok {
			err = backend.ErrAlreadyExists
		}
		existsCh <- err
	}()
	f, tmp, createdDir, err := b.createTemp(s, dir, path.Base(final))
	if xerr := <-existsCh; xerr != nil {
		if err == nil {
			_ = f.Close()
			_ = s.sftp.Remove(tmp)
		}
		return fmt.Errorf("save %v: %w", h, xerr)
	}
	if err != nil {
		return fmt.Errorf("save %v: create temporary file: %w", h, err)
	}
	published := false
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		if !published {
			_ = s.sftp.Remove(tmp)
		}
	}()

	buf := make([]byte, min(want+1, copyBuffer))
	n, err := io.CopyBuffer(writerOnly{f}, io.LimitReader(backend.NewCtxReader(ctx, rd), want+1), buf)
	if err != nil {
		return fmt.Errorf("save %v: write: %w", h, err)
	}
	if n < want {
		return fmt.Errorf("save %v: reader ended after %d bytes, want %d", h, n, want)
	}
	if n > want {
		return fmt.Errorf("save %v: reader delivered more than the %d bytes it announced", h, want)
	}
	// fsync the data and clear the write bits (as the local backend does)
	// in parallel: both must succeed before publishing.
	chmodCh := make(chan error, 1)
	go func() { chmodCh <- s.sftp.Chmod(tmp, 0o400) }()
	var syncErr error
	if s.fsync {
		syncErr = f.Sync()
	}
	chmodErr := <-chmodCh
	if syncErr != nil {
		return fmt.Errorf("save %v: fsync: %w", h, syncErr)
	}
	if chmodErr != nil {
		return fmt.Errorf("save %v: chmod: %w", h, chmodErr)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return fmt.Errorf("save %v: close: %w", h, cerr)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	if err := b.publish(s, tmp, final); err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	published = true
	b.syncDir(s, dir)
	if createdDir {
		b.syncDir(s, path.Dir(dir))
	}
	return nil
}

// writerOnly hides the file's ReadFrom, so io.CopyBuffer reads through
// the caller's buffer (one chunk in flight, each split into concurrent
// write requests by the client).
type writerOnly struct{ io.Writer }

// createTemp creates a new temporary file for base in dir, creating dir
// (but never the repository root) if it is missing.
func (b *Backend) createTemp(s *session, dir, base string) (f *remoteFile, name string, createdDir bool, err error) {
	for attempt := 0; attempt < 3; attempt++ {
		var suffix [8]byte
		if _, err := rand.Read(suffix[:]); err != nil {
			return nil, "", false, err
		}
		name = path.Join(dir, base+tempMarker+hex.EncodeToString(suffix[:]))
		file, err := s.sftp.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		switch {
		case err == nil:
			return file, name, createdDir, nil
		case isNotExist(err) && dir != b.root && !createdDir:
			if merr := s.sftp.Mkdir(dir); merr != nil {
				if fi, serr := s.sftp.Stat(dir); serr != nil || !fi.IsDir() {
					return nil, "", false, fmt.Errorf("mkdir %s: %w", dir, merr)
				}
			}
			createdDir = true
		default:
			if ok, _ := exists(s, name); ok {
				continue // name collision: try another suffix
			}
			return nil, "", false, err
		}
	}
	return nil, "", false, fmt.Errorf("cannot create a temporary file in %s", dir)
}

// publish moves tmp to final without ever replacing an existing final.
func (b *Backend) publish(s *session, tmp, final string) error {
	var err error
	if s.hardlink {
		err = s.sftp.Link(tmp, final)
		if err == nil {
			// Published; a leftover temporary name is only garbage, which
			// List never reports.
			_ = s.sftp.Remove(tmp)
			return nil
		}
	} else {
		// SSH_FXP_RENAME fails if the target exists (OpenSSH implements it
		// with link+unlink); posix-rename@openssh.com would overwrite.
		err = s.sftp.Rename(tmp, final)
		if err == nil {
			return nil
		}
	}
	if ok, serr := exists(s, final); serr == nil && ok {
		return fmt.Errorf("publish: %w", backend.ErrAlreadyExists)
	}
	return fmt.Errorf("publish: %w", err)
}

// syncDir fsyncs a directory when the server allows it (OpenSSH opens
// directories as files and fsyncs the descriptor); failures only switch
// the attempt off.
func (b *Backend) syncDir(s *session, dir string) {
	if !s.fsync || b.noDirSync.Load() {
		return
	}
	f, err := s.sftp.Open(dir)
	if err != nil {
		b.noDirSync.Store(true)
		return
	}
	if err := f.Sync(); err != nil {
		b.noDirSync.Store(true)
	}
	_ = f.Close()
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if err := backend.CheckLoad(h, length, offset); err != nil {
		return retry.Permanent(fmt.Errorf("load %v: %w", h, err))
	}
	s, err := b.acquire(ctx)
	if err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	defer b.release()
	f, err := s.sftp.Open(b.filename(h))
	if err != nil {
		if isNotExist(err) {
			return retry.Permanent(fmt.Errorf("load %v: %w", h, backend.ErrNotExist))
		}
		return fmt.Errorf("load %v: %w", h, err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	if !fi.Mode().IsRegular() {
		return retry.Permanent(fmt.Errorf("load %v: not a regular file", h))
	}
	n, err := backend.LoadRange(fi.Size(), length, offset)
	if err != nil {
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			err = retry.Permanent(err) // offset past the end
		}
		return fmt.Errorf("load %v: %w", h, err)
	}
	sec := io.NewSectionReader(f, offset, n)
	rd := backend.NewExactReader(backend.NewCtxReader(ctx, bufio.NewReaderSize(sec, int(min(n+1, copyBuffer)))), n, "file")
	if err := fn(rd); err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	return nil
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := h.Valid(); err != nil {
		return backend.FileInfo{}, retry.Permanent(fmt.Errorf("stat %v: %w", h, err))
	}
	s, err := b.acquire(ctx)
	if err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, err)
	}
	defer b.release()
	fi, err := s.sftp.Lstat(b.filename(h))
	if err != nil {
		if isNotExist(err) {
			return backend.FileInfo{}, retry.Permanent(fmt.Errorf("stat %v: %w", h, backend.ErrNotExist))
		}
		return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, err)
	}
	if !fi.Mode().IsRegular() {
		return backend.FileInfo{}, retry.Permanent(fmt.Errorf("stat %v: not a regular file", h))
	}
	return backend.FileInfo{Name: h.Name, Size: fi.Size()}, nil
}

// List implements backend.Backend. A missing type directory lists as
// empty; any other error is an error, never an empty listing (H24). Only
// regular files with valid names in their proper place are reported.
func (b *Backend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %v: %w", t, err)
	}
	if t == core.ConfigFile {
		return backend.ListConfig(ctx, b.Stat, fn)
	}
	if err := backend.CheckListType(t); err != nil {
		return retry.Permanent(fmt.Errorf("list: %w", err))
	}
	files, err := b.listFiles(ctx, t)
	if err != nil {
		return fmt.Errorf("list %v: %w", t, err)
	}
	// fn runs after the directory reads, outside the request slot, so it
	// may use the backend itself.
	for _, fi := range files {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %v: %w", t, err)
		}
		if err := fn(fi); err != nil {
			return err
		}
	}
	return nil
}

// listDirParallelism is how many data/xx directories List reads at once
// (each read is several small round trips; the whole listing counts as
// one request against Connections).
const listDirParallelism = 16

// listFiles reads the files of type t.
func (b *Backend) listFiles(ctx context.Context, t core.FileType) ([]backend.FileInfo, error) {
	s, err := b.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer b.release()
	dir := path.Join(b.root, t.String())
	var files []backend.FileInfo
	var subdirs []string
	err = readDir(ctx, s, dir, func(name string, fi os.FileInfo) error {
		switch {
		case t != core.PackFile:
			if fi.Mode().IsRegular() && core.IsValidName(name) {
				files = append(files, backend.FileInfo{Name: name, Size: fi.Size()})
			}
		case fi.IsDir() && len(name) == 2 && isLowerHex(name):
			subdirs = append(subdirs, name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	found := make([][]backend.FileInfo, len(subdirs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(listDirParallelism)
	for i, sub := range subdirs {
		g.Go(func() error {
			return readDir(gctx, s, path.Join(dir, sub), func(id string, fi os.FileInfo) error {
				if fi.Mode().IsRegular() && core.IsValidName(id) && id[:2] == sub {
					found[i] = append(found[i], backend.FileInfo{Name: id, Size: fi.Size()})
				}
				return nil
			})
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, f := range found {
		files = append(files, f...)
	}
	return files, nil
}

// readDir calls fn for each entry of dir; a missing dir has no entries.
func readDir(ctx context.Context, s *session, dir string, fn func(name string, fi os.FileInfo) error) error {
	entries, err := s.sftp.ReadDirContext(ctx, dir)
	if err != nil && isNotExist(err) {
		// OpenSSH reports ENOTDIR as "no such file": only a directory
		// that really is missing lists as empty.
		if _, lerr := s.sftp.Lstat(dir); lerr == nil {
			err = fmt.Errorf("read directory %s: exists but cannot be listed: %w", dir, err)
		} else if isNotExist(lerr) {
			err = nil
		} else {
			err = lerr
		}
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(e.Name(), e); err != nil {
			return err
		}
	}
	return nil
}

func isLowerHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Remove implements backend.Backend. A missing file is success.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := h.Valid(); err != nil {
		return retry.Permanent(fmt.Errorf("remove %v: %w", h, err))
	}
	s, err := b.acquire(ctx)
	if err != nil {
		return fmt.Errorf("remove %v: %w", h, err)
	}
	defer b.release()
	if err := s.sftp.Remove(b.filename(h)); err != nil && !isNotExist(err) {
		return fmt.Errorf("remove %v: %w", h, err)
	}
	return nil
}

// remoteFile is the client's open file.
type remoteFile = pkgsftp.File
