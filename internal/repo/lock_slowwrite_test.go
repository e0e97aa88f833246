package repo

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
)

// slowLockBackend takes delay (when set) to save a lock file, as a slow or
// congested store does. The delay is spent before the file is stored, so
// the lock's embedded time is older than the file by that much.
type slowLockBackend struct {
	backend.Backend
	delay atomic.Int64 // nanoseconds
}

func (b *slowLockBackend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	if h.Type == core.LockFile {
		time.Sleep(time.Duration(b.delay.Load()))
	}
	return b.Backend.Save(ctx, h, rd)
}

// TestLockCommitWindowCountsFromBeforeWrite: others judge a lock's age by
// its embedded time, taken before the lock file is written. The window in
// which Check allows commits (half the staleness bound) must therefore start
// before the write too, not when a slow write returns: here a write that
// takes longer than half the bound leaves no window at all, and Check
// refuses. Counting from the end of the write would allow commits until
// StaleAfter/2 + write time after the embedded time.
func TestLockCommitWindowCountsFromBeforeWrite(t *testing.T) {
	ctx := context.Background()
	be := &slowLockBackend{Backend: mem.New()}
	r, err := Init(ctx, be, "secret", 2, testParams, Options{})
	if err != nil {
		t.Fatal(err)
	}
	timing := LockTiming{StaleAfter: 2 * time.Second, Refresh: time.Hour}

	// a fast write leaves the window open
	l, _, err := r.Lock(ctx, false, LockOptions{Timing: &timing})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Check(ctx); err != nil {
		t.Fatalf("Check right after a fast lock write: %v", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	// a write slower than StaleAfter/2 leaves none
	be.delay.Store(int64(1500 * time.Millisecond))
	l, lctx, err := r.Lock(ctx, false, LockOptions{Timing: &timing})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(ctx)
	if err := l.Check(ctx); !errors.Is(err, ErrLockLost) {
		t.Fatalf("Check after a lock write that outlasted half the staleness bound: %v, want ErrLockLost", err)
	}
	if !errors.Is(context.Cause(lctx), ErrLockLost) {
		t.Fatalf("operation context not cancelled: %v", context.Cause(lctx))
	}

	// the same for a refresh: its window starts before its write
	be.delay.Store(0)
	l2, _, err := r.Lock(ctx, false, LockOptions{Timing: &timing})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Unlock(ctx)
	be.delay.Store(int64(1500 * time.Millisecond))
	if err := l2.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l2.Check(ctx); !errors.Is(err, ErrLockLost) {
		t.Fatalf("Check after a slow refresh: %v, want ErrLockLost", err)
	}
}
