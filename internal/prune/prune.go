package prune

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/failpoint"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/repo/pack"
	"github.com/cairn-backup/cairn/internal/snapshot"
)

// Report says what a prune did (or, with DryRun, would do).
type Report struct {
	Mode              string `json:"mode"` // "exclusive", "mark", "sweep"
	PacksRemoved      int    `json:"packs_removed"`
	PacksRepacked     int    `json:"packs_repacked"`
	PacksMarked       int    `json:"packs_marked"`
	PacksRecovered    int    `json:"packs_recovered"`
	PacksKept         int    `json:"packs_kept"`
	OrphansRemoved    int    `json:"orphans_removed"`
	BytesFreed        int64  `json:"bytes_freed"`
	BytesRepacked     int64  `json:"bytes_repacked"`
	UsedBytes         int64  `json:"used_bytes"`
	UnusedBytes       int64  `json:"unused_bytes"`
	IndexFilesWritten int    `json:"index_files_written"`
	IndexFilesDeleted int    `json:"index_files_deleted"`
	DryRun            bool   `json:"dry_run"`
}

// Locker is the lock held by the caller for the current phase; prune
// checks it before every commit step (nil: none, for tests).
type Locker interface {
	Check(ctx context.Context) error
}

// guardedWrite runs write, a commit step made of one write, like checkLock
// and, where the lock offers it (repo.Lock.Guard), within the guard's time
// bound (A-FREEZE).
func guardedWrite(ctx context.Context, l Locker, step string, write func(ctx context.Context) error) error {
	g, ok := l.(interface {
		Guard(ctx context.Context) (context.Context, func(error) error, error)
	})
	if !ok {
		if err := checkLock(ctx, l, step); err != nil {
			return err
		}
		return write(ctx)
	}
	if err := failpoint.Inject("prune." + step); err != nil {
		return err
	}
	wctx, done, err := g.Guard(ctx)
	if err != nil {
		return fmt.Errorf("prune stopped before %s: %w", step, err)
	}
	return done(write(wctx))
}

func checkLock(ctx context.Context, l Locker, step string) error {
	if err := failpoint.Inject("prune." + step); err != nil {
		return err
	}
	if l == nil {
		return nil
	}
	if err := l.Check(ctx); err != nil {
		return fmt.Errorf("prune stopped before %s: %w", step, err)
	}
	return nil
}

// state is what every phase loads first, in the safe order: snapshots
// listed before the index is read.
type state struct {
	snaps    []*snapshot.Snapshot
	idxFiles core.IDSet
	contents map[core.ID][]pack.Blob
	pending  map[core.ID]index.Pending
	listed   map[core.ID]int64
	used     core.BlobSet
}

func load(ctx context.Context, r *repo.Repository, opts Options) (*state, error) {
	opts.logf("loading snapshots and index\n")
	snaps, errs, err := r.LoadAllSnapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("load snapshots: %w", err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("a snapshot could not be loaded, refusing to prune: %w", errors.Join(errs...))
	}
	fresh := index.NewMaster()
	r.SetIndex(fresh)
	if err := r.LoadIndex(ctx); err != nil {
		return nil, fmt.Errorf("load index: %w", err)
	}
	st := &state{snaps: snaps, idxFiles: fresh.Files(), contents: fresh.PackContents(), pending: fresh.Pending(), listed: map[core.ID]int64{}}
	err = r.List(ctx, core.PackFile, func(id core.ID, size int64) error {
		st.listed[id] = size
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err) // never treat a failed listing as empty (H24)
	}
	opts.logf("finding data used by %d snapshots\n", len(snaps))
	st.used, err = UsedBlobs(ctx, r, snaps)
	if err != nil {
		return nil, fmt.Errorf("find used blobs: %w", err)
	}
	return st, nil
}

// removeStaleTemp deletes temporary files that crashed writers left in a
// local repository (they are never listed, so nothing else would).
func removeStaleTemp(ctx context.Context, r *repo.Repository) {
	type tempCleaner interface {
		RemoveStaleTemp(ctx context.Context, olderThan time.Duration) (int, error)
	}
	be := r.Backend()
	for {
		if c, ok := be.(tempCleaner); ok {
			_, _ = c.RemoveStaleTemp(ctx, time.Hour)
			return
		}
		u, ok := be.(interface{ Unwrap() backend.Backend })
		if !ok {
			return
		}
		be = u.Unwrap()
	}
}

