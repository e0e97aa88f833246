package archiver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
	"github.com/cairn-backup/cairn/internal/snapshot"
)

// saveEvent is one successful Save: start is the sequence number taken when
// Save was called, end the one taken after it returned success. For two
// saves a and b, a.end < b.start means a had completed before b began.
type saveEvent struct {
	h          backend.Handle
	start, end uint64
}

// recordingBackend logs every successful Save, in order, with sequence
// numbers at its call and at its return.
type recordingBackend struct {
	backend.Backend

	mu    sync.Mutex // guards seq and saves
	seq   uint64
	saves []saveEvent
}

func (b *recordingBackend) tick() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	return b.seq
}

func (b *recordingBackend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	start := b.tick()
	if err := b.Backend.Save(ctx, h, rd); err != nil {
		return err
	}
	b.mu.Lock()
	b.seq++
	b.saves = append(b.saves, saveEvent{h: h, start: start, end: b.seq})
	b.mu.Unlock()
	return nil
}

func (b *recordingBackend) log() []saveEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]saveEvent(nil), b.saves...)
}

// writeFiles writes n random files of up to max bytes into dir.
func writeFiles(t *testing.T, dir string, rnd *rand.Rand, prefix string, n, max int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		buf := make([]byte, 1+rnd.IntN(max))
		for j := range buf {
			buf[j] = byte(rnd.Uint32())
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s%d", prefix, i)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// snapshotBlobs returns every tree and data blob reachable from root.
func snapshotBlobs(t *testing.T, ctx context.Context, r *repo.Repository, root core.ID) []core.BlobHandle {
	t.Helper()
	seen := map[core.BlobHandle]bool{}
	var out []core.BlobHandle
	add := func(h core.BlobHandle) bool {
		if seen[h] {
			return false
		}
		seen[h] = true
		out = append(out, h)
		return true
	}
	var walk func(id core.ID)
	walk = func(id core.ID) {
		if !add(core.BlobHandle{ID: id, Type: core.TreeBlob}) {
			return
		}
		tr := loadTree(t, ctx, r, id)
		for _, n := range tr.Nodes {
			if n.Subtree != nil {
				walk(*n.Subtree)
			}
			for _, c := range n.Content {
				add(core.BlobHandle{ID: c, Type: core.DataBlob})
			}
		}
	}
	walk(root)
	return out
}

// TestCommitOrder (docs/concurrency.md I6, section 5: "a recording-backend
// test of the order of writes"): three backups (the second and third with
// a parent and new data) through the archiver onto a backend that records
// every Save with sequence numbers at its call and its return, each
// followed by its snapshot as the CLI's commitSnapshot writes it. From the
// log and the index files loaded back:
//
//   - the recorder saw every pack, index and snapshot file the backend lists;
//   - every pack an index file lists had been saved (Save returned) before
//     that index file's Save was called, and every stored pack is indexed;
//   - every pack and index save of a run returned before its snapshot's
//     Save was called, and none of them started after it (no late
//     background write once Run has returned);
//   - every tree and data blob reachable from each snapshot is listed by an
//     index file, in a pack, both saved before that snapshot's Save began.
//
// How it can fail: if the saver added a pack to the unwritten index before
// the pack's Save returned (H39), or wrote the index file concurrently with
// the pack uploads, a pack's end would follow its index file's start. If
// Flush (called by Run) returned before every upload or the final index
// write finished (H18), those saves would end after the snapshot started,
// or the snapshot's last blobs (the root tree, H17) would be in no index
// file saved before it. Both were tried on a scratch copy of the tree:
// Flush not waiting for the uploads fails the snapshot checks, and a pack
// queued for the index before its upload (with that Flush) fails the
// pack-before-index check. Sequence numbers are taken under one mutex, so
// the checks are about order only, not durations.
func TestCommitOrder(t *testing.T) {
	ctx := context.Background()
	be := &recordingBackend{Backend: mem.New()}
	// small packs: many packs per run (a chunk above 64 KiB fills one)
	r, err := repo.Init(ctx, be, "pw", 2, crypto.Params{N: 1024, R: 1, P: 1}, repo.Options{PackSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	src := t.TempDir()
	rnd := rand.New(rand.NewPCG(6, 6))
	type runInfo struct {
		startSeq uint64 // sequence number before the run began
		snap     core.ID
	}
	var runs []runInfo
	var parent *core.ID
	for k := 0; k < 3; k++ {
		// each run adds new files (so it uploads packs and an index file);
		// the first also one of several chunks
		for d := 0; d < 3; d++ {
			writeFiles(t, filepath.Join(src, fmt.Sprintf("run%d", k), fmt.Sprintf("d%d", d)), rnd, "f", 6, 48<<10)
		}
		if k == 0 {
			if err := os.WriteFile(filepath.Join(src, "big"), testData(9, 3<<20), 0o644); err != nil {
				t.Fatal(err)
			}
		} else { // and changes one older file
			writeFiles(t, filepath.Join(src, "run0", "d0"), rnd, "f", 1, 48<<10)
		}
		ri := runInfo{startSeq: be.tick()}
		res, err := New(r, Options{Parent: parent}).Run(ctx, []string{src})
		if err != nil {
			t.Fatalf("run %d: %v", k, err)
		}
		sn, err := snapshot.New([]string{src}, nil, "host", time.Date(2025, 1, 1, k, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		sn.Tree, sn.Parent = &res.Tree, parent
		sn.Summary = &res.Summary
		if ri.snap, err = r.SaveSnapshot(ctx, sn); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, ri)
		parent = &res.Tree
	}

	log := be.log()
	byName := map[backend.Handle]saveEvent{}
	count := map[core.FileType]int{}
	for _, e := range log {
		if _, dup := byName[e.h]; dup {
			t.Fatalf("%v saved twice", e.h)
		}
		byName[e.h] = e
		count[e.h.Type]++
	}
	// the log is complete: every stored file of these types was seen
	for _, typ := range []core.FileType{core.PackFile, core.IndexFile, core.SnapshotFile} {
		ids, err := r.ListIDs(ctx, typ)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if _, ok := byName[backend.Handle{Type: typ, Name: id.String()}]; !ok {
				t.Fatalf("%v %v stored but not recorded", typ, id.Str())
			}
		}
		if len(ids) != count[typ] {
			t.Fatalf("%d %v files stored, %d recorded", len(ids), typ, count[typ])
		}
	}
	if count[core.SnapshotFile] != len(runs) || count[core.IndexFile] < len(runs) || count[core.PackFile] < 2*count[core.IndexFile] {
		t.Fatalf("too little to order: %d packs, %d index files, %d snapshots", count[core.PackFile], count[core.IndexFile], count[core.SnapshotFile])
	}

	// packs before the index files that list them
	type listing struct{ index, pack saveEvent }
	where := map[core.BlobHandle][]listing{} // blob → every (index file, pack) listing it
	indexed := core.NewIDSet()
	for _, ie := range log {
		if ie.h.Type != core.IndexFile {
			continue
		}
		id, err := core.ParseID(ie.h.Name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := r.LoadIndexFile(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Packs) == 0 {
			t.Fatalf("index %v lists no pack", id.Str())
		}
		for _, p := range f.Packs {
			pe, ok := byName[backend.Handle{Type: core.PackFile, Name: p.ID.String()}]
			if !ok {
				t.Fatalf("index %v lists pack %v, which was never saved", id.Str(), p.ID.Str())
			}
			if pe.end >= ie.start {
				t.Errorf("index %v (saved %d..%d) lists pack %v saved %d..%d: not after the pack's save returned",
					id.Str(), ie.start, ie.end, p.ID.Str(), pe.start, pe.end)
			}
			indexed.Insert(p.ID)
			for _, b := range p.Blobs {
				where[b.BlobHandle] = append(where[b.BlobHandle], listing{index: ie, pack: pe})
			}
		}
	}
	for _, e := range log {
		if e.h.Type == core.PackFile {
			if id, _ := core.ParseID(e.h.Name); !indexed.Has(id) {
				t.Errorf("pack %v saved but listed by no index file", id.Str())
			}
		}
	}

	// each run's packs and index files before its snapshot; its blobs
	// listed by earlier saves
	for k, ri := range runs {
		se := byName[backend.Handle{Type: core.SnapshotFile, Name: ri.snap.String()}]
		next := ^uint64(0)
		if k+1 < len(runs) {
			next = runs[k+1].startSeq
		}
		indexFiles := 0
		for _, e := range log {
			if e.start < ri.startSeq || e.start > next || e.h.Type == core.SnapshotFile {
				continue
			}
			if e.h.Type == core.IndexFile {
				indexFiles++
			}
			if e.end >= se.start {
				t.Errorf("run %d: %v saved %d..%d, not before its snapshot (saved %d..%d)", k, e.h, e.start, e.end, se.start, se.end)
			}
		}
		if indexFiles == 0 {
			t.Errorf("run %d wrote no index file", k)
		}
		sn, err := r.LoadSnapshot(ctx, ri.snap)
		if err != nil {
			t.Fatal(err)
		}
		blobs := snapshotBlobs(t, ctx, r, *sn.Tree)
		for _, h := range blobs {
			ok := false
			for _, l := range where[h] {
				if l.index.end < se.start && l.pack.end < se.start {
					ok = true
					break
				}
			}
			if !ok {
				desc := "none"
				if ls := where[h]; len(ls) > 0 {
					desc = fmt.Sprintf("%d, first: %v saved %d..%d, %v saved %d..%d", len(ls),
						ls[0].index.h, ls[0].index.start, ls[0].index.end, ls[0].pack.h, ls[0].pack.start, ls[0].pack.end)
				}
				t.Errorf("run %d: %v blob %v of the snapshot (saved %d..%d) is in no pack and index file saved before it (listings: %s)",
					k, h.Type, h.ID.Str(), se.start, se.end, desc)
			}
		}
		t.Logf("run %d: snapshot %v after %d index file(s); %d blobs checked", k, ri.snap.Str(), indexFiles, len(blobs))
	}
	t.Logf("%d packs, %d index files, %d snapshots", count[core.PackFile], count[core.IndexFile], count[core.SnapshotFile])
}
