package repo

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/local"
	"github.com/cairn-backup/cairn/internal/core"
)

var fastTiming = LockTiming{StaleAfter: 2 * time.Second, Refresh: 200 * time.Millisecond, RecheckWait: 10 * time.Millisecond}

func TestLockConflicts(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, 2, Options{})
	opts := LockOptions{Timing: &fastTiming, Op: "test"}
	a, _, err := r.Lock(ctx, false, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := r.Lock(ctx, false, opts)
	if err != nil {
		t.Fatalf("two shared locks must coexist: %v", err)
	}
	if _, _, err := r.Lock(ctx, true, opts); !errors.Is(err, ErrLocked) {
		t.Fatalf("exclusive over shared: %v", err)
	}
	a.Unlock(ctx)
	b.Unlock(ctx)
	x, _, err := r.Lock(ctx, true, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Lock(ctx, false, opts); !errors.Is(err, ErrLocked) {
		t.Fatalf("shared over exclusive: %v", err)
	}
	x.Unlock(ctx)
	if ids, _ := r.ListIDs(ctx, core.LockFile); len(ids) != 0 {
		t.Fatalf("locks left behind: %v", ids)
	}
}

func TestLockRetry(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, 2, Options{})
	x, _, err := r.Lock(ctx, true, LockOptions{Timing: &fastTiming})
	if err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(300 * time.Millisecond); x.Unlock(ctx) }()
	l, _, err := r.Lock(ctx, false, LockOptions{Timing: &fastTiming, RetryLock: 5 * time.Second})
	if err != nil {
		t.Fatalf("retry-lock did not wait for the exclusive lock: %v", err)
	}
	l.Unlock(ctx)
}