// Exclusive runs restic's one-phase prune. The caller holds an exclusive
// lock.
func Exclusive(ctx context.Context, r *repo.Repository, l Locker, opts Options) (*Report, error) {
	st, err := load(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	plan, err := makePlan(st.contents, st.listed, st.used, r.Config().Version >= 2, opts)
	if err != nil {
		return nil, err
	}
	if !opts.DryRun {
		removeStaleTemp(ctx, r)
	}
	rep := &Report{Mode: "exclusive", DryRun: opts.DryRun, UsedBytes: plan.UsedBytes, UnusedBytes: plan.UnusedBytes,
		PacksRemoved: len(plan.Remove) + len(plan.Missing), PacksRepacked: len(plan.Repack), PacksKept: len(plan.Keep), OrphansRemoved: len(plan.Orphans),
		BytesRepacked: plan.RepackBytes}
	if opts.DryRun {
		rep.BytesFreed = plan.RemoveBytes + plan.RepackUnusedBytes
		return rep, nil
	}
	// 1. packs in no index: under an exclusive lock no writer is running,
	//    so they are leftovers of crashed runs
	if err := checkLock(ctx, l, "before-orphan-delete"); err != nil {
		return nil, err
	}
	for id := range plan.Orphans {
		if err := removePack(ctx, r, l, id); err != nil {
			return nil, err
		}
		rep.BytesFreed += st.listed[id]
	}
	// 2. repack
	if len(plan.Repack) > 0 {
		opts.logf("repacking %d packs\n", len(plan.Repack))
	}
	if err := repack(ctx, r, plan, opts.RepackProgress); err != nil {
		return nil, err
	}
	if err := checkLock(ctx, l, "after-repack"); err != nil {
		return nil, err
	}
	// 3. new index without removed and repacked packs, then drop the old
	drop := core.NewIDSet()
	for id := range plan.Remove {
		drop.Insert(id)
	}
	for id := range plan.Repack {
		drop.Insert(id)
	}
	for id := range plan.Missing {
		drop.Insert(id)
	}
	n, err := rewriteIndex(ctx, r, l, st, drop, nil)
	if err != nil {
		return nil, err
	}
	rep.IndexFilesWritten = n
	if err := checkLock(ctx, l, "after-new-index"); err != nil {
		return nil, err
	}
	if rep.IndexFilesDeleted, err = deleteFiles(ctx, r, l, core.IndexFile, st.idxFiles); err != nil {
		return nil, err
	}
	// 4. delete packs last
	if err := checkLock(ctx, l, "before-pack-delete"); err != nil {
		return nil, err
	}
	for id := range drop {
		if plan.Missing.Has(id) {
			continue
		}
		if err := removePack(ctx, r, l, id); err != nil {
			return nil, err
		}
		rep.BytesFreed += st.listed[id]
	}
	return rep, nil
}

// Mark runs phase 1 of the two-phase prune under a shared lock: it repacks
// and records unused packs as pending deletion; it deletes no pack.
func Mark(ctx context.Context, r *repo.Repository, l Locker, opts Options, now time.Time) (*Report, error) {
	st, err := load(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	// pending packs are left out of the plan: they are garbage already
	// unless a snapshot uses them again, in which case they are recovered.
	// "Uses again" means needs: a used blob with no copy in a kept pack. A
	// repacked pack still holds used blobs, but their copies are kept; if
	// it were recovered, every mark would re-plan it and give it a new
	// since, so a mark before each sweep would keep it forever.
	avail := keptBlobs(st)
	contents := map[core.ID][]pack.Blob{}
	recovered := core.NewIDSet()
	for id, blobs := range st.contents {
		if _, ok := st.pending[id]; ok {
			if needed(blobs, st.used, avail) {
				recovered.Insert(id)
				contents[id] = blobs
			}
			continue
		}
		contents[id] = blobs
	}
	listed := map[core.ID]int64{}
	for id, sz := range st.listed {
		if _, ok := st.pending[id]; !ok || recovered.Has(id) {
			listed[id] = sz
		}
	}
	plan, err := makePlan(contents, listed, st.used, r.Config().Version >= 2, opts)
	if err != nil {
		return nil, err
	}
	rep := &Report{Mode: "mark", DryRun: opts.DryRun, UsedBytes: plan.UsedBytes, UnusedBytes: plan.UnusedBytes,
		PacksRepacked: len(plan.Repack), PacksKept: len(plan.Keep), PacksRecovered: len(recovered),
		PacksMarked: len(plan.Remove) + len(plan.Repack) + len(plan.Orphans), BytesRepacked: plan.RepackBytes}
	if opts.DryRun {
		return rep, nil
	}
	if len(plan.Repack) > 0 {
		opts.logf("repacking %d packs\n", len(plan.Repack))
	}
	if err := repack(ctx, r, plan, opts.RepackProgress); err != nil {
		return nil, err
	}
	if err := checkLock(ctx, l, "after-repack"); err != nil {
		return nil, err
	}
	pending := map[core.ID]index.Pending{}
	for id, p := range st.pending {
		if !recovered.Has(id) {
			pending[id] = p
		}
	}
	for _, set := range []core.IDSet{plan.Remove, plan.Repack, plan.Orphans} {
		for id := range set {
			if _, ok := pending[id]; !ok {
				pending[id] = index.Pending{Pack: id, Since: now.UTC()}
			}
		}
	}
	drop := core.NewIDSet() // missing unused packs can go from the index now
	for id := range plan.Missing {
		drop.Insert(id)
	}
	n, err := rewriteIndex(ctx, r, l, st, drop, pending)
	if err != nil {
		return nil, err
	}
	rep.IndexFilesWritten = n
	if err := checkLock(ctx, l, "after-new-index"); err != nil {
		return nil, err
	}
	if rep.IndexFilesDeleted, err = deleteFiles(ctx, r, l, core.IndexFile, st.idxFiles); err != nil {
		return nil, err
	}
	return rep, nil
}

// Sweep runs phase 2 under an exclusive lock: pending packs marked at least
// keepDelete ago are deleted unless a snapshot uses them again (then they
// are recovered). Everything is recomputed from a fresh index and fresh
// snapshots (H09, H12, H14).
func Sweep(ctx context.Context, r *repo.Repository, l Locker, keepDelete time.Duration, now time.Time, dryRun bool) (*Report, error) {
	st, err := load(ctx, r, Options{})
	if err != nil {
		return nil, err
	}
	rep := &Report{Mode: "sweep", DryRun: dryRun}
	if !dryRun {
		removeStaleTemp(ctx, r)
	}
	avail := keptBlobs(st)
	drop := core.NewIDSet()
	orphans := core.NewIDSet()
	keepPending := map[core.ID]index.Pending{}
	for id, p := range st.pending {
		blobs, indexed := st.contents[id]
		if indexed && needed(blobs, st.used, avail) {
			rep.PacksRecovered++
			continue // a snapshot uses it: no longer pending
		}
		if now.Sub(p.Since) < keepDelete {
			keepPending[id] = p
			continue
		}
		if _, exists := st.listed[id]; !exists {
			if indexed {
				drop.Insert(id) // already gone: just forget it
			}
			continue
		}
		if indexed {
			drop.Insert(id)
		} else {
			orphans.Insert(id)
		}
	}
	// every used blob must stay reachable after the sweep
	remaining := core.NewBlobSet()
	for id, blobs := range st.contents {
		if _, ok := st.listed[id]; ok && !drop.Has(id) {
			for _, b := range blobs {
				remaining.Insert(b.BlobHandle)
			}
		}
	}
	var lost []core.BlobHandle
	for h := range st.used {
		if !remaining.Has(h) {
			lost = append(lost, h)
		}
	}
	if len(lost) > 0 {
		return nil, &ErrMissingData{Blobs: lost}
	}
	rep.PacksRemoved = len(drop)
	rep.OrphansRemoved = len(orphans)
	for id := range drop {
		rep.BytesFreed += st.listed[id]
	}
	for id := range orphans {
		rep.BytesFreed += st.listed[id]
	}
	if dryRun || (len(drop) == 0 && len(orphans) == 0 && rep.PacksRecovered == 0) {
		return rep, nil
	}
	n, err := rewriteIndex(ctx, r, l, st, drop, keepPending)
	if err != nil {
		return nil, err
	}
	rep.IndexFilesWritten = n
	if err := checkLock(ctx, l, "after-new-index"); err != nil {
		return nil, err
	}
	if rep.IndexFilesDeleted, err = deleteFiles(ctx, r, l, core.IndexFile, st.idxFiles); err != nil {
		return nil, err
	}
	if err := checkLock(ctx, l, "before-pack-delete"); err != nil {
		return nil, err
	}
	for _, set := range []core.IDSet{drop, orphans} {
		for id := range set {
			if err := removePack(ctx, r, l, id); err != nil {
				return nil, err
			}
		}
	}
	return rep, nil
}

// keptBlobs returns the blobs available in packs that stay: indexed,
// present in the backend and not pending (H16: never another pending pack).
func keptBlobs(st *state) core.BlobSet {
	avail := core.NewBlobSet()
	for id, blobs := range st.contents {
		if _, ok := st.pending[id]; ok {
			continue
		}
		if _, ok := st.listed[id]; !ok {
			continue
		}
		for _, b := range blobs {
			avail.Insert(b.BlobHandle)
		}
	}
	return avail
}

func holdsUsed(blobs []pack.Blob, used core.BlobSet) bool {
	for _, b := range blobs {
		if used.Has(b.BlobHandle) {
			return true
		}
	}
	return false
}

func holdsHandle(blobs []pack.Blob, h core.BlobHandle) bool {
	for _, b := range blobs {
		if b.BlobHandle == h {
			return true
		}
	}
	return false
}

// needed reports whether a pending pack holds a used blob that no
// non-pending pack has.
func needed(blobs []pack.Blob, used, avail core.BlobSet) bool {
	for _, b := range blobs {
		if used.Has(b.BlobHandle) && !avail.Has(b.BlobHandle) {
			return true
		}
	}
	return false
}

// removePack deletes one pack (idempotent), a guarded commit step.
func removePack(ctx context.Context, r *repo.Repository, l Locker, id core.ID) error {
	return guardedWrite(ctx, l, "pack-delete", func(ctx context.Context) error {
		if err := r.Backend().Remove(ctx, backend.Handle{Type: core.PackFile, Name: id.String()}); err != nil {
			return fmt.Errorf("remove pack %v: %w", id.Str(), err)
		}
		return nil
	})
}

func deleteFiles(ctx context.Context, r *repo.Repository, l Locker, t core.FileType, ids core.IDSet) (int, error) {
	n := 0
	for id := range ids {
		err := guardedWrite(ctx, l, "before-index-delete", func(ctx context.Context) error {
			if err := r.Backend().Remove(ctx, backend.Handle{Type: t, Name: id.String()}); err != nil {
				return fmt.Errorf("remove %v %v: %w", t, id.Str(), err)
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		n++
		if err := failpoint.Inject("prune.index-delete"); err != nil {
			return n, err
		}
	}
	return n, nil
}

// rewriteIndex writes new index files listing every pack of the loaded
// index files except drop, with the given pending marks, in files of at
// most 50000 blobs.
func rewriteIndex(ctx context.Context, r *repo.Repository, l Locker, st *state, drop core.IDSet, pending map[core.ID]index.Pending) (int, error) {
	const maxBlobs = 50000
	var files []*index.File
	cur := &index.File{}
	count := 0
	packIDs := make(core.IDs, 0, len(st.contents))
	for id := range st.contents {
		packIDs = append(packIDs, id)
	}
	for _, id := range packIDs {
		if drop.Has(id) {
			continue
		}
		if count > 0 && count+len(st.contents[id]) > maxBlobs {
			files = append(files, cur)
			cur, count = &index.File{}, 0
		}
		cur.Packs = append(cur.Packs, index.PackEntry{ID: id, Blobs: st.contents[id]})
		count += len(st.contents[id])
	}
	for _, p := range pending {
		cur.Pending = append(cur.Pending, p)
	}
	if len(cur.Packs) > 0 || len(cur.Pending) > 0 || len(files) == 0 {
		files = append(files, cur)
	}
	written := 0
	var ids core.IDs // the files written
	for _, f := range files {
		if len(f.Packs) == 0 && len(f.Pending) == 0 {
			continue
		}
		// every write of the series is a commit step (the model shows one
		// check before the series is not enough)
		var id core.ID
		err := guardedWrite(ctx, l, "index-write", func(ctx context.Context) error {
			var err error
			if id, err = r.SaveIndexFile(ctx, f); err != nil {
				return fmt.Errorf("write new index: %w", err)
			}
			return nil
		})
		if err != nil {
			return written, err
		}
		ids = append(ids, id)
		written++
	}
	if err := verifyIndex(ctx, r, ids, st, drop, pending); err != nil {
		return written, err
	}
	return written, nil
}

// verifyIndex reads the index files just written back from the backend and
// checks that together they list exactly the packs of st.contents except
// drop, each with exactly its blob entries (type, ID, offset, lengths), and
// exactly the pending marks: the files they replace are deleted next, so a
// lost, short or garbled write must stop prune here (H14, H40).
func verifyIndex(ctx context.Context, r *repo.Repository, ids core.IDs, st *state, drop core.IDSet, pending map[core.ID]index.Pending) error {
	got := map[core.ID]map[pack.Blob]int{}
	marks := map[core.ID]int{}
	for _, id := range ids {
		f, err := r.LoadIndexFile(ctx, id)
		if err != nil {
			return fmt.Errorf("read back new index: %w", err)
		}
		for _, p := range f.Packs {
			m := got[p.ID]
			if m == nil {
				m = make(map[pack.Blob]int, len(p.Blobs))
				got[p.ID] = m
			}
			for _, b := range p.Blobs {
				m[b]++
			}
		}
		for _, p := range f.Pending {
			marks[p.Pack]++
		}
	}
	want := 0
	for id, blobs := range st.contents {
		if drop.Has(id) {
			continue
		}
		want++
		m := got[id]
		if m == nil {
			return fmt.Errorf("read back new index: pack %v is missing; keeping the old index files", id.Str())
		}
		for _, b := range blobs {
			if m[b] == 0 {
				return fmt.Errorf("read back new index: pack %v lacks blob %v at offset %d; keeping the old index files", id.Str(), b.BlobHandle, b.Offset)
			}
			m[b]--
		}
		extra := 0
		for _, c := range m {
			extra += c
		}
		if extra != 0 {
			return fmt.Errorf("read back new index: pack %v has %d unexpected blob entries; keeping the old index files", id.Str(), extra)
		}
	}
	if len(got) != want {
		return fmt.Errorf("read back new index: %d packs listed, want %d; keeping the old index files", len(got), want)
	}
	if len(marks) != len(pending) {
		return fmt.Errorf("read back new index: %d pending marks, want %d; keeping the old index files", len(marks), len(pending))
	}
	for id, c := range marks {
		if _, ok := pending[id]; !ok || c != 1 {
			return fmt.Errorf("read back new index: pending mark for pack %v not as written; keeping the old index files", id.Str())
		}
	}
	return nil
}

// repack copies the still-used blobs of the packs to repack into new packs
// and writes their index.
func repack(ctx context.Context, r *repo.Repository, plan *Plan, progress func(done, total int)) error {
	done := core.NewBlobSet()
	n := 0
	for pid := range plan.Repack {
		if progress != nil {
			progress(n, len(plan.Repack))
		}
		n++
		keep := plan.keepBlobs[pid]
		if len(keep) == 0 {
			continue
		}
		h := backend.Handle{Type: core.PackFile, Name: pid.String()}
		// read the pack first; decode and save after Load returned (saving
		// inside the callback would need more backend slots than may exist)
		var buf []byte
		err := r.Backend().Load(ctx, h, 0, 0, func(rd io.Reader) error {
			var err error
			buf, err = io.ReadAll(rd)
			return err
		})
		if err == nil {
			for _, b := range keep {
				bh := b.BlobHandle
				if done.Has(bh) {
					continue
				}
				if int64(b.Offset)+int64(b.Length) > int64(len(buf)) {
					err = fmt.Errorf("blob %v lies beyond the end of pack %v", bh, pid.Str())
					break
				}
				plain, derr := r.DecodeBlob(b, buf[b.Offset:b.Offset+b.Length], nil)
				if derr != nil {
					// damaged here: maybe another copy reads
					if plain, derr = r.LoadBlob(ctx, bh.Type, bh.ID, nil); derr != nil {
						err = fmt.Errorf("repack pack %v: %w", pid.Str(), derr)
						break
					}
				}
				if _, serr := r.SaveBlob(ctx, bh.Type, plain, bh.ID, true); serr != nil {
					err = serr
					break
				}
				done.Insert(bh)
			}
		}
		if err != nil {
			return fmt.Errorf("repack %v: %w", pid.Str(), err)
		}
	}
	if err := r.Flush(ctx); err != nil {
		return fmt.Errorf("repack: %w", err)
	}
	return nil
}
