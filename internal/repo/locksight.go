package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
)

// Lock sightings (docs/concurrency.md §4.7, F1). Every live lock is
// rewritten under a new name at each refresh (cairn's and restic's), so a
// lock file that this host has seen listed for longer than the staleness
// bound belongs to a process that stopped refreshing — whatever the clock of
// the host that wrote it says (H03). Backends that report file times (local
// disks) give that age directly; for the others (REST, S3, SFTP, rclone)
// unlock remembers when it first saw each lock file.

// LockSightings remembers since when this host has seen each lock file.
type LockSightings interface {
	// Observe records that ids are listed now and returns how long this
	// host has seen each of them (0 for one seen for the first time).
	// Entries of files no longer listed are forgotten.
	Observe(ids core.IDs) (map[core.ID]time.Duration, error)
}

// sighting is when a lock file was first seen: by the wall clock, and by
// CLOCK_BOOTTIME of the boot that saw it (which does not jump when the wall
// clock is set, and keeps counting through suspend).
type sighting struct {
	Wall   time.Time     `json:"wall"`
	BootID string        `json:"boot_id,omitempty"`
	Boot   time.Duration `json:"boot_ns"`
}

func newSighting() sighting {
	return sighting{Wall: time.Now(), BootID: machineBootID(), Boot: bootTime()}
}

// since is how long ago s was recorded: by CLOCK_BOOTTIME within one boot,
// else by the wall clock; never negative.
func (s sighting) since() time.Duration {
	var d time.Duration
	if s.BootID != "" && s.BootID == machineBootID() {
		d = bootTime() - s.Boot
	} else {
		d = time.Since(s.Wall)
	}
	return max(d, 0)
}

// MemorySightings keeps sightings for the life of the process (unlock
// --wait without a cache, tests).
type MemorySightings struct {
	mu   sync.Mutex // guards seen
	seen map[core.ID]sighting
}

// Observe implements LockSightings.
func (m *MemorySightings) Observe(ids core.IDs) (map[core.ID]time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seen = observe(m.seen, ids)
	return ages(m.seen), nil
}

func observe(seen map[core.ID]sighting, ids core.IDs) map[core.ID]sighting {
	next := make(map[core.ID]sighting, len(ids))
	for _, id := range ids {
		s, ok := seen[id]
		if !ok {
			s = newSighting()
		}
		next[id] = s
	}
	return next
}

func ages(seen map[core.ID]sighting) map[core.ID]time.Duration {
	out := make(map[core.ID]time.Duration, len(seen))
	for id, s := range seen {
		out[id] = s.since()
	}
	return out
}

// FileSightings keeps sightings in a JSON file (in the repository's local
// cache directory), so that one `unlock` run can act on what an earlier run
// saw. Several processes may share the file: each reads it, merges, and
// replaces it atomically; a lost update only makes a sighting later, which
// delays a removal and never hastens one. A damaged file is ignored (all
// locks count as seen for the first time).
type FileSightings struct {
	Path string
}

type sightingsFile struct {
	Locks map[string]sighting `json:"locks"`
}

