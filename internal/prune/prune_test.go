package prune

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/failpoint"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

const keepDelete = 23 * time.Hour

var repackAll = Options{MaxUnused: "0%", MaxRepackSize: -1}

func (s *scenario) mark(now time.Time) *Report {
	s.t.Helper()
	rep, err := Mark(context.Background(), s.open(), nil, repackAll, now)
	if err != nil {
		s.t.Fatalf("mark: %v", err)
	}
	return rep
}

func (s *scenario) sweep(keep time.Duration, now time.Time) *Report {
	s.t.Helper()
	rep, err := Sweep(context.Background(), s.open(), nil, keep, now, false)
	if err != nil {
		s.t.Fatalf("sweep: %v", err)
	}
	return rep
}

// TestMarkDeletesNoPack pins I8/H11/H14: mark deletes no pack (not even
// orphans, nor a concurrent backup's pack uploaded while it runs), deletes
// exactly the index files it loaded and nothing else, and only after
// writing replacements that list every pack those files listed with the
// same blobs, plus the pending marks.
func TestMarkDeletesNoPack(t *testing.T) {
	s := newScenario(t)
	ctx := context.Background()
	packsBefore := s.files(core.PackFile)
	idxBefore := s.files(core.IndexFile)
	oldPacks := indexedPacks(s.indexFiles(idxBefore))

	// a concurrent backup uploads a pack and writes its index after mark
	// loaded the index, then its snapshot after the mark
	var concPack, concIdx core.ID
	var concBlob core.ID
	s.be.setOnList(core.PackFile, func() {
		before := s.files(core.IndexFile)
		r := s.open()
		concBlob = s.saveData(r, false, 100)[0]
		s.flush(r)
		concPack = packOf(t, r, core.DataBlob, concBlob)
		added := minus(s.files(core.IndexFile), before)
		if len(added) != 1 {
			t.Errorf("concurrent backup wrote %d index files", len(added))
		}
		for id := range added {
			concIdx = id
		}
	})

	rep, err := Mark(ctx, s.open(), nil, repackAll, t0)
	if err != nil {
		t.Fatal(err)
	}
	if concPack.IsNull() {
		t.Fatal("the concurrent backup did not run")
	}
	packsAfter := s.files(core.PackFile)
	if gone := minus(packsBefore, packsAfter); len(gone) > 0 {
		t.Fatalf("mark deleted packs %v", setStr(gone))
	}
	if !packsAfter.Has(concPack) {
		t.Fatal("mark deleted the concurrent backup's pack")
	}
	idxAfter := s.files(core.IndexFile)
	if deleted := minus(idxBefore, idxAfter); !sameSet(deleted, idxBefore) {
		t.Fatalf("mark deleted index files %v, want exactly the loaded ones %v", setStr(deleted), setStr(idxBefore))
	}
	if !idxAfter.Has(concIdx) {
		t.Fatal("mark deleted an index file it did not load (the concurrent backup's)")
	}
	newFiles := s.indexFiles(minus(idxAfter, idSet(concIdx)))
	newPacks := indexedPacks(newFiles)
	for id, blobs := range oldPacks {
		got, ok := newPacks[id]
		if !ok {
			t.Errorf("pack %v listed by the replaced index files is missing from the new ones (H14)", id.Str())
			continue
		}
		if !slices.Equal(got, blobs) {
			t.Errorf("pack %v: new index lists %d blobs, the replaced files %d (H14)", id.Str(), len(got), len(blobs))
		}
	}
	pending := pendingOf(newFiles)
	wantPending := idSet(s.pM, s.pG, s.pT, s.pO, concPack)
	gotPending := core.NewIDSet()
	for id, p := range pending {
		gotPending.Insert(id)
		if !p.Since.Equal(t0) {
			t.Errorf("pending %v since %v, want %v", id.Str(), p.Since, t0)
		}
	}
	if !sameSet(gotPending, wantPending) {
		t.Errorf("pending %v, want %v", setStr(gotPending), setStr(wantPending))
	}
	if rep.PacksMarked != 5 || rep.PacksRepacked != 2 || rep.PacksRemoved != 0 {
		t.Errorf("report %+v: want 5 marked, 2 repacked, 0 removed", rep)
	}
	// the repack wrote new packs holding the used blobs of pM and pT
	r := s.open()
	for _, h := range []core.BlobHandle{{ID: s.m1, Type: core.DataBlob}, {ID: s.t1, Type: core.TreeBlob}, {ID: s.u1, Type: core.TreeBlob}} {
		if n := len(r.Index().LookupAll(h)); n != 2 {
			t.Errorf("blob %v has %d copies after the repack, want 2 (old pending + new)", h, n)
		}
	}
	s.checkRepo()

	// the concurrent backup finishes: its snapshot uses its pack, which the
	// mark saw as an orphan; the sweep must recover it, not delete it
	root := s.saveTree(r, fileNode("c", core.IDs{concBlob}))
	s.flush(r)
	s.snapshot(r, root)
	rep = s.sweep(keepDelete, t0.Add(keepDelete))
	if !s.files(core.PackFile).Has(concPack) {
		t.Fatal("sweep deleted the concurrent backup's pack used by its snapshot")
	}
	if rep.PacksRecovered != 1 || rep.PacksRemoved != 3 || rep.OrphansRemoved != 1 {
		t.Errorf("sweep report %+v: want 1 recovered, 3 removed, 1 orphan removed", rep)
	}
	s.checkNoGarbage(s.checkRepo())
}