func TestLockRefreshAndLoss(t *testing.T) {
	ctx := context.Background()
	r, be := newTestRepo(t, 2, Options{})
	l, lctx, err := r.Lock(ctx, false, LockOptions{Timing: &fastTiming})
	if err != nil {
		t.Fatal(err)
	}
	first := l.ID()
	deadline := time.Now().Add(5 * time.Second)
	for l.ID() == first && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if l.ID() == first {
		t.Fatal("lock was not refreshed")
	}
	if _, err := be.Stat(ctx, backend.Handle{Type: core.LockFile, Name: first.String()}); !backend.IsNotExist(err) {
		t.Fatal("old lock file not removed after refresh")
	}
	if err := l.Check(ctx); err != nil {
		t.Fatal(err)
	}
	// another process removes our lock (e.g. unlock of a "stale" lock)
	be.Remove(ctx, backend.Handle{Type: core.LockFile, Name: l.ID().String()})
	if err := l.Check(ctx); !errors.Is(err, ErrLockLost) {
		t.Fatalf("Check after removal: %v", err)
	}
	select {
	case <-lctx.Done():
		if !errors.Is(context.Cause(lctx), ErrLockLost) {
			t.Fatalf("cause %v", context.Cause(lctx))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("operation context not cancelled on lock loss")
	}
	l.Unlock(ctx)
}

func TestStaleRules(t *testing.T) {
	now := time.Now()
	self := newLockInfo(false, "x", now)
	if self.Stale(now, 0, time.Hour) {
		t.Fatal("own live lock stale")
	}
	dead := self
	dead.PID = 1 << 30
	if !dead.Stale(now, 0, time.Hour) {
		t.Fatal("dead same-host process not stale")
	}
	otherNS := dead
	otherNS.CairnPIDNS = self.CairnPIDNS + 1
	if otherNS.Stale(now, 0, time.Hour) {
		t.Fatal("lock from another PID namespace judged by PID (H04)")
	}
	remote := self
	remote.Hostname = "elsewhere"
	remote.Time = now.Add(-2 * time.Hour) // remote clock far behind (H03)
	if remote.Stale(now, time.Minute, time.Hour) {
		t.Fatal("lock judged stale from its embedded time alone")
	}
	if !remote.Stale(now, 2*time.Hour, time.Hour) {
		t.Fatal("old lock not stale")
	}
}

// TestEmptyLockIgnoredAndRemoved (F9): an empty lock file does not block
// locking (restic ignores them too), and unlock removes it only once it is
// older than the staleness bound — by this host's sightings where the
// backend has no file times, by its modification time where it has — since
// it may be a lock whose upload is still under way.
func TestEmptyLockIgnoredAndRemoved(t *testing.T) {
	ctx := context.Background()
	r, be := newTestRepo(t, 2, Options{})
	empty := core.Hash(nil)
	be.Save(ctx, backend.Handle{Type: core.LockFile, Name: empty.String()}, backend.NewByteReader(nil))
	l, _, err := r.Lock(ctx, true, LockOptions{Timing: &fastTiming})
	if err != nil {
		t.Fatalf("empty lock file blocked: %v", err)
	}
	l.Unlock(ctx)
	path := filepath.Join(t.TempDir(), "lock-sightings.json")
	sights := FileSightings{Path: path}
	res, err := r.RemoveStaleLocks(ctx, RemoveLocksOptions{Sightings: sights})
	if err != nil || len(res.Removed) != 0 {
		t.Fatalf("empty lock seen for the first time removed: %+v %v", res, err)
	}
	stale := DefaultLockTiming().StaleAfter
	writeSightings(t, path, map[core.ID]sighting{empty: {Wall: time.Now().Add(-2 * stale)}})
	res, err = r.RemoveStaleLocks(ctx, RemoveLocksOptions{Sightings: sights})
	if err != nil || len(res.Removed) != 1 || res.Removed[0] != empty {
		t.Fatalf("empty lock seen for longer than the bound: %+v %v", res, err)
	}

	// local backend: the file's modification time decides
	ldir := t.TempDir()
	lbe, err := local.Create(ctx, ldir)
	if err != nil {
		t.Fatal(err)
	}
	lr, err := Init(ctx, lbe, "pw", 2, testParams, Options{})
	if err != nil {
		t.Fatal(err)
	}
	lbe.Save(ctx, backend.Handle{Type: core.LockFile, Name: empty.String()}, backend.NewByteReader(nil))
	if ids, err := removeLocks(ctx, lr, false); err != nil || len(ids) != 0 {
		t.Fatalf("new empty lock file removed: %v %v", ids, err)
	}
	old := time.Now().Add(-2 * stale)
	if err := os.Chtimes(filepath.Join(ldir, "locks", empty.String()), old, old); err != nil {
		t.Fatal(err)
	}
	if ids, err := removeLocks(ctx, lr, false); err != nil || len(ids) != 1 {
		t.Fatalf("old empty lock file kept: %v %v", ids, err)
	}
}

// TestRemoveLocksSkewedWriterClock: a lock written by a host whose clock is
// far behind looks old by its embedded time, but the file is new: unlock
// must not remove it (H03).
func TestRemoveLocksSkewedWriterClock(t *testing.T) {
	ctx := context.Background()
	be, err := local.Create(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(ctx, be, "pw", 2, testParams, Options{})
	if err != nil {
		t.Fatal(err)
	}
	li := newLockInfo(false, "backup", time.Now().Add(-2*time.Hour))
	li.Hostname = "elsewhere"
	if _, err := r.SaveJSONUnpacked(ctx, core.LockFile, li); err != nil {
		t.Fatal(err)
	}
	removed, err := removeLocks(ctx, r, false)
	if err != nil || len(removed) != 0 {
		t.Fatalf("fresh lock with a skewed clock removed: %v %v", removed, err)
	}
}

// TestIndexWriteNeedsLock: once the lock is gone, the blob saver writes
// no index file (an index write is a commit step, model finding F11).
func TestIndexWriteNeedsLock(t *testing.T) {
	ctx := context.Background()
	r, be := newTestRepo(t, 2, Options{})
	l, _, err := r.Lock(ctx, false, LockOptions{Timing: &fastTiming})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(ctx)
	r.SetCommitGuard(l.Guard)
	if _, err := r.SaveBlob(ctx, core.DataBlob, []byte("data"), core.ID{}, false); err != nil {
		t.Fatal(err)
	}
	be.Remove(ctx, backend.Handle{Type: core.LockFile, Name: l.ID().String()})
	if err := r.Flush(ctx); !errors.Is(err, ErrLockLost) {
		t.Fatalf("flush without lock: %v", err)
	}
	if ids, _ := r.ListIDs(ctx, core.IndexFile); len(ids) != 0 {
		t.Fatalf("index written without a lock: %v", ids)
	}
}
