package checker

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

// racingBackend plays a concurrent writer: the first listing of index files
// does not show hidden (written just after the listing), and loading
// victim finds it gone: with remove set it is deleted first (a prune mark
// replaced it, or a forget removed a snapshot), otherwise the load fails
// with "not found" while the file stays listed.
type racingBackend struct {
	backend.Backend
	victim backend.Handle
	hidden string // index file missing from the first index listing
	remove bool

	mu     sync.Mutex // guards listed
	listed bool       // the index files were listed once
}

func (b *racingBackend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	b.mu.Lock()
	first := t == core.IndexFile && !b.listed
	if t == core.IndexFile {
		b.listed = true
	}
	b.mu.Unlock()
	return b.Backend.List(ctx, t, func(fi backend.FileInfo) error {
		if first && fi.Name == b.hidden {
			return nil
		}
		return fn(fi)
	})
}

func (b *racingBackend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if h != b.victim {
		return b.Backend.Load(ctx, h, length, offset, fn)
	}
	if b.remove {
		if err := b.Backend.Remove(ctx, h); err != nil {
			return err
		}
		return b.Backend.Load(ctx, h, length, offset, fn)
	}
	return backend.ErrNotExist
}

func openOn(t *testing.T, be backend.Backend) *repo.Repository {
	t.Helper()
	r, err := repo.Open(context.Background(), be, testPassword, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestIndexFileReplacedDuringLoad: a prune mark (shared lock) writes a new
// index file and deletes the one it replaces between check's listing and
// its load. The checker lists again and loads the replacement: no damage
// is reported and every tree and blob is found.
func TestIndexFileReplacedDuringLoad(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	r := f.open(t)
	ids, err := r.ListIDs(ctx, core.IndexFile)
	if err != nil || len(ids) != 1 {
		t.Fatalf("want one index file: %v %v", ids, err)
	}
	old, err := r.LoadIndexFile(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	// the replacement lists the same packs (a mark drops none), under a
	// new name (new nonce), and marks nothing
	repl, err := r.SaveIndexFile(ctx, old)
	if err != nil || repl == ids[0] {
		t.Fatal(repl, err)
	}
	be := &racingBackend{Backend: f.be, victim: backend.Handle{Type: core.IndexFile, Name: ids[0].String()},
		hidden: repl.String(), remove: true}
	res := runCheck(t, openOn(t, be), true)
	if len(res.problems) != 0 {
		t.Fatalf("replaced index file caused problems:\n%s", res)
	}
	if res.stats.IndexFiles != 1 || res.stats.Trees != 2 || res.stats.Packs < 2 || res.stats.PacksRead != res.stats.Packs {
		t.Fatalf("stats: %+v", res.stats)
	}
}

// TestIndexFileListedButNotFound: an index file that stays listed but
// cannot be loaded is not taken for a concurrent replacement forever: after
// a few listings the check stops with an error.
func TestIndexFileListedButNotFound(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	ids, err := f.open(t).ListIDs(ctx, core.IndexFile)
	if err != nil || len(ids) == 0 {
		t.Fatal(ids, err)
	}
	be := &racingBackend{Backend: f.be, victim: backend.Handle{Type: core.IndexFile, Name: ids[0].String()}}
	c := New(openOn(t, be), Options{})
	if _, err := c.ListSnapshots(ctx); err != nil {
		t.Fatal(err)
	}
	err = c.LoadIndex(ctx)
	if err == nil || !strings.Contains(err.Error(), "keep vanishing") {
		t.Fatalf("LoadIndex: %v", err)
	}
}

// TestSnapshotRemovedDuringCheck: a snapshot a concurrent forget removed
// after the listing is skipped with a hint; one that is still listed but
// cannot be found is an error.
func TestSnapshotRemovedDuringCheck(t *testing.T) {
	for _, removed := range []bool{true, false} {
		name := map[bool]string{true: "removed", false: "still-listed"}[removed]
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, 2)
			be := &racingBackend{Backend: f.be, victim: backend.Handle{Type: core.SnapshotFile, Name: f.snap.String()}, remove: removed}
			res := runCheck(t, openOn(t, be), false)
			if removed {
				p, ok := res.find(KindSnapshotRemoved)
				if len(res.errors()) != 0 || !ok || p.Snapshot != f.snap || p.IsError() {
					t.Fatalf("removed snapshot:\n%s", res)
				}
				if res.stats.Snapshots != 0 {
					t.Fatalf("stats: %+v", res.stats)
				}
				return
			}
			if p, ok := res.find(KindSnapshotDamaged); !ok || !p.IsError() || p.Snapshot != f.snap {
				t.Fatalf("listed snapshot that cannot be found not reported:\n%s", res)
			}
		})
	}
}

// TestPendingPacks: what a prune mark leaves (packs pending deletion, still
// indexed or orphans) is no error; a pending orphan is a hint that says so,
// and an unmarked orphan (a backup's upload not indexed yet) a plain
// orphan hint.
func TestPendingPacks(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	r := f.open(t)
	orphan := func(plain string) core.ID {
		w := pack.NewWriter(r.Key(), nil)
		if err := w.Add(core.BlobHandle{ID: core.Hash([]byte(plain)), Type: core.DataBlob}, r.Key().Seal(nil, []byte(plain)), 0); err != nil {
			t.Fatal(err)
		}
		buf, id, err := w.Finalize()
		if err != nil {
			t.Fatal(err)
		}
		if err := f.be.Save(ctx, packHandle(id), backend.NewByteReader(buf)); err != nil {
			t.Fatal(err)
		}
		return id
	}
	marked, running := orphan("marked"), orphan("running")
	since := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	if _, err := r.SaveIndexFile(ctx, &index.File{Pending: []index.Pending{
		{Pack: marked, Since: since},
		{Pack: f.treePack, Since: since}, // indexed and pending: nothing to say
	}}); err != nil {
		t.Fatal(err)
	}
	res := runCheck(t, f.open(t), true)
	if len(res.errors()) != 0 {
		t.Fatalf("pending packs counted as errors:\n%s", res)
	}
	var sawMarked, sawRunning bool
	for _, p := range res.problems {
		if p.Kind != KindOrphanedPack || p.IsError() {
			t.Fatalf("unexpected problem %s %s: %s", p.Severity, p.Kind, p.Message)
		}
		switch p.Pack {
		case marked:
			sawMarked = strings.Contains(p.Message, "marked for deletion") && strings.Contains(p.Message, "2024-05-01T12:00:00Z")
		case running:
			sawRunning = strings.Contains(p.Message, "not referenced in any index") && !strings.Contains(p.Message, "marked")
		}
	}
	if !sawMarked || !sawRunning || res.stats.OrphanedPacks != 2 || res.stats.Hints != 2 {
		t.Fatalf("orphan hints (marked %v, running %v), stats %+v:\n%s", sawMarked, sawRunning, res.stats, res)
	}
}
