package repo

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
)

// stealDuringRefreshBackend removes the lock file named victim (as another
// host's `unlock` judging it stale would) while the next lock file is being
// saved — that is, during a refresh, after its first check of the old file.
type stealDuringRefreshBackend struct {
	backend.Backend

	mu     sync.Mutex // guards victim, stolen
	victim string
	stolen bool
}

func (b *stealDuringRefreshBackend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	b.mu.Lock()
	victim := b.victim
	steal := h.Type == core.LockFile && victim != "" && h.Name != victim && !b.stolen
	if steal {
		b.stolen = true
	}
	b.mu.Unlock()
	if steal {
		if err := b.Backend.Remove(ctx, backend.Handle{Type: core.LockFile, Name: victim}); err != nil {
			return err
		}
	}
	return b.Backend.Save(ctx, h, rd)
}

// TestRefreshFailsWhenOldLockRemovedDuring (I10, F3): if the old lock file is
// removed while a refresh writes the new one, another process may already
// have acted on the lock being gone (swept a pack); the refresh must not
// carry on with the new file as if presence had been continuous. It fails
// with ErrLockLost, removes the new file, and Check and the operation's
// context report the loss. Without the re-check after the write the refresh
// would succeed and the lock would look held.
func TestRefreshFailsWhenOldLockRemovedDuring(t *testing.T) {
	ctx := context.Background()
	raw := mem.New()
	if _, err := Init(ctx, raw, "secret", 2, testParams, Options{}); err != nil {
		t.Fatal(err)
	}
	be := &stealDuringRefreshBackend{Backend: raw}
	r, err := Open(ctx, be, "secret", Options{})
	if err != nil {
		t.Fatal(err)
	}
	timing := LockTiming{StaleAfter: time.Hour, Refresh: time.Hour} // refreshed by hand below
	l, lctx, err := r.Lock(ctx, false, LockOptions{Timing: &timing})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(ctx)
	old := l.ID()
	be.mu.Lock()
	be.victim = old.String()
	be.mu.Unlock()

	err = l.refresh(ctx)
	if !be.stolen {
		t.Fatal("the test backend did not remove the old lock during the refresh")
	}
	if !errors.Is(err, ErrLockLost) {
		t.Fatalf("refresh after its old lock was removed during the write: %v, want ErrLockLost", err)
	}
	// the refresher marks the lock lost on such an error; do what it does
	l.markLost(err)
	if err := l.Check(ctx); !errors.Is(err, ErrLockLost) {
		t.Fatalf("Check after the lost refresh: %v", err)
	}
	if !errors.Is(context.Cause(lctx), ErrLockLost) {
		t.Fatalf("operation context: %v", context.Cause(lctx))
	}
	ids, err := r.ListIDs(ctx, core.LockFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 0 {
		t.Fatalf("lock files left after the lost refresh: %v (the new one must be removed)", ids)
	}
}
