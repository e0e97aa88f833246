package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
)

// foreignLock writes a restic-style lock of another host whose time stamp
// is age old by that host's clock.
func foreignLock(t *testing.T, r *Repository, age time.Duration) core.ID {
	t.Helper()
	li := LockInfo{Time: time.Now().Add(-age), Hostname: "elsewhere", Username: "u", PID: 4242}
	id, err := r.SaveJSONUnpacked(context.Background(), core.LockFile, li)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func writeSightings(t *testing.T, path string, locks map[core.ID]sighting) {
	t.Helper()
	sf := sightingsFile{Locks: map[string]sighting{}}
	for id, s := range locks {
		sf.Locks[id.String()] = s
	}
	b, err := json.Marshal(sf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRemoveStaleLocksBySightings pins F1/H03 on backends without file
// times (mem here, like REST, S3, SFTP): a lock whose time stamp is old is
// not removed on the writer's clock alone; it is removed once this host has
// seen the same lock file for longer than the staleness bound, remembered
// across runs in a sightings file; a lock young by its own clock is never
// removed by age.
func TestRemoveStaleLocksBySightings(t *testing.T) {
	ctx := context.Background()
	r, err := Init(ctx, mem.New(), "secret", 2, testParams, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stale := DefaultLockTiming().StaleAfter
	old := foreignLock(t, r, 2*stale) // writer's clock: long ago
	path := filepath.Join(t.TempDir(), "sub", "lock-sightings.json")
	sights := FileSightings{Path: path}

	// first sight: nothing removed, the lock is reported pending
	res, err := r.RemoveStaleLocks(ctx, RemoveLocksOptions{Sightings: sights})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 0 {
		t.Fatalf("removed %v on the writer's time stamp alone", res.Removed)
	}
	if len(res.Pending) != 1 || res.Pending[0].ID != old || res.Pending[0].Remaining < stale-time.Minute {
		t.Fatalf("pending %+v", res.Pending)
	}
	// without remembered sightings (RemoveLocks): never removed by age
	if ids, err := removeLocks(ctx, r, false); err != nil || len(ids) != 0 {
		t.Fatalf("RemoveLocks without sightings removed %v %v", ids, err)
	}

	// seen a minute ago by this boot: still pending, with the rest to wait
	writeSightings(t, path, map[core.ID]sighting{old: {Wall: time.Now().Add(-time.Minute), BootID: machineBootID(), Boot: bootTime() - time.Minute}})
	res, err = r.RemoveStaleLocks(ctx, RemoveLocksOptions{Sightings: sights})
	if err != nil || len(res.Removed) != 0 || len(res.Pending) != 1 {
		t.Fatalf("seen a minute ago: %+v %v", res, err)
	}
	if rem := res.Pending[0].Remaining; rem > stale-time.Minute+2*time.Second || rem < stale-2*time.Minute {
		t.Fatalf("remaining %v, want about %v", rem, stale-time.Minute)
	}

	// the wall clock says long ago but this boot's clock says a minute: the
	// boot clock wins (a wall clock set forward does not age a lock)
	writeSightings(t, path, map[core.ID]sighting{old: {Wall: time.Now().Add(-10 * stale), BootID: machineBootID(), Boot: bootTime() - time.Minute}})
	if res, err = r.RemoveStaleLocks(ctx, RemoveLocksOptions{Sightings: sights}); err != nil || len(res.Removed) != 0 {
		t.Fatalf("aged by a wall clock jump: %+v %v", res, err)
	}

	// a young lock (by its own clock) seen for long: live as far as anyone
	// can tell, neither removed nor pending
	young := foreignLock(t, r, 0)
	// seen before the bound by an earlier boot (wall clock), together with old
	writeSightings(t, path, map[core.ID]sighting{
		old:   {Wall: time.Now().Add(-2 * stale), BootID: "another-boot", Boot: 0},
		young: {Wall: time.Now().Add(-2 * stale), BootID: "another-boot", Boot: 0},
	})
	res, err = r.RemoveStaleLocks(ctx, RemoveLocksOptions{Sightings: sights})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 1 || res.Removed[0] != old {
		t.Fatalf("removed %v, want only the old lock %v", res.Removed, old.Str())
	}
	if len(res.Pending) != 0 {
		t.Fatalf("pending %+v", res.Pending)
	}

	// the removed lock's sighting is forgotten at the next look; the young
	// one's is kept
	if _, err := r.RemoveStaleLocks(ctx, RemoveLocksOptions{Sightings: sights}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sf sightingsFile
	if err := json.Unmarshal(b, &sf); err != nil {
		t.Fatal(err)
	}
	if _, ok := sf.Locks[old.String()]; ok || len(sf.Locks) != 1 {
		t.Fatalf("sightings after removal: %v", sf.Locks)
	}

	// a damaged sightings file counts as no sightings and is replaced
	if err := os.WriteFile(path, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	old2 := foreignLock(t, r, 2*stale)
	if res, err = r.RemoveStaleLocks(ctx, RemoveLocksOptions{Sightings: sights}); err != nil || len(res.Removed) != 0 || len(res.Pending) != 1 || res.Pending[0].ID != old2 {
		t.Fatalf("after a damaged sightings file: %+v %v", res, err)
	}
	if b, _ := os.ReadFile(path); json.Unmarshal(b, &sf) != nil {
		t.Fatalf("sightings file not rewritten: %q", b)
	}
}

// TestRefreshedLockIsNeverSeenLong: a live lock is rewritten under a new
// name at every refresh, so however long it is held, this host never sees
// one of its files for long — the premise of judging by sightings.
func TestRefreshedLockIsNeverSeenLong(t *testing.T) {
	ctx := context.Background()
	r, err := Init(ctx, mem.New(), "secret", 2, testParams, Options{})
	if err != nil {
		t.Fatal(err)
	}
	timing := LockTiming{StaleAfter: time.Hour, Refresh: 50 * time.Millisecond}
	l, _, err := r.Lock(ctx, false, LockOptions{Timing: &timing})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(ctx)
	var sights MemorySightings
	first := l.ID()
	deadline := time.Now().Add(10 * time.Second)
	for l.ID() == first && time.Now().Before(deadline) {
		if _, err := r.RemoveStaleLocks(ctx, RemoveLocksOptions{Sightings: &sights}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if l.ID() == first {
		t.Fatal("lock not refreshed")
	}
	ages, err := sights.Observe(core.IDs{l.ID()})
	if err != nil {
		t.Fatal(err)
	}
	if ages[l.ID()] > time.Second {
		t.Fatalf("the refreshed lock file counts as seen for %v", ages[l.ID()])
	}
}

// removeLocks is RemoveStaleLocks without remembered sightings: on backends
// without file times only dead same-host processes' locks (or, with all,
// every lock) are removed.
func removeLocks(ctx context.Context, r *Repository, all bool) ([]core.ID, error) {
	res, err := r.RemoveStaleLocks(ctx, RemoveLocksOptions{All: all})
	return res.Removed, err
}

// readSightings returns the sightings recorded in path (nil if none).
func readSightings(t *testing.T, path string) map[core.ID]sighting {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var sf sightingsFile
	if err := json.Unmarshal(b, &sf); err != nil {
		t.Fatal(err)
	}
	out := map[core.ID]sighting{}
	for name, s := range sf.Locks {
		id, err := core.ParseID(name)
		if err != nil {
			t.Fatal(err)
		}
		out[id] = s
	}
	return out
}

// timedBackend reports file times, like the local backend.
type timedBackend struct{ backend.Backend }

func (timedBackend) ModTime(context.Context, backend.Handle) (time.Time, error) {
	return time.Now(), nil
}

// TestLockListingRecordsSightings (F1): every command that lists the lock
// files records its sightings, so the first unlock on a host can judge a
// lock that other commands have seen long enough; without those records it
// could only report the lock as pending.
func TestLockListingRecordsSightings(t *testing.T) {
	ctx := context.Background()
	stale := DefaultLockTiming().StaleAfter
	for _, record := range []bool{true, false} {
		t.Run(fmt.Sprintf("record=%v", record), func(t *testing.T) {
			be := mem.New()
			r, err := Init(ctx, be, "secret", 2, testParams, Options{})
			if err != nil {
				t.Fatal(err)
			}
			old := foreignLock(t, r, 2*stale) // left by a crashed process elsewhere
			empty := core.Hash([]byte("empty lock"))
			if err := be.Save(ctx, backend.Handle{Type: core.LockFile, Name: empty.String()}, backend.NewByteReader(nil)); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "lock-sightings.json")
			if record {
				r.SetLockSightings(FileSightings{Path: path})
			}
			// a backup: takes and releases a shared lock
			l, _, err := r.Lock(ctx, false, LockOptions{Op: "backup"})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			seen := readSightings(t, path)
			if record {
				if _, ok := seen[old]; !ok {
					t.Fatalf("the lock listing did not record lock %v: %v", old.Str(), seen)
				}
				if _, ok := seen[empty]; !ok {
					t.Fatalf("the lock listing did not record the empty lock file: %v", seen)
				}
			} else if seen != nil {
				t.Fatalf("sightings recorded without SetLockSightings: %v", seen)
			}
			// 31 minutes pass (the recorded sightings move back)
			for id, s := range seen {
				s.Wall = s.Wall.Add(-stale - time.Minute)
				s.Boot -= stale + time.Minute
				seen[id] = s
			}
			if record {
				writeSightings(t, path, seen)
			}
			// the first unlock on this host, in another process
			r2, err := Open(ctx, be, "secret", Options{})
			if err != nil {
				t.Fatal(err)
			}
			res, err := r2.RemoveStaleLocks(ctx, RemoveLocksOptions{Sightings: FileSightings{Path: path}})
			if err != nil {
				t.Fatal(err)
			}
			removed := core.NewIDSet(res.Removed...)
			if record {
				if !removed.Has(old) || !removed.Has(empty) || len(res.Pending) != 0 {
					t.Fatalf("with recorded sightings: removed %v, pending %+v; want the old and the empty lock removed", res.Removed, res.Pending)
				}
			} else if len(res.Removed) != 0 || len(res.Pending) != 1 || res.Pending[0].ID != old {
				t.Fatalf("without recorded sightings: removed %v, pending %+v; want the old lock pending", res.Removed, res.Pending)
			}
		})
	}
}

// TestNoSightingsWithFileTimes: on a backend with file times (local) lock
// ages come from them, and listings write no sightings file.
func TestNoSightingsWithFileTimes(t *testing.T) {
	ctx := context.Background()
	r, err := Init(ctx, timedBackend{mem.New()}, "secret", 2, testParams, Options{})
	if err != nil {
		t.Fatal(err)
	}
	foreignLock(t, r, 0)
	path := filepath.Join(t.TempDir(), "lock-sightings.json")
	r.SetLockSightings(FileSightings{Path: path})
	if _, err := r.ListLocks(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("sightings file written on a backend with file times: %v", err)
	}
}
