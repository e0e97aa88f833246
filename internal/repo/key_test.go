package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/local"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
)

// truncatingKeyBackend stores only the first half of every key file while
// acknowledging the whole write (H41: a torn upload).
type truncatingKeyBackend struct {
	backend.Backend
}

func (b *truncatingKeyBackend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	if h.Type != core.KeyFile {
		return b.Backend.Save(ctx, h, rd)
	}
	buf, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	return b.Backend.Save(ctx, h, backend.NewByteReader(buf[:len(buf)/2]))
}

// TestInitTruncatedKeyWrite (H41): init reads its key file back before it
// writes the config; a key that does not read back fails init with a clear
// error and no config is written (the repository does not exist).
func TestInitTruncatedKeyWrite(t *testing.T) {
	ctx := context.Background()
	raw := mem.New()
	_, err := Init(ctx, &truncatingKeyBackend{Backend: raw}, "secret", 2, testParams, Options{})
	if err == nil {
		t.Fatal("init succeeded with a truncated key file")
	}
	if !strings.Contains(err.Error(), "key file does not read back") {
		t.Fatalf("unclear error: %v", err)
	}
	t.Logf("init: %v", err)
	if _, err := raw.Stat(ctx, backend.Handle{Type: core.ConfigFile}); !backend.IsNotExist(err) {
		t.Fatalf("config written although the key does not read back: %v", err)
	}
	if _, err := Open(ctx, raw, "secret", Options{}); !errors.Is(err, ErrNoRepository) {
		t.Fatalf("open after failed init: %v", err)
	}
	var keys []string
	if err := raw.List(ctx, core.KeyFile, func(fi backend.FileInfo) error { keys = append(keys, fi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	// The bad key file is removed, so a retried init is not refused with
	// "keys already contains files".
	if len(keys) != 0 {
		t.Fatalf("key files left by the failed init: %v", keys)
	}
}

// TestSearchKeyTruncatedKey: a damaged key file is skipped with its error
// reported, and an intact key of the same repository still opens it.
func TestSearchKeyTruncatedKey(t *testing.T) {
	ctx := context.Background()
	r, raw := newTestRepo(t, 2, Options{})
	if _, err := (&Repository{be: &truncatingKeyBackend{Backend: raw}, key: r.key}).AddKey(ctx, "other", testParams, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := SearchKey(ctx, raw, "other", "", 0); !errors.Is(err, ErrWrongPassword) || !strings.Contains(err.Error(), "does not match its name") {
		t.Fatalf("truncated key: %v", err)
	}
	if _, _, err := SearchKey(ctx, raw, "secret", "", 0); err != nil {
		t.Fatalf("intact key beside a truncated one: %v", err)
	}
}

// keyBarrier holds every key file write until n of them have arrived, so
// that concurrent inits have all passed their "is the repository empty"
// checks and race for the config file.
type keyBarrier struct {
	ctx context.Context // bounds the wait if an init fails early (a bug)
	n   int
	all chan struct{} // closed when n writes have arrived

	mu      sync.Mutex // guards arrived
	arrived int
}

func newKeyBarrier(ctx context.Context, n int) *keyBarrier {
	return &keyBarrier{ctx: ctx, n: n, all: make(chan struct{})}
}

func (b *keyBarrier) arrive() error {
	b.mu.Lock()
	b.arrived++
	if b.arrived == b.n {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
		return nil
	case <-b.ctx.Done():
		return fmt.Errorf("key barrier: %w", b.ctx.Err())
	}
}

// barrierBackend passes key file writes through the shared barrier.
type barrierBackend struct {
	backend.Backend
	barrier *keyBarrier
}

func (b *barrierBackend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	if h.Type == core.KeyFile {
		if err := b.barrier.arrive(); err != nil {
			return err
		}
	}
	return b.Backend.Save(ctx, h, rd)
}

// TestConcurrentInit (H41): two inits on one empty repository, with
// different passwords. Exactly one succeeds; the repository then opens
// with its password and config, not with the loser's password; one key file
// remains; the loser gets a clear error. With the barrier both inits pass
// every emptiness check and the config write decides.
func TestConcurrentInit(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		forced bool
		rounds int
		newBE  func(t *testing.T) func() backend.Backend
	}{
		{"mem/forced", true, 8, memPair},
		{"mem/free", false, 20, memPair},
		{"local/forced", true, 3, localPair},
		{"local/free", false, 3, localPair},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for round := 0; round < tc.rounds; round++ {
				another := tc.newBE(t)
				bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				barrier := newKeyBarrier(bctx, 2)
				passwords := []string{"alpha", "beta"}
				repos := make([]*Repository, 2)
				errs := make([]error, 2)
				var wg sync.WaitGroup
				for i := range passwords {
					be := another()
					if tc.forced {
						be = &barrierBackend{Backend: be, barrier: barrier}
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						repos[i], errs[i] = Init(ctx, be, passwords[i], 2, testParams, Options{})
					}()
				}
				wg.Wait()
				cancel()
				winner := -1
				for i, err := range errs {
					if err == nil {
						if winner >= 0 {
							t.Fatalf("round %d: both inits succeeded", round)
						}
						winner = i
						defer repos[i].Close()
					}
				}
				if winner < 0 {
					t.Fatalf("round %d: both inits failed: %v; %v", round, errs[0], errs[1])
				}
				loser := 1 - winner
				msg := errs[loser].Error()
				if tc.forced && !strings.Contains(msg, "another process created a repository there at the same time") {
					t.Fatalf("round %d: loser's error: %v", round, errs[loser])
				}
				if !strings.Contains(msg, "at the same time") && !strings.Contains(msg, "already exists") && !strings.Contains(msg, "already contains files") {
					t.Fatalf("round %d: unclear error for the loser: %v", round, errs[loser])
				}
				be := another()
				r, err := Open(ctx, be, passwords[winner], Options{})
				if err != nil {
					t.Fatalf("round %d: open with the winner's password: %v", round, err)
				}
				if r.Config() != repos[winner].Config() || r.Key().EncryptionKey != repos[winner].Key().EncryptionKey {
					t.Fatalf("round %d: the repository is not the winner's", round)
				}
				keys, err := r.ListIDs(ctx, core.KeyFile)
				if err != nil || len(keys) != 1 || keys[0] != repos[winner].KeyFile().ID() {
					t.Fatalf("round %d: key files %v (%v), want only the winner's", round, keys, err)
				}
				if _, err := Open(ctx, be, passwords[loser], Options{}); !errors.Is(err, ErrWrongPassword) {
					t.Fatalf("round %d: open with the loser's password: %v", round, err)
				}
				r.Close()
				if round == 0 {
					t.Logf("loser: %v", errs[loser])
				}
			}
		})
	}
}

func memPair(*testing.T) func() backend.Backend {
	be := mem.New()
	return func() backend.Backend { return be }
}

func localPair(t *testing.T) func() backend.Backend {
	dir := t.TempDir()
	return func() backend.Backend {
		be, err := local.Create(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		return be
	}
}
