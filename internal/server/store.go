package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/local"
)

// Store gives the server access to the repositories it serves. A
// repository path is "" (the store's root), "a" or "a/b": at most
// MaxFolderDepth components, each already validated by the server.
type Store interface {
	// Open returns the repository at repoPath; an error wrapping
	// backend.ErrNotExist if there is none. The backend belongs to the
	// store (callers do not Close it).
	Open(ctx context.Context, repoPath string) (backend.Backend, error)
	// Create creates the repository at repoPath; it succeeds if the
	// repository already exists.
	Create(ctx context.Context, repoPath string) error
	// Exists reports whether a repository exists at repoPath.
	Exists(ctx context.Context, repoPath string) (bool, error)
}

// DirStore keeps repositories in directories below a root directory, each
// one in restic's local layout (see internal/backend/local). A directory
// is a repository when it holds the "data" and "keys" subdirectories that
// Create makes.
type DirStore struct {
	root string

	createMu sync.Mutex // serialises Create (held while directories are made and synced)

	mu   sync.Mutex // guards open
	open map[string]backend.Backend
}

var (
	_ Store         = (*DirStore)(nil)
	_ UsageReporter = (*DirStore)(nil)
)

// NewDirStore returns a store over root. root is created by the first
// Create if it does not exist yet.
func NewDirStore(root string) *DirStore {
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	return &DirStore{root: filepath.Clean(root), open: make(map[string]backend.Backend)}
}

// Root returns the absolute root directory.
func (s *DirStore) Root() string { return s.root }

// dir maps a repository path to its directory, refusing anything that is
// not a plain relative path of at most MaxFolderDepth valid components.
func (s *DirStore) dir(repoPath string) (string, error) {
	if repoPath == "" {
		return s.root, nil
	}
	comps := strings.Split(repoPath, "/")
	if len(comps) > MaxFolderDepth {
		return "", fmt.Errorf("repository path %q: too deep", repoPath)
	}
	for _, c := range comps {
		if !validFolder(c) {
			return "", fmt.Errorf("repository path %q: invalid component %q", repoPath, c)
		}
	}
	rel := filepath.FromSlash(repoPath)
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("repository path %q: not local", repoPath)
	}
	return filepath.Join(s.root, rel), nil
}

// isRepoDir reports whether dir holds a repository layout.
func isRepoDir(dir string) (bool, error) {
	for _, sub := range []string{"data", "keys"} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		switch {
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
			return false, nil
		case err != nil:
			return false, err
		case !fi.IsDir():
			return false, nil
		}
	}
	return true, nil
}

// Open implements Store.
func (s *DirStore) Open(ctx context.Context, repoPath string) (backend.Backend, error) {
	dir, err := s.dir(repoPath)
	if err != nil {
		return nil, fmt.Errorf("open repository: %w", err)
	}
	if be := s.cached(repoPath); be != nil {
		return be, nil
	}
	ok, err := isRepoDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open repository %q: %w", repoPath, err)
	}
	if !ok {
		return nil, fmt.Errorf("open repository %q: %w", repoPath, backend.ErrNotExist)
	}
	be, err := local.Open(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("open repository %q: %w", repoPath, err)
	}
	// Temporary files of uploads cut short by a server crash are never
	// listed; clear the old ones the first time the repository is served.
	_, _ = be.RemoveStaleTemp(ctx, time.Hour)
	return s.remember(repoPath, be), nil
}

// cached returns the opened backend for repoPath, or nil.
func (s *DirStore) cached(repoPath string) backend.Backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[repoPath]
}

// remember caches be for repoPath unless another goroutine was first, and
// returns the cached backend.
func (s *DirStore) remember(repoPath string, be backend.Backend) backend.Backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.open[repoPath]; ok {
		_ = be.Close() // a local backend holds no resources; keep one instance
		return prev
	}
	s.open[repoPath] = be
	return be
}

// Create implements Store. Creations are serialised in memory; nothing is
// written into the repository but its layout directories.
func (s *DirStore) Create(ctx context.Context, repoPath string) error {
	dir, err := s.dir(repoPath)
	if err != nil {
		return fmt.Errorf("create repository: %w", err)
	}
	s.createMu.Lock()
	defer s.createMu.Unlock()
	be, err := local.Create(ctx, dir)
	if err != nil {
		return fmt.Errorf("create repository %q: %w", repoPath, err)
	}
	s.remember(repoPath, be)
	return nil
}

// Exists implements Store.
func (s *DirStore) Exists(ctx context.Context, repoPath string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	dir, err := s.dir(repoPath)
	if err != nil {
		return false, fmt.Errorf("repository exists: %w", err)
	}
	ok, err := isRepoDir(dir)
	if err != nil {
		return false, fmt.Errorf("repository %q exists: %w", repoPath, err)
	}
	return ok, nil
}

// Usage implements UsageReporter: the total size of all regular files
// below the root (symbolic links are not followed).
func (s *DirStore) Usage(ctx context.Context) (int64, error) {
	var total int64
	err := filepath.WalkDir(s.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // root not created yet, or removed while walking
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		total += fi.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measure usage of %s: %w", s.root, err)
	}
	return total, nil
}

// Close closes every opened repository backend.
func (s *DirStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for p, be := range s.open {
		if err := be.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close repository %q: %w", p, err))
		}
		delete(s.open, p)
	}
	return errors.Join(errs...)
}