// Observe implements LockSightings.
func (f FileSightings) Observe(ids core.IDs) (map[core.ID]time.Duration, error) {
	seen := map[core.ID]sighting{}
	if b, err := os.ReadFile(f.Path); err == nil {
		var sf sightingsFile
		if json.Unmarshal(b, &sf) == nil {
			for name, s := range sf.Locks {
				if id, err := core.ParseID(name); err == nil && !s.Wall.IsZero() {
					seen[id] = s
				}
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read lock sightings: %w", err)
	}
	seen = observe(seen, ids)
	sf := sightingsFile{Locks: make(map[string]sighting, len(seen))}
	for id, s := range seen {
		sf.Locks[id.String()] = s
	}
	b, err := json.Marshal(sf)
	if err != nil {
		return nil, fmt.Errorf("write lock sightings: %w", err)
	}
	if err := writeFileAtomic(f.Path, b); err != nil {
		return nil, fmt.Errorf("write lock sightings: %w", err)
	}
	return ages(seen), nil
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory: fsync, rename, fsync the directory.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		_ = os.Remove(name)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// RemoveLocksOptions configures RemoveStaleLocks.
type RemoveLocksOptions struct {
	All bool // remove every lock, live or not (`unlock --remove-all`)
	// Sightings supplies how long this host has seen each lock file on
	// backends without file times; nil counts every lock as just seen.
	Sightings LockSightings
}

// PendingLock is a lock that is old by its own time stamp but has not been
// seen by this host for long enough to be judged stale.
type PendingLock struct {
	ID        core.ID
	Info      LockInfo
	Seen      time.Duration // how long this host has seen it (or the file's age)
	Remaining time.Duration // until it may be judged stale, if nothing changes
}

// RemoveLocksResult lists what RemoveStaleLocks removed and what it left
// waiting.
type RemoveLocksResult struct {
	Removed []core.ID
	Pending []PendingLock
}

// RemoveStaleLocks removes stale locks (every lock with opts.All). A lock is
// stale when its process is known to be dead (a cairn lock of this host,
// PID namespace and boot), or when it is older than the staleness bound both
// by its own time stamp and by its file's age — the backend's file time
// where it has one, else how long this host has seen it (opts.Sightings).
// Lock files that cannot be read are removed only with opts.All; empty lock
// files by their age alone (file time or sightings).
func (r *Repository) RemoveStaleLocks(ctx context.Context, opts RemoveLocksOptions) (RemoveLocksResult, error) {
	var res RemoveLocksResult
	locks, err := r.ListLocks(ctx)
	if err != nil {
		return res, err
	}
	// empty lock files are ignored by lock acquisition (as restic does);
	// collected here, outside the List callback (removing inside it would
	// need a second backend slot)
	var empty core.IDs
	if err := r.List(ctx, core.LockFile, func(id core.ID, size int64) error {
		if size == 0 {
			empty = append(empty, id)
		}
		return nil
	}); err != nil {
		return res, fmt.Errorf("list locks: %w", err)
	}
	timing := DefaultLockTiming()
	now := timing.Now()
	var seen map[core.ID]time.Duration
	if !opts.All {
		ids := make(core.IDs, 0, len(locks)+len(empty))
		for _, l := range locks {
			ids = append(ids, l.ID)
		}
		ids = append(ids, empty...)
		sights := opts.Sightings
		if sights == nil {
			sights = &MemorySightings{}
		}
		if seen, err = sights.Observe(ids); err != nil {
			return res, err
		}
	}
	for _, l := range locks {
		stale := opts.All
		if !stale && l.Err == nil {
			age, ok := r.fileAge(ctx, l.ID)
			if !ok {
				age = seen[l.ID]
			}
			stale = l.Info.Stale(now, age, timing.StaleAfter)
			if !stale && now.Sub(l.Info.Time) > timing.StaleAfter {
				res.Pending = append(res.Pending, PendingLock{ID: l.ID, Info: l.Info, Seen: age,
					Remaining: max(timing.StaleAfter-age, 0) + time.Second})
			}
		}
		if stale {
			if err := r.removeLock(ctx, l.ID); err != nil {
				return res, fmt.Errorf("remove lock %v: %w", l.ID.Str(), err)
			}
			res.Removed = append(res.Removed, l.ID)
		}
	}
	// An empty lock file may be a lock whose upload is still under way (a
	// store that creates the file before writing it) or was cut short: it
	// is removed like any other lock, once it has existed (file time) or
	// been seen (sightings) for longer than the staleness bound (F9).
	for _, id := range empty {
		if !opts.All {
			age, ok := r.fileAge(ctx, id)
			if !ok {
				age = seen[id]
			}
			if age <= timing.StaleAfter {
				continue
			}
		}
		if err := r.removeLock(ctx, id); err == nil {
			res.Removed = append(res.Removed, id)
		}
	}
	return res, nil
}
