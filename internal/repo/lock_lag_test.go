package repo

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/local"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
)

// laggyBackend models an object store whose listings lag behind writes:
// a lock file is left out of listings until lag after this client first learnt
// of it (its own Save, or its first appearance in the underlying listing).
// It has no ListConsistent method and no Unwrap, so it counts as lagging.
type laggyBackend struct {
	backend.Backend
	lag time.Duration

	mu    sync.Mutex // guards known
	known map[string]time.Time
}

func (b *laggyBackend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	err := b.Backend.Save(ctx, h, rd)
	if err == nil {
		b.mu.Lock()
		b.known[h.Type.String()+"/"+h.Name] = time.Now()
		b.mu.Unlock()
	}
	return err
}

func (b *laggyBackend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	if t != core.LockFile {
		return b.Backend.List(ctx, t, fn)
	}
	return b.Backend.List(ctx, t, func(fi backend.FileInfo) error {
		key := t.String() + "/" + fi.Name
		b.mu.Lock()
		first, ok := b.known[key]
		if !ok {
			first = time.Now()
			b.known[key] = first
		}
		b.mu.Unlock()
		if time.Since(first) < b.lag {
			return nil
		}
		return fn(fi)
	})
}

func TestListConsistent(t *testing.T) {
	if !backend.ListConsistent(mem.New()) {
		t.Error("mem backend must be list-consistent")
	}
	lag := &laggyBackend{Backend: mem.New(), known: map[string]time.Time{}}
	if backend.ListConsistent(lag) {
		t.Error("a backend that does not promise consistent listings counts as consistent")
	}
	be, err := local.Create(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("local backend in the test's temp dir: list-consistent=%v", backend.ListConsistent(be))
}

// TestLockRecheckWaitsForLaggingListings: another client's exclusive lock
// that this client's first listing cannot see yet must still be found by
// the recheck, because Lock waits before it on a lagging backend. Without
// the wait both clients would hold exclusive locks.
func TestLockRecheckWaitsForLaggingListings(t *testing.T) {
	ctx := context.Background()
	raw := mem.New()
	other, err := Init(ctx, raw, "secret", 2, testParams, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	timing := fastTiming
	timing.RecheckWait = 400 * time.Millisecond
	timing.StaleAfter, timing.Refresh = time.Hour, 10*time.Minute // no refresh during the test
	held, _, err := other.Lock(ctx, true, LockOptions{Timing: &timing})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock(ctx)

	lag := &laggyBackend{Backend: raw, lag: 100 * time.Millisecond, known: map[string]time.Time{}}
	r, err := Open(ctx, lag, "secret", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if l, _, err := r.Lock(ctx, true, LockOptions{Timing: &timing}); !errors.Is(err, ErrLocked) {
		if err == nil {
			l.Unlock(ctx)
		}
		t.Fatalf("second exclusive lock on a lagging backend: got %v, want ErrLocked", err)
	}
	if ids, _ := other.ListIDs(ctx, core.LockFile); len(ids) != 1 {
		t.Fatalf("the refused lock left files behind: %v", ids)
	}
}
