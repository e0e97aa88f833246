package cli

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
)

// locationStore serves repositories below any backend location
// (`serve --backend s3:https://host/bucket/prefix`): repository "a/b" lives
// at "<base>/a/b". The backend is the only state, so several servers can
// share one bucket behind a load balancer.
type locationStore struct {
	g    *globalOptions
	base string

	mu   sync.Mutex // guards open
	open map[string]backend.Backend
}

func newLocationStore(g *globalOptions, base string) *locationStore {
	return &locationStore{g: g, base: strings.TrimRight(base, "/"), open: map[string]backend.Backend{}}
}

func (s *locationStore) location(repoPath string) string {
	if repoPath == "" {
		return s.base
	}
	return s.base + "/" + repoPath
}

func (s *locationStore) backendFor(ctx context.Context, repoPath string, create bool) (backend.Backend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if be, ok := s.open[repoPath]; ok {
		return be, nil
	}
	be, err := s.g.openBackend(ctx, s.location(repoPath), create)
	if create && errors.Is(err, backend.ErrAlreadyExists) {
		// a backend whose creation refuses an existing repository (rest):
		// the repository is there, open it
		be, err = s.g.openBackend(ctx, s.location(repoPath), false)
	}
	if err != nil {
		return nil, err
	}
	s.open[repoPath] = be
	return be, nil
}

// Open implements server.Store. Object stores have no directories: every
// repository path is usable, and one without a config answers 404 for it
// (which is how clients learn that a repository does not exist). Between
// `init`'s key and config uploads the repository exists only as objects,
// possibly written through another server instance.
func (s *locationStore) Open(ctx context.Context, repoPath string) (backend.Backend, error) {
	return s.backendFor(ctx, repoPath, false)
}

// Create implements server.Store (idempotent).
func (s *locationStore) Create(ctx context.Context, repoPath string) error {
	be, err := s.backendFor(ctx, repoPath, true)
	if err != nil {
		return err
	}
	// the server's create is idempotent: lay out what is missing, never
	// refuse an existing repository
	if c, ok := be.(interface{ CreateLayout(context.Context) error }); ok {
		return c.CreateLayout(ctx)
	}
	if c, ok := be.(backend.Creator); ok {
		return c.Create(ctx)
	}
	return nil
}

// Exists implements server.Store.
func (s *locationStore) Exists(ctx context.Context, repoPath string) (bool, error) {
	be, err := s.backendFor(ctx, repoPath, true)
	if err != nil {
		return false, err
	}
	_, err = be.Stat(ctx, backend.Handle{Type: core.ConfigFile})
	if err == nil {
		return true, nil
	}
	if backend.IsNotExist(err) {
		return false, nil
	}
	return false, err
}

// Close closes every opened backend.
func (s *locationStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, be := range s.open {
		_ = be.Close()
		delete(s.open, k)
	}
	return nil
}