// TestSweepKeepDelete pins the grace period: nothing is deleted before the
// marks are keepDelete old (judged by the injected clock), nor when the
// mark lies in the future (clock skew), and everything due is deleted at
// keepDelete exactly.
func TestSweepKeepDelete(t *testing.T) {
	s := newScenario(t)
	s.mark(t0)
	packs := s.files(core.PackFile)
	idx := s.files(core.IndexFile)
	for _, c := range []struct {
		name string
		keep time.Duration
		now  time.Time
	}{
		{"young", keepDelete, t0.Add(keepDelete - time.Second)},
		{"future mark", 0, t0.Add(-time.Hour)},
	} {
		rep := s.sweep(c.keep, c.now)
		if rep.PacksRemoved+rep.OrphansRemoved+rep.PacksRecovered != 0 {
			t.Errorf("%s: sweep did something: %+v", c.name, rep)
		}
		if !sameSet(packs, s.files(core.PackFile)) || !sameSet(idx, s.files(core.IndexFile)) {
			t.Errorf("%s: sweep changed the repository", c.name)
		}
	}
	dry, err := Sweep(context.Background(), s.open(), nil, keepDelete, t0.Add(keepDelete), true)
	if err != nil {
		t.Fatal(err)
	}
	if dry.PacksRemoved != 3 || dry.OrphansRemoved != 1 || !sameSet(packs, s.files(core.PackFile)) {
		t.Errorf("dry run: %+v, or it changed data/", dry)
	}
	rep := s.sweep(keepDelete, t0.Add(keepDelete))
	if rep.PacksRemoved != 3 || rep.OrphansRemoved != 1 {
		t.Errorf("sweep report %+v: want 3 removed, 1 orphan", rep)
	}
	after := s.files(core.PackFile)
	for _, id := range []core.ID{s.pM, s.pG, s.pT, s.pO} {
		if after.Has(id) {
			t.Errorf("due pending pack %v not deleted", id.Str())
		}
	}
	if !after.Has(s.pA) {
		t.Error("fully used pack deleted")
	}
	s.checkNoGarbage(s.checkRepo())
}

