package repo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
)

// ErrLocked means a conflicting lock is held by another process.
var ErrLocked = errors.New("repository is locked")

// ErrLockLost means this process's own lock vanished or could not be
// refreshed in time; the operation must stop before committing anything.
var ErrLockLost = errors.New("lock lost")

// LockInfo is the JSON content of a lock file. The cairn_* fields are
// ignored by restic.
type LockInfo struct {
	Time          time.Time `json:"time"`
	Exclusive     bool      `json:"exclusive"`
	Hostname      string    `json:"hostname"`
	Username      string    `json:"username"`
	PID           int       `json:"pid"`
	UID           uint32    `json:"uid,omitempty"`
	GID           uint32    `json:"gid,omitempty"`
	CairnOp       string    `json:"cairn_op,omitempty"`
	CairnInstance string    `json:"cairn_instance,omitempty"`
	CairnPIDNS    uint64    `json:"cairn_pidns,omitempty"`
	CairnBootID   string    `json:"cairn_bootid,omitempty"`
}

func (li LockInfo) String() string {
	kind := "non-exclusive"
	if li.Exclusive {
		kind = "exclusive"
	}
	op := ""
	if li.CairnOp != "" {
		op = " (" + li.CairnOp + ")"
	}
	return fmt.Sprintf("%s lock%s by %s@%s pid %d since %s", kind, op, li.Username, li.Hostname, li.PID, li.Time.Format(time.RFC3339))
}

// LockTiming holds the lock timing knobs, read from the environment
// (CAIRN_LOCK_STALE_AFTER, CAIRN_LOCK_REFRESH, CAIRN_CLOCK_OFFSET).
type LockTiming struct {
	StaleAfter time.Duration
	Refresh    time.Duration
	// RecheckWait is how long Lock waits between writing its lock file and
	// listing the locks again, for backends whose listings may lag behind
	// writes. Backends that promise read-after-write listings
	// (backend.ListConsistent: local disks, the in-memory backend) skip it
	// unless RecheckForced is set (CAIRN_LOCK_RECHECK_DELAY given).
	RecheckWait   time.Duration
	RecheckForced bool
	ClockOffset   time.Duration
}

// DefaultLockTiming returns restic's timing adjusted by the environment.
func DefaultLockTiming() LockTiming {
	lt := LockTiming{StaleAfter: 30 * time.Minute, Refresh: 5 * time.Minute, RecheckWait: 200 * time.Millisecond}
	if d, err := time.ParseDuration(os.Getenv("CAIRN_LOCK_STALE_AFTER")); err == nil && d > 0 {
		lt.StaleAfter = d
	}
	if d, err := time.ParseDuration(os.Getenv("CAIRN_LOCK_REFRESH")); err == nil && d > 0 {
		lt.Refresh = d
	}
	if d, err := time.ParseDuration(os.Getenv("CAIRN_LOCK_RECHECK_DELAY")); err == nil && d >= 0 {
		lt.RecheckWait, lt.RecheckForced = d, true
	}
	if d, err := time.ParseDuration(os.Getenv("CAIRN_CLOCK_OFFSET")); err == nil {
		lt.ClockOffset = d
	}
	if lt.Refresh > lt.StaleAfter/2 {
		lt.Refresh = lt.StaleAfter / 2
	}
	return lt
}

// Now returns the (possibly skewed, for tests) current time.
func (lt LockTiming) Now() time.Time { return time.Now().Add(lt.ClockOffset) }

var (
	instanceOnce sync.Once
	instanceID   string
)

// InstanceID is a random ID for this process, stable across lock refreshes.
func InstanceID() string {
	instanceOnce.Do(func() { instanceID = core.NewRandomID().String()[:16] })
	return instanceID
}

func newLockInfo(exclusive bool, op string, now time.Time) LockInfo {
	li := LockInfo{Time: now, Exclusive: exclusive, Hostname: hostname(), PID: os.Getpid(),
		UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), CairnOp: op, CairnInstance: InstanceID(), CairnPIDNS: pidNamespace(), CairnBootID: machineBootID()}
	if u, err := user.Current(); err == nil {
		li.Username = u.Username
	}
	return li
}

