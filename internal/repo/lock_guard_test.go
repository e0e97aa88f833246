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

// stallingBackend holds every index upload until its context ends, or for
// delay when delay is set (a server that does not answer, or a slow one).
type stallingBackend struct {
	backend.Backend
	delay time.Duration
	saved atomic.Int32 // index files stored
}

func (b *stallingBackend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	if h.Type == core.IndexFile {
		if b.delay == 0 {
			<-ctx.Done()
			return ctx.Err()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(b.delay):
		}
		if err := b.Backend.Save(ctx, h, rd); err != nil {
			return err
		}
		b.saved.Add(1)
		return nil
	}
	return b.Backend.Save(ctx, h, rd)
}

// TestGuardBoundsCommitWrite (A-FREEZE): an index write that does not end
// within StaleAfter/4 is abandoned, and the lock counts as lost, so nothing
// more is committed under it; a write that ends in time commits.
func TestGuardBoundsCommitWrite(t *testing.T) {
	ctx := context.Background()
	timing := LockTiming{StaleAfter: 2 * time.Second, Refresh: 200 * time.Millisecond} // bound 500 ms
	for _, tc := range []struct {
		name  string
		delay time.Duration
		lost  bool
	}{
		{"stalled", 0, true},
		{"slow but in time", 50 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := &stallingBackend{Backend: mem.New(), delay: tc.delay}
			r, err := Init(ctx, be, "secret", 2, testParams, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			l, _, err := r.Lock(ctx, false, LockOptions{Timing: &timing})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Unlock(ctx)
			r.SetCommitGuard(l.Guard)
			if _, err := r.SaveBlob(ctx, core.DataBlob, []byte("data"), core.ID{}, false); err != nil {
				t.Fatal(err)
			}
			flushed := make(chan error, 1)
			go func() { flushed <- r.Flush(ctx) }()
			select {
			case err = <-flushed:
			case <-time.After(10 * time.Second):
				t.Fatal("flush still running after 10 s: the guarded write was not bounded")
			}
			if !tc.lost {
				if err != nil || be.saved.Load() != 1 {
					t.Fatalf("write in time: %v, %d index files", err, be.saved.Load())
				}
				if err := l.Check(ctx); err != nil {
					t.Fatalf("lock after a write in time: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrLockLost) {
				t.Fatalf("stalled index write: %v, want ErrLockLost", err)
			}
			if be.saved.Load() != 0 {
				t.Fatal("an index file was stored")
			}
			if err := l.Check(ctx); !errors.Is(err, ErrLockLost) {
				t.Fatalf("lock after the stalled write: %v, want it lost", err)
			}
		})
	}
}

// TestGuardSuspendedInsideWrite: a write that ends in time by Go's timers
// but outlasted the bound by CLOCK_BOOTTIME (the machine slept inside it)
// reports the lock lost, so the snapshot that would follow is not written.
func TestGuardSuspendedInsideWrite(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, 2, Options{})
	timing := LockTiming{StaleAfter: time.Hour, Refresh: 10 * time.Minute}
	l, _, err := r.Lock(ctx, false, LockOptions{Timing: &timing})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(ctx)
	var slept atomic.Int64
	defer func(old func() time.Duration) { guardClock = old }(guardClock)
	guardClock = func() time.Duration { return bootTime() + time.Duration(slept.Load()) }

	_, done, err := l.Guard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := done(nil); err != nil {
		t.Fatalf("write without sleep: %v", err)
	}
	_, done, err = l.Guard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slept.Store(int64(20 * time.Minute)) // more than StaleAfter/4 while "writing"
	if err := done(nil); !errors.Is(err, ErrLockLost) {
		t.Fatalf("write across a 20 min sleep: %v, want ErrLockLost", err)
	}
	if _, _, err := l.Guard(ctx); !errors.Is(err, ErrLockLost) {
		t.Fatalf("next commit step: %v, want ErrLockLost", err)
	}
}

// TestGuardCallerDeadlineIsNotOverrun: a write that ends because the
// caller's own context ran out is the caller's error, not a lost lock.
func TestGuardCallerDeadlineIsNotOverrun(t *testing.T) {
	r, _ := newTestRepo(t, 2, Options{})
	timing := LockTiming{StaleAfter: time.Hour, Refresh: 10 * time.Minute}
	l, _, err := r.Lock(context.Background(), false, LockOptions{Timing: &timing})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	wctx, done, err := l.Guard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	<-wctx.Done()
	if err := done(wctx.Err()); errors.Is(err, ErrLockLost) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("done after the caller's deadline: %v", err)
	}
	if err := l.Check(context.Background()); err != nil {
		t.Fatalf("lock after the caller's deadline: %v", err)
	}
}