// TestSweepRecoversPackUsedAgain pins GC racing with a new snapshot: a
// blob of a pending pack deduplicated by a backup that wrote its snapshot
// after the mark keeps its pack, which becomes unmarked; packs still
// unused go.
func TestSweepRecoversPackUsedAgain(t *testing.T) {
	s := newScenario(t)
	s.mark(t0)
	// a backup (restic's, which knows nothing of marks) dedups g1
	r := s.open()
	res, err := r.SaveBlob(context.Background(), core.DataBlob, blob(5), core.ID{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Known || res.ID != s.g1 {
		t.Fatal("the backup did not deduplicate against the pending pack")
	}
	root := s.saveTree(r, fileNode("g", core.IDs{s.g1}))
	s.flush(r)
	s.snapshot(r, root)

	rep := s.sweep(keepDelete, t0.Add(48*time.Hour))
	if rep.PacksRecovered != 1 {
		t.Errorf("sweep report %+v: want 1 recovered", rep)
	}
	if !s.files(core.PackFile).Has(s.pG) {
		t.Fatal("sweep deleted a pending pack a new snapshot uses")
	}
	r = s.open()
	if _, ok := r.Index().Pending()[s.pG]; ok {
		t.Error("recovered pack still pending")
	}
	if len(r.Index().Pending()) != 0 {
		t.Errorf("pending after sweep: %v", r.Index().Pending())
	}
	if !r.Index().HasPack(s.pG) {
		t.Error("recovered pack not indexed")
	}
	used := s.checkRepo()
	// a second full round repacks pG (g2 unused) and keeps g1 readable
	s.mark(t0.Add(49 * time.Hour))
	s.sweep(0, t0.Add(50*time.Hour))
	s.checkNoGarbage(s.checkRepo())
	if !used.Has(core.BlobHandle{ID: s.g1, Type: core.DataBlob}) {
		t.Fatal("g1 not in the used set")
	}
}

// TestElsewhereOnlyInKeptPacks pins H16 (model BUG_ELSEWHERE_PENDING): a
// used blob stored in two pending packs is "present elsewhere" for
// neither, so the sweep keeps at least one copy.
func TestElsewhereOnlyInKeptPacks(t *testing.T) {
	s := &scenario{env: newEnv(t, 2)}
	r := s.open()
	ids := s.saveData(r, false, 10, 11)
	d, x := ids[0], ids[1]
	s.flush(r)
	pX := packOf(t, r, core.DataBlob, x)
	y := s.saveData(r, false, 12)[0]
	if s.saveData(r, true, 10)[0] != d {
		t.Fatal("duplicate has another ID")
	}
	s.flush(r)
	pY := packOf(t, r, core.DataBlob, y)
	if n := len(r.Index().LookupAll(core.BlobHandle{ID: d, Type: core.DataBlob})); n != 2 {
		t.Fatalf("d in %d packs, want 2", n)
	}
	root := s.saveTree(r, fileNode("d", core.IDs{d}), fileNode("x", core.IDs{x}), fileNode("y", core.IDs{y}))
	s.flush(r)
	sn := s.snapshot(r, root)
	s.forget(sn)
	rep := s.mark(t0)
	if rep.PacksMarked != 3 {
		t.Fatalf("mark report %+v: want 3 marked (pX, pY, tree pack)", rep)
	}
	// a new snapshot uses d again (deduplicated: no new copy)
	r = s.open()
	if res, err := r.SaveBlob(context.Background(), core.DataBlob, blob(10), core.ID{}, false); err != nil || !res.Known {
		t.Fatalf("dedup: %v %+v", err, res)
	}
	root = s.saveTree(r, fileNode("d", core.IDs{d}))
	s.flush(r)
	s.snapshot(r, root)
	s.sweep(0, t0.Add(time.Hour))
	after := s.files(core.PackFile)
	if !after.Has(pX) && !after.Has(pY) {
		t.Fatal("sweep deleted both copies of a used blob (H16)")
	}
	s.checkRepo()
	s.mark(t0.Add(2 * time.Hour))
	s.sweep(0, t0.Add(3*time.Hour))
	s.checkNoGarbage(s.checkRepo())
}

// TestDuplicatesRepacked pins H16 at mark time and in --exclusive: a used
// blob stored in two packs that are both repacked or removed is copied
// exactly once, so it keeps a readable copy, and the copies left unused
// go with their packs.
func TestDuplicatesRepacked(t *testing.T) {
	for _, mode := range []string{"two-phase", "exclusive"} {
		t.Run(mode, func(t *testing.T) {
			s := &scenario{env: newEnv(t, 2)}
			r := s.open()
			ids := s.saveData(r, false, 20, 21)
			d := ids[0]
			s.flush(r)
			s.saveData(r, false, 22)
			s.saveData(r, true, 20)
			s.flush(r)
			s.saveData(r, true, 20) // a third copy, alone: fully "used" by restic's count
			s.flush(r)
			root := s.saveTree(r, fileNode("d", core.IDs{d}))
			s.flush(r)
			s.snapshot(r, root)
			switch mode {
			case "two-phase":
				s.mark(t0)
				s.sweep(0, t0.Add(time.Hour))
			default:
				if _, err := Exclusive(context.Background(), s.open(), nil, repackAll); err != nil {
					t.Fatal(err)
				}
			}
			used := s.checkRepo()
			s.checkNoGarbage(used)
			r = s.open()
			if n := len(r.Index().LookupAll(core.BlobHandle{ID: d, Type: core.DataBlob})); n != 1 {
				t.Errorf("d has %d copies after prune, want 1", n)
			}
		})
	}
}

// TestExclusive pins the one-phase prune: removes unused packs and
// orphans, repacks partly used ones, keeps every used blob readable.
func TestExclusive(t *testing.T) {
	s := newScenario(t)
	dry, err := Exclusive(context.Background(), s.open(), nil, Options{MaxUnused: "0%", MaxRepackSize: -1, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	packs := s.files(core.PackFile)
	if dry.PacksRemoved != 1 || dry.PacksRepacked != 2 || dry.OrphansRemoved != 1 {
		t.Errorf("dry run report %+v", dry)
	}
	if !sameSet(packs, s.files(core.PackFile)) {
		t.Fatal("dry run changed data/")
	}
	rep, err := Exclusive(context.Background(), s.open(), nil, repackAll)
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksRemoved != 1 || rep.PacksRepacked != 2 || rep.OrphansRemoved != 1 {
		t.Errorf("report %+v", rep)
	}
	after := s.files(core.PackFile)
	for _, id := range []core.ID{s.pM, s.pG, s.pT, s.pO} {
		if after.Has(id) {
			t.Errorf("pack %v not deleted", id.Str())
		}
	}
	s.checkNoGarbage(s.checkRepo())
}

// TestMarkTwice pins idempotence of phase 1: a second mark keeps the
// first mark's time (the grace period is not restarted), repacks nothing
// again and changes no pack.
func TestMarkTwice(t *testing.T) {
	s := newScenario(t)
	s.mark(t0)
	packs := s.files(core.PackFile)
	first := s.open().Index().Pending()
	rep := s.mark(t0.Add(10 * time.Hour))
	if rep.PacksRepacked != 0 || rep.PacksMarked != 0 || rep.PacksRecovered != 0 {
		t.Errorf("second mark report %+v: want nothing repacked, marked or recovered", rep)
	}
	if !sameSet(packs, s.files(core.PackFile)) {
		t.Error("second mark changed data/")
	}
	second := s.open().Index().Pending()
	if len(first) != len(second) {
		t.Fatalf("pending %d after the first mark, %d after the second", len(first), len(second))
	}
	for id, p := range first {
		if q, ok := second[id]; !ok || !q.Since.Equal(p.Since) {
			t.Errorf("pending %v: since %v, was %v", id.Str(), q.Since, p.Since)
		}
	}
	s.checkRepo()
	// due by the first mark's time
	if rep := s.sweep(keepDelete, t0.Add(keepDelete)); rep.PacksRemoved != 3 {
		t.Errorf("sweep report %+v: want 3 removed", rep)
	}
	s.checkNoGarbage(s.checkRepo())
}

// TestSweepAfterPartialSweep pins that a pending pack already gone from
// data/ is no error: its entry is dropped (I2), the rest is deleted.
func TestSweepAfterPartialSweep(t *testing.T) {
	s := newScenario(t)
	s.mark(t0)
	if err := removePack(context.Background(), s.open(), nil, s.pG); err != nil {
		t.Fatal(err)
	}
	// deleting it again is success too
	if err := removePack(context.Background(), s.open(), nil, s.pG); err != nil {
		t.Fatalf("second delete of a gone pack: %v", err)
	}
	s.sweep(0, t0.Add(time.Hour))
	if s.open().Index().HasPack(s.pG) {
		t.Error("index still lists the gone pack")
	}
	s.checkNoGarbage(s.checkRepo())
}

// TestFailpointsThenRerun injects an error at every commit step of every
// phase (and in the repack's uploads); after each, the repository is
// consistent with every used blob readable, and a rerun completes the
// prune.
func TestFailpointsThenRerun(t *testing.T) {
	t.Cleanup(func() { _ = failpoint.Set("") })
	mark := []string{
		"backup.before-pack-upload", "backup.after-pack-upload", "backup.after-index-upload",
		"prune.after-repack", "prune.index-write", "prune.after-new-index",
		"prune.before-index-delete", "prune.before-index-delete@2", "prune.index-delete", "prune.index-delete@2",
	}
	sweep := []string{
		"prune.index-write", "prune.after-new-index", "prune.before-index-delete", "prune.index-delete",
		"prune.before-pack-delete", "prune.pack-delete", "prune.pack-delete@2", "prune.pack-delete@4",
	}
	exclusive := []string{
		"prune.before-orphan-delete", "prune.pack-delete", "prune.pack-delete@2", "prune.pack-delete@4",
		"backup.before-pack-upload", "backup.after-pack-upload", "backup.after-index-upload",
		"prune.after-repack", "prune.index-write", "prune.after-new-index",
		"prune.before-index-delete", "prune.index-delete", "prune.before-pack-delete",
	}
	run := func(t *testing.T, phase, point string) {
		s := newScenario(t)
		ctx := context.Background()
		if phase == "sweep" {
			s.mark(t0)
		}
		name, nth, _ := strings.Cut(point, "@")
		spec := name + "=error"
		if nth != "" {
			spec += "@" + nth
		}
		if err := failpoint.Set(spec); err != nil {
			t.Fatal(err)
		}
		var err error
		switch phase {
		case "mark":
			_, err = Mark(ctx, s.open(), nil, repackAll, t0)
		case "sweep":
			_, err = Sweep(ctx, s.open(), nil, 0, t0.Add(time.Hour), false)
		case "exclusive":
			_, err = Exclusive(ctx, s.open(), nil, repackAll)
		}
		if err2 := failpoint.Set(""); err2 != nil {
			t.Fatal(err2)
		}
		var inj *failpoint.ErrInjected
		if !errors.As(err, &inj) || inj.Name != name {
			t.Fatalf("%s with %s: got %v, want the injected error", phase, point, err)
		}
		s.checkRepo()
		if phase == "exclusive" {
			if _, err := Exclusive(ctx, s.open(), nil, repackAll); err != nil {
				t.Fatalf("rerun: %v", err)
			}
		} else {
			s.mark(t0.Add(2 * time.Hour))
			s.sweep(0, t0.Add(3*time.Hour))
		}
		s.checkNoGarbage(s.checkRepo())
	}
	for phase, points := range map[string][]string{"mark": mark, "sweep": sweep, "exclusive": exclusive} {
		for _, p := range points {
			t.Run(phase+"/"+p, func(t *testing.T) { run(t, phase, p) })
		}
	}
}

// TestLockLostStopsCommit pins I5 for prune: once the caller's lock check
// fails, mark writes no replacement index and deletes nothing, and the
// sweep deletes nothing.
func TestLockLostStopsCommit(t *testing.T) {
	s := newScenario(t)
	ctx := context.Background()
	packs := s.files(core.PackFile)
	idx := s.files(core.IndexFile)
	_, err := Mark(ctx, s.open(), &failLocker{n: 1}, repackAll, t0)
	if !errors.Is(err, errLockLost) {
		t.Fatalf("mark: %v, want the lock error", err)
	}
	if len(minus(packs, s.files(core.PackFile))) > 0 || len(minus(idx, s.files(core.IndexFile))) > 0 {
		t.Fatal("mark deleted files after losing its lock")
	}
	if len(s.open().Index().Pending()) != 0 {
		t.Fatal("mark wrote marks after losing its lock")
	}
	s.mark(t0)
	packs = s.files(core.PackFile)
	idx = s.files(core.IndexFile)
	for n := 1; n <= 3; n++ {
		_, err = Sweep(ctx, s.open(), &failLocker{n: n}, 0, t0.Add(time.Hour), false)
		if !errors.Is(err, errLockLost) {
			t.Fatalf("sweep: %v, want the lock error", err)
		}
		if !sameSet(packs, s.files(core.PackFile)) {
			t.Fatalf("sweep deleted packs after losing its lock at check %d", n)
		}
		if gone := minus(idx, s.files(core.IndexFile)); len(gone) > 0 {
			t.Fatalf("sweep deleted index files after losing its lock at check %d", n)
		}
		s.checkRepo()
	}
}

// TestListErrorAborts pins I12/H24: a failing listing of data/ is never
// taken as empty; every phase aborts without changing anything.
func TestListErrorAborts(t *testing.T) {
	s := newScenario(t)
	ctx := context.Background()
	s.mark(t0)
	packs := s.files(core.PackFile)
	idx := s.files(core.IndexFile)
	s.be.setListErr(core.PackFile, errors.New("listing failed (test)"))
	if _, err := Mark(ctx, s.open(), nil, repackAll, t0.Add(time.Hour)); err == nil {
		t.Error("mark ignored a listing error")
	}
	if _, err := Sweep(ctx, s.open(), nil, 0, t0.Add(time.Hour), false); err == nil {
		t.Error("sweep ignored a listing error")
	}
	if _, err := Exclusive(ctx, s.open(), nil, repackAll); err == nil {
		t.Error("exclusive ignored a listing error")
	}
	s.be.setListErr(core.PackFile, nil)
	if !sameSet(packs, s.files(core.PackFile)) || !sameSet(idx, s.files(core.IndexFile)) {
		t.Fatal("a phase changed the repository after a listing error")
	}
	s.checkRepo()
}

// TestMissingDataRefused pins the index-incomplete abort: a used blob in
// no present pack stops every phase before it changes anything.
func TestMissingDataRefused(t *testing.T) {
	s := newScenario(t)
	ctx := context.Background()
	// a used pack vanishes (only a damaged repository loses one)
	if err := removePack(ctx, s.open(), nil, s.pA); err != nil {
		t.Fatal(err)
	}
	packs := s.files(core.PackFile)
	idx := s.files(core.IndexFile)
	var md *ErrMissingData
	if _, err := Mark(ctx, s.open(), nil, repackAll, t0); !errors.As(err, &md) {
		t.Errorf("mark: %v, want ErrMissingData", err)
	}
	if _, err := Exclusive(ctx, s.open(), nil, repackAll); !errors.As(err, &md) {
		t.Errorf("exclusive: %v, want ErrMissingData", err)
	}
	if _, err := Sweep(ctx, s.open(), nil, 0, t0, false); !errors.As(err, &md) {
		t.Errorf("sweep: %v, want ErrMissingData", err)
	}
	if !sameSet(packs, s.files(core.PackFile)) || !sameSet(idx, s.files(core.IndexFile)) {
		t.Fatal("a phase changed the repository despite missing data")
	}
}

// TestPendingPackMissingButNeeded pins the sweep's final guard: the only
// copy of a used blob stays even in a pending pack missing from data/.
func TestPendingPackMissingButNeeded(t *testing.T) {
	s := newScenario(t)
	ctx := context.Background()
	s.mark(t0)
	// the new snapshot uses g1, whose only pack pG is pending; then pG
	// vanishes: the sweep must refuse rather than write an index without g1
	r := s.open()
	root := s.saveTree(r, fileNode("g", core.IDs{s.g1}))
	s.flush(r)
	s.snapshot(r, root)
	if err := removePack(ctx, r, nil, s.pG); err != nil {
		t.Fatal(err)
	}
	idx := s.files(core.IndexFile)
	var md *ErrMissingData
	if _, err := Sweep(ctx, s.open(), nil, 0, t0.Add(time.Hour), false); !errors.As(err, &md) {
		t.Fatalf("sweep: %v, want ErrMissingData", err)
	}
	if !sameSet(idx, s.files(core.IndexFile)) {
		t.Fatal("sweep rewrote the index despite missing data")
	}
}

// TestSplitPackEntry pins H40: a pack whose blobs are split over two index
// files (restic#5212) is loaded with every blob (the master index merges the
// listings), so mark, the sweep and --exclusive see the whole pack: they
// rewrite it as one entry with every blob, delete no pack, and the
// repository checks clean and every snapshot reads back.
func TestSplitPackEntry(t *testing.T) {
	for _, phase := range []string{"mark+sweep", "exclusive"} {
		t.Run(phase, func(t *testing.T) {
			s := newScenario(t)
			ctx := context.Background()
			r := s.open()
			blobs := r.Index().PackContents()[s.pA]
			if len(blobs) != 2 {
				t.Fatalf("pA has %d blobs", len(blobs))
			}
			// replace pA's index entry by two half entries in two files
			for id := range s.files(core.IndexFile) {
				f, err := r.LoadIndexFile(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if len(f.Packs) != 1 || f.Packs[0].ID != s.pA {
					continue
				}
				for _, half := range [][]pack.Blob{blobs[:1], blobs[1:]} {
					f.Packs[0].Blobs = half
					if _, err := r.SaveIndexFile(ctx, f); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.be.Remove(ctx, handle(core.IndexFile, id)); err != nil {
					t.Fatal(err)
				}
			}
			// loading finds both halves (restic does too)
			for _, b := range blobs {
				if _, ok := s.open().Index().Lookup(b.BlobHandle); !ok {
					t.Fatalf("blob %v of the split pack not found after load", b.BlobHandle)
				}
			}
			if phase == "exclusive" {
				if _, err := Exclusive(ctx, s.open(), nil, repackAll); err != nil {
					t.Fatalf("exclusive on a split pack entry: %v", err)
				}
			} else {
				s.mark(t0)
				s.sweep(0, t0)
			}
			if !s.files(core.PackFile).Has(s.pA) {
				t.Fatal("the fully used split pack was deleted")
			}
			got := indexedPacks(s.indexFiles(s.files(core.IndexFile)))[s.pA]
			want := append([]pack.Blob(nil), blobs...)
			index.SortBlobs(want)
			if len(got) != len(want) {
				t.Fatalf("pA rewritten with %d blob entries, want %d (one merged entry)", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("pA entry %d: %+v, want %+v", i, got[i], want[i])
				}
			}
			n := 0
			for _, f := range s.indexFiles(s.files(core.IndexFile)) {
				for _, p := range f.Packs {
					if p.ID == s.pA {
						n++
					}
				}
			}
			if n != 1 {
				t.Fatalf("pA listed %d times after the rewrite, want once", n)
			}
			s.checkRepo()
		})
	}
}

// TestDailyPruneSweepsRepackedPacks pins the CLI's cycle (mark, then sweep
// with --keep-delete 23h) run once a day: the packs one day's mark
// repacked are deleted by the next day's sweep. A mark that recovers a
// pending pack merely because it holds used blobs (whose copies the repack
// kept) re-marks it with a new time each day, so it is never swept.
func TestDailyPruneSweepsRepackedPacks(t *testing.T) {
	s := newScenario(t)
	day := 24 * time.Hour
	s.mark(t0)
	s.sweep(keepDelete, t0)
	s.mark(t0.Add(day))
	rep := s.sweep(keepDelete, t0.Add(day))
	after := s.files(core.PackFile)
	for _, id := range []core.ID{s.pM, s.pT, s.pG, s.pO} {
		if after.Has(id) {
			t.Errorf("pack %v marked a day ago survived the next day's sweep", id.Str())
		}
	}
	if rep.PacksRemoved != 3 || rep.OrphansRemoved != 1 {
		t.Errorf("sweep report %+v: want 3 removed, 1 orphan", rep)
	}
	s.checkNoGarbage(s.checkRepo())
}

// TestLostIndexWriteKeepsOldIndex pins the read-back of docs/concurrency.md
// 8.2 step 5 (H14): when the backend acknowledges the replacement index
// but does not store it, mark and sweep keep the files they would replace
// (deleting them would unlist every pack).
func TestLostIndexWriteKeepsOldIndex(t *testing.T) {
	s := newScenario(t)
	ctx := context.Background()
	idx := s.files(core.IndexFile)
	s.be.setDropSaves(core.IndexFile, true)
	_, err := Mark(ctx, s.open(), nil, repackAll, t0)
	s.be.setDropSaves(core.IndexFile, false)
	if err == nil {
		t.Error("mark succeeded although its new index was lost")
	}
	if !sameSet(idx, s.files(core.IndexFile)) {
		t.Fatal("mark deleted index files after a lost write")
	}
	s.checkRepo()

	s.mark(t0)
	packs := s.files(core.PackFile)
	idx = s.files(core.IndexFile)
	s.be.setDropSaves(core.IndexFile, true)
	_, err = Sweep(ctx, s.open(), nil, 0, t0.Add(time.Hour), false)
	s.be.setDropSaves(core.IndexFile, false)
	if err == nil {
		t.Error("sweep succeeded although its new index was lost")
	}
	if !sameSet(idx, s.files(core.IndexFile)) || !sameSet(packs, s.files(core.PackFile)) {
		t.Fatal("sweep deleted files after a lost index write")
	}
	s.checkRepo()
	s.mark(t0.Add(2 * time.Hour))
	s.sweep(0, t0.Add(3*time.Hour))
	s.checkNoGarbage(s.checkRepo())
}

// TestMarkRecoversPackUsedAgain pins recovery in phase 1: a pending pack
// whose blob a later snapshot uses (no other copy) loses its mark at the
// next mark; pending packs whose used blobs have kept copies keep theirs.
func TestMarkRecoversPackUsedAgain(t *testing.T) {
	s := newScenario(t)
	s.mark(t0)
	r := s.open()
	root := s.saveTree(r, fileNode("g", core.IDs{s.g1, s.g2}))
	s.flush(r)
	s.snapshot(r, root)
	rep, err := Mark(context.Background(), s.open(), nil, Options{MaxUnused: "unlimited", MaxRepackSize: -1}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksRecovered != 1 {
		t.Errorf("mark report %+v: want 1 recovered", rep)
	}
	pending := s.open().Index().Pending()
	if _, ok := pending[s.pG]; ok {
		t.Error("pack used again is still pending")
	}
	for _, id := range []core.ID{s.pM, s.pT, s.pO} {
		if p, ok := pending[id]; !ok || !p.Since.Equal(t0) {
			t.Errorf("pack %v: pending %v since %v, want since %v", id.Str(), ok, p.Since, t0)
		}
	}
	s.sweep(0, t0.Add(2*time.Hour))
	if !s.files(core.PackFile).Has(s.pG) {
		t.Fatal("recovered pack deleted")
	}
	s.checkNoGarbage(s.checkRepo())
}

// guardLocker passes every check, and its Guard bounds a commit write the
// way repo.Lock.Guard does when the write overruns: the write's context is
// already over and done reports the lock lost.
type guardLocker struct {
	guards atomic.Int32
	pass   bool // every guarded write ends in time
}

func (l *guardLocker) Check(context.Context) error { return nil }

func (l *guardLocker) Guard(ctx context.Context) (context.Context, func(error) error, error) {
	l.guards.Add(1)
	if l.pass {
		return ctx, func(err error) error { return err }, nil
	}
	gctx, cancel := context.WithCancel(ctx)
	cancel() // the bound has passed
	return gctx, func(error) error { return errLockLost }, nil
}

// TestIndexWriteGuarded (A-FREEZE): mark writes its new index files within
// the lock's Guard, and an overrun stops it before it deletes anything; the
// sweep deletes within it too.
func TestIndexWriteGuarded(t *testing.T) {
	s := newScenario(t)
	ctx := context.Background()
	packs := s.files(core.PackFile)
	idx := s.files(core.IndexFile)
	l := &guardLocker{}
	_, err := Mark(ctx, s.open(), l, repackAll, t0)
	if !errors.Is(err, errLockLost) {
		t.Fatalf("mark: %v, want the lock error from the guard", err)
	}
	if l.guards.Load() == 0 {
		t.Fatal("the index write did not go through Guard")
	}
	if len(minus(packs, s.files(core.PackFile))) > 0 || len(minus(idx, s.files(core.IndexFile))) > 0 {
		t.Fatal("mark deleted files after an overrun commit write")
	}
	// the sweep's deletions are guarded one by one: with a guard that
	// always passes, it guards at least once per deleted file
	s.mark(t0)
	packs, idx = s.files(core.PackFile), s.files(core.IndexFile)
	l = &guardLocker{pass: true}
	if _, err := Sweep(ctx, s.open(), l, 0, t0.Add(time.Hour), false); err != nil {
		t.Fatal(err)
	}
	deleted := len(minus(packs, s.files(core.PackFile))) + len(minus(idx, s.files(core.IndexFile)))
	if deleted == 0 || int(l.guards.Load()) < deleted {
		t.Fatalf("sweep deleted %d files under %d guards", deleted, l.guards.Load())
	}
}