// Stale reports whether li is stale for an observer on this host. age is
// how long the observer has known the lock (by its own clock, so clock
// skew between hosts cannot make a fresh lock look old: H03); the embedded
// time only counts when it, too, is older than staleAfter.
func (li LockInfo) Stale(now time.Time, knownFor time.Duration, staleAfter time.Duration) bool {
	if now.Sub(li.Time) > staleAfter && knownFor > staleAfter {
		return true
	}
	if !li.pidCheckable(hostname(), pidNamespace(), machineBootID()) {
		return false
	}
	return !processAlive(li.PID)
}

// pidCheckable reports whether the lock's PID names a process the observer
// (with the given host name, PID namespace inode and boot ID) can look up:
// only a cairn lock that records the observer's PID namespace and boot ID
// (docs/concurrency.md §4.7 (b), F2). The host name alone proves nothing:
// every host's initial PID namespace has the same inode, and a restic lock
// (no cairn_pidns, no cairn_bootid) may come from a container or another
// machine of the same name (H04), so restic locks are never judged by PID.
func (li LockInfo) pidCheckable(host string, pidns uint64, boot string) bool {
	if li.Hostname != host {
		return false
	}
	if li.CairnPIDNS == 0 || pidns == 0 || li.CairnPIDNS != pidns {
		return false // no or another PID namespace: the PID means nothing here
	}
	if li.CairnBootID == "" || boot == "" || li.CairnBootID != boot {
		return false // another machine (or boot) with the same host name
	}
	return true
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// LoadLock loads one lock file.
func (r *Repository) LoadLock(ctx context.Context, id core.ID) (LockInfo, error) {
	var li LockInfo
	err := r.LoadJSONUnpacked(ctx, core.LockFile, id, &li)
	return li, err
}

// LockEntry is a lock file and its content.
type LockEntry struct {
	ID   core.ID
	Info LockInfo
	Err  error // set when the file exists but could not be read
}

// SetLockSightings makes every listing of the lock files (each lock
// acquisition, check, unlock) record in s since when this host has seen
// each lock file, on backends that report no file times. unlock judges a
// lock's age by these sightings (F1), so a lock that a crashed process left
// behind can be removed by the first unlock on a host where other commands
// have seen it long enough. Recording more sightings only makes them
// earlier and closer to the truth: a live lock is renamed at every refresh,
// so no listing can see one file of it for long. Errors of s are ignored
// (a missing sighting delays a removal, never hastens one). Call once,
// after Open and before any lock operation.
func (r *Repository) SetLockSightings(s LockSightings) { r.lockSights = s }

// ListLocks loads every lock file. Empty files (crash during upload, H07)
// and files that vanish while listing (H06) are skipped.
func (r *Repository) ListLocks(ctx context.Context) ([]LockEntry, error) {
	// Collect first, load afterwards: loading inside the List callback
	// would need a second backend slot while List holds one.
	var ids, all []core.ID
	err := r.List(ctx, core.LockFile, func(id core.ID, size int64) error {
		all = append(all, id)
		if size > 0 {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	if r.lockSights != nil && !r.hasFileTimes() {
		_, _ = r.lockSights.Observe(all)
	}
	var out []LockEntry
	for _, id := range ids {
		li, err := r.LoadLock(ctx, id)
		if err != nil {
			if backend.IsNotExist(err) {
				continue
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			out = append(out, LockEntry{ID: id, Err: err})
			continue
		}
		out = append(out, LockEntry{ID: id, Info: li})
	}
	return out, nil
}

// Lock is a held repository lock, refreshed in the background.
type Lock struct {
	r      *Repository
	timing LockTiming
	cancel context.CancelFunc // cancels the operation's context on loss

	mu          sync.Mutex // guards info, id, lastRefresh, lost, released
	info        LockInfo
	id          core.ID
	lastRefresh time.Duration // bootTime() just before the last successful write began
	lost        error
	released    bool

	stop chan struct{}
	done chan struct{}
}

// LockOptions tune acquisition.
type LockOptions struct {
	Op        string        // cairn_op recorded in the lock
	RetryLock time.Duration // keep retrying for this long (--retry-lock)
	Timing    *LockTiming   // nil: DefaultLockTiming()
}

// LockError describes why a lock could not be taken.
type LockError struct {
	Conflicts []LockEntry
}

func (e *LockError) Error() string {
	msg := "repository is already locked"
	for _, c := range e.Conflicts {
		if c.Err != nil {
			msg += fmt.Sprintf("\n  lock %v could not be read: %v (remove it with `cairn unlock` if no other process is running)", c.ID.Str(), c.Err)
		} else {
			msg += fmt.Sprintf("\n  %v (lock %v)", c.Info, c.ID.Str())
		}
	}
	return msg
}

func (e *LockError) Unwrap() error { return ErrLocked }

func conflicts(exclusive bool, locks []LockEntry, ignore core.IDSet) []LockEntry {
	var out []LockEntry
	for _, l := range locks {
		if ignore.Has(l.ID) {
			continue
		}
		if exclusive || l.Info.Exclusive || l.Err != nil {
			out = append(out, l)
		}
	}
	return out
}

// Lock takes a lock (exclusive or not) and returns it with a context that
// is cancelled if the lock is lost.
func (r *Repository) Lock(ctx context.Context, exclusive bool, opts LockOptions) (*Lock, context.Context, error) {
	timing := DefaultLockTiming()
	if opts.Timing != nil {
		timing = *opts.Timing
	}
	deadline := time.Now().Add(opts.RetryLock)
	delay := 5 * time.Second
	if opts.RetryLock > 0 && opts.RetryLock < 20*time.Second {
		delay = opts.RetryLock / 4
	}
	for {
		l, lctx, err := r.tryLock(ctx, exclusive, opts.Op, timing)
		if err == nil {
			return l, lctx, nil
		}
		var le *LockError
		if !errors.As(err, &le) || time.Now().Add(delay).After(deadline) {
			return nil, nil, err
		}
		jitter := time.Duration(rand.Int64N(int64(delay)/4 + 1))
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(delay + jitter):
		}
		if delay *= 2; delay > time.Minute {
			delay = time.Minute
		}
	}
}

func (r *Repository) tryLock(ctx context.Context, exclusive bool, op string, timing LockTiming) (*Lock, context.Context, error) {
	locks, err := r.ListLocks(ctx)
	if err != nil {
		return nil, nil, err
	}
	if c := conflicts(exclusive, locks, nil); len(c) > 0 {
		return nil, nil, &LockError{Conflicts: c}
	}
	// the commit window counts from before the write: others judge the
	// lock's age by its embedded time (or the file's mtime), both set no
	// earlier than this, however long the write itself takes
	written := bootTime()
	li := newLockInfo(exclusive, op, timing.Now())
	id, err := r.SaveJSONUnpacked(ctx, core.LockFile, li)
	if err != nil {
		return nil, nil, fmt.Errorf("write lock: %w", err)
	}
	// Mutual exclusion needs only write-then-list on a consistent store
	// (docs/concurrency.md §4.3); the wait covers stores whose listings lag.
	if wait := timing.RecheckWait; wait > 0 && (timing.RecheckForced || !backend.ListConsistent(r.be)) {
		select {
		case <-ctx.Done():
			_ = r.removeLock(context.WithoutCancel(ctx), id)
			return nil, nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	locks, err = r.ListLocks(ctx)
	if err != nil {
		_ = r.removeLock(context.WithoutCancel(ctx), id)
		return nil, nil, err
	}
	if c := conflicts(exclusive, locks, core.NewIDSet(id)); len(c) > 0 {
		_ = r.removeLock(context.WithoutCancel(ctx), id)
		return nil, nil, &LockError{Conflicts: c}
	}
	// The own lock file must be listed and decrypt to exactly what was
	// written (H07): a truncated, damaged or vanished file is not a lock
	// (restic 0.14 silently ignores lock files it cannot load).
	if err := verifyOwnLock(locks, id, li); err != nil {
		_ = r.removeLock(context.WithoutCancel(ctx), id)
		return nil, nil, fmt.Errorf("write lock: %w", err)
	}
	lctx, cancel := context.WithCancelCause(ctx)
	l := &Lock{r: r, timing: timing, info: li, id: id, lastRefresh: written,
		cancel: func() { cancel(ErrLockLost) }, stop: make(chan struct{}), done: make(chan struct{})}
	go l.refresher()
	return l, lctx, nil
}

// verifyOwnLock checks that the listing locks holds the lock file id and
// that it decoded to li. The error wraps ErrLockLost.
func verifyOwnLock(locks []LockEntry, id core.ID, li LockInfo) error {
	for _, l := range locks {
		if l.ID != id {
			continue
		}
		if l.Err != nil {
			return fmt.Errorf("own lock file %v does not read back (%v); removed it: %w", id.Str(), l.Err, ErrLockLost)
		}
		if !sameLockInfo(l.Info, li) {
			return fmt.Errorf("own lock file %v reads back as %v, not as written (%v); removed it: %w", id.Str(), l.Info, li, ErrLockLost)
		}
		return nil
	}
	return fmt.Errorf("own lock file %v vanished or is empty right after it was written: %w", id.Str(), ErrLockLost)
}

// sameLockInfo compares two lock contents, the times by instant (a JSON
// round trip drops the monotonic reading and may change the location).
func sameLockInfo(a, b LockInfo) bool {
	if !a.Time.Equal(b.Time) {
		return false
	}
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b
}

func (r *Repository) removeLock(ctx context.Context, id core.ID) error {
	return r.be.Remove(ctx, backend.Handle{Type: core.LockFile, Name: id.String()})
}

// ID returns the current lock file ID.
func (l *Lock) ID() core.ID {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id
}

func (l *Lock) refresher() {
	defer close(l.done)
	poll := time.Second
	if l.timing.Refresh < 4*time.Second {
		poll = l.timing.Refresh / 4
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		since := bootTime() - l.lastRefresh
		due := since >= l.timing.Refresh
		// Boot time counts suspension: a process that slept (H02) sees a
		// large gap here.
		late := since > l.timing.StaleAfter-l.timing.Refresh*3/2
		l.mu.Unlock()
		if late {
			l.markLost(fmt.Errorf("%w: not refreshed for longer than the staleness bound (process suspended?)", ErrLockLost))
			return
		}
		if due {
			if err := l.refresh(context.Background()); err != nil {
				if errors.Is(err, ErrLockLost) {
					l.markLost(err)
					return
				}
				// transient: try again at the next tick
			}
		}
	}
}

func (l *Lock) markLost(err error) {
	l.mu.Lock()
	if l.lost == nil {
		l.lost = err
	}
	l.mu.Unlock()
	l.cancel()
}

// refresh writes a new lock file and removes the old one, after checking
// that the old one still exists (if another process removed it as stale,
// it may already have acted on that: the operation must stop).
func (l *Lock) refresh(ctx context.Context) error {
	if err := failpoint("lock.before-refresh"); err != nil {
		return err
	}
	l.mu.Lock()
	old := l.id
	li := l.info
	l.mu.Unlock()
	if _, err := l.r.be.Stat(ctx, backend.Handle{Type: core.LockFile, Name: old.String()}); err != nil {
		if backend.IsNotExist(err) {
			return fmt.Errorf("%w: lock file %v was removed by another process", ErrLockLost, old.Str())
		}
		return err
	}
	written := bootTime() // before the write, as in tryLock
	li.Time = l.timing.Now()
	id, err := l.r.SaveJSONUnpacked(ctx, core.LockFile, li)
	if err != nil {
		return err
	}
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		_ = l.r.removeLock(ctx, id)
		return nil
	}
	// The old file must still be there after the new one is written:
	// otherwise another process removed it in between and may already
	// have acted on that (spin found data loss without this check).
	if _, err := l.r.be.Stat(ctx, backend.Handle{Type: core.LockFile, Name: old.String()}); err != nil {
		l.mu.Unlock()
		_ = l.r.removeLock(ctx, id)
		if backend.IsNotExist(err) {
			return fmt.Errorf("%w: lock file %v was removed by another process", ErrLockLost, old.Str())
		}
		return err
	}
	l.id, l.info, l.lastRefresh = id, li, written
	l.mu.Unlock()
	return l.r.removeLock(ctx, old)
}

// Check returns an error if the lock was lost or its file is gone. Call it
// before every commit step (index, snapshot, deletions).
func (l *Lock) Check(ctx context.Context) error {
	l.mu.Lock()
	lost, id, last := l.lost, l.id, l.lastRefresh
	l.mu.Unlock()
	if lost != nil {
		return lost
	}
	// A commit needs a lock refreshed within half the staleness bound, by
	// a clock that counts suspension: then no other process can judge it
	// stale before the commit's single write is done.
	if bootTime()-last > l.timing.StaleAfter/2 {
		err := fmt.Errorf("%w: not refreshed in time", ErrLockLost)
		l.markLost(err)
		return err
	}
	for {
		_, err := l.r.be.Stat(ctx, backend.Handle{Type: core.LockFile, Name: id.String()})
		if err == nil {
			return nil
		}
		if !backend.IsNotExist(err) {
			return err
		}
		// The refresher may have replaced the file meanwhile: only a
		// missing *current* lock file means the lock was lost.
		l.mu.Lock()
		cur := l.id
		l.mu.Unlock()
		if cur != id {
			id = cur
			continue
		}
		err = fmt.Errorf("%w: lock file %v was removed by another process", ErrLockLost, id.Str())
		l.markLost(err)
		return err
	}
}

// Guard is Check for a commit step made of one write (an index file, a
// snapshot). If the check passes it returns the context for that write and
// a function to call with the write's result. The context ends after
// StaleAfter/4 (A-FREEZE: a guarded write must end well before anyone can
// judge the lock stale; docs/concurrency.md §4.5), so a write held up by a
// stalled server or a stopped process is abandoned, and the lock then
// counts as lost. done cancels the context; if the write outlasted the
// bound by CLOCK_BOOTTIME (the machine was suspended inside it, which Go's
// timers do not count) it marks the lock lost too, so that no later commit
// step runs, and returns that error.
func (l *Lock) Guard(ctx context.Context) (gctx context.Context, done func(error) error, err error) {
	if err := l.Check(ctx); err != nil {
		return nil, nil, err
	}
	bound := l.timing.StaleAfter / 4
	start := guardClock()
	gctx, cancel := context.WithTimeout(ctx, bound)
	done = func(werr error) error {
		// the guard's own deadline, not one of the caller's context
		overran := (gctx.Err() == context.DeadlineExceeded && ctx.Err() == nil) || guardClock()-start > bound
		cancel()
		if !overran {
			return werr
		}
		lost := fmt.Errorf("%w: a commit write did not finish within %v (A-FREEZE)", ErrLockLost, bound)
		l.markLost(lost)
		if werr != nil && ctx.Err() == nil {
			return fmt.Errorf("%w (%v)", lost, werr)
		}
		return lost
	}
	return gctx, done, nil
}

// GuardIfLocked is l.Guard, or, without a lock (--no-lock, l nil), the
// caller's context and a done that returns the write's own result.
func GuardIfLocked(ctx context.Context, l *Lock) (context.Context, func(error) error, error) {
	if l == nil {
		return ctx, func(err error) error { return err }, nil
	}
	return l.Guard(ctx)
}

// guardClock is the clock Guard measures a write with (bootTime; a
// variable so that tests can suspend the machine).
var guardClock = bootTime

// Unlock stops refreshing and removes the lock file.
func (l *Lock) Unlock(ctx context.Context) error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return nil
	}
	l.released = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	l.mu.Lock()
	id := l.id
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	return l.r.removeLock(ctx, id)
}

// fileAge is how long a lock file has existed by the backend's own file
// time, for backends that report one (a local disk); ok is false otherwise.
// hasFileTimes reports whether the backend, under its decorators, gives
// file times (then lock ages come from them, not from sightings).
func (r *Repository) hasFileTimes() bool { return backend.HasModTime(r.be) }

func (r *Repository) fileAge(ctx context.Context, id core.ID) (age time.Duration, ok bool) {
	t, err := backend.ModTime(ctx, r.be, backend.Handle{Type: core.LockFile, Name: id.String()})
	if err != nil {
		return 0, false
	}
	return max(time.Since(t), 0), true
}

// ParseDurationEnv is a helper for tests and commands.
func ParseDurationEnv(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		if n, err := strconv.Atoi(v); err == nil {
			return time.Duration(n) * time.Second
		}
	}
	return def
}

// LockTimingNow is the current time as the lock protocol sees it (with
// CAIRN_CLOCK_OFFSET applied).
func (r *Repository) LockTimingNow() time.Time { return DefaultLockTiming().Now() }
