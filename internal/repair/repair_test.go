package repair

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/repo/pack"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/tree"
)

const testPassword = "secret"

var testParams = crypto.Params{N: 1024, R: 1, P: 1}

// hookBackend wraps a mem backend and records or fails operations.
type hookBackend struct {
	*mem.Backend
	mu  sync.Mutex // guards ops, failSave, failLoad
	ops []string   // "save index/xxxx", "remove index/xxxx", ...
	// failSave, if set, is called before every Save; an error fails it.
	failSave func(h backend.Handle) error
	// failLoad, if set, is called before every Load.
	failLoad func(h backend.Handle) error
}

func (b *hookBackend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	b.mu.Lock()
	f := b.failSave
	b.mu.Unlock()
	if f != nil {
		if err := f(h); err != nil {
			return err
		}
	}
	if err := b.Backend.Save(ctx, h, rd); err != nil {
		return err
	}
	b.mu.Lock()
	b.ops = append(b.ops, "save "+h.String())
	b.mu.Unlock()
	return nil
}

func (b *hookBackend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	b.mu.Lock()
	f := b.failLoad
	b.mu.Unlock()
	if f != nil {
		if err := f(h); err != nil {
			return err
		}
	}
	return b.Backend.Load(ctx, h, length, offset, fn)
}

func (b *hookBackend) Remove(ctx context.Context, h backend.Handle) error {
	if err := b.Backend.Remove(ctx, h); err != nil {
		return err
	}
	b.mu.Lock()
	b.ops = append(b.ops, "remove "+h.String())
	b.mu.Unlock()
	return nil
}

func (b *hookBackend) resetOps() {
	b.mu.Lock()
	b.ops = nil
	b.mu.Unlock()
}

func (b *hookBackend) opsCopy() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.ops...)
}

// listIDs lists the files of type t.
func listIDs(t *testing.T, be backend.Backend, ft core.FileType) core.IDs {
	t.Helper()
	var ids core.IDs
	err := be.List(context.Background(), ft, func(fi backend.FileInfo) error {
		id, err := core.ParseID(fi.Name)
		if err != nil {
			t.Fatalf("bad name %q", fi.Name)
		}
		ids = append(ids, id)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Sort(ids)
	return ids
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// fixture is a repository with one snapshot:
//
//	/a        file, blobs data[0..1]   (pack of its own)
//	/dir/     subtree (pack of its own)
//	/dir/b    file, blobs data[2..4]
//	/dir/e    empty file
//
// plus packs of unrelated data blobs so there are many packs.
type fixture struct {
	be       *hookBackend
	version  uint
	snap     core.ID
	root     core.ID
	sub      core.ID
	data     []core.ID
	dataSize []int
}

func openRepo(t *testing.T, be backend.Backend) *repo.Repository {
	t.Helper()
	r, err := repo.Open(context.Background(), be, testPassword, repo.Options{PackSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func saveTree(t *testing.T, r *repo.Repository, nodes []*tree.Node) core.ID {
	t.Helper()
	buf, err := tree.EncodeTree(nodes)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.SaveBlob(context.Background(), core.TreeBlob, buf, core.ID{}, false)
	if err != nil {
		t.Fatal(err)
	}
	return res.ID
}

func flush(t *testing.T, r *repo.Repository) {
	t.Helper()
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func newFixture(t *testing.T, version uint) *fixture {
	t.Helper()
	ctx := context.Background()
	be := &hookBackend{Backend: mem.New()}
	r0, err := repo.Init(ctx, be, testPassword, version, testParams, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r0.Close()
	r := openRepo(t, be)
	f := &fixture{be: be, version: version}
	mt := time.Unix(1600000000, 0).UTC()
	save := func(seed uint64, n int) core.ID {
		res, err := r.SaveBlob(ctx, core.DataBlob, randBytes(seed, n), core.ID{}, false)
		if err != nil {
			t.Fatal(err)
		}
		f.data = append(f.data, res.ID)
		f.dataSize = append(f.dataSize, n)
		return res.ID
	}
	// file a: two blobs, flushed into their own pack(s)
	save(1, 1500)
	save(2, 1700)
	flush(t, r)
	// file b: three blobs
	for i := uint64(3); i < 6; i++ {
		save(i, 1000+int(i)*100)
	}
	// unrelated data: many small packs (pack size 4096)
	for i := uint64(100); i < 130; i++ {
		if _, err := r.SaveBlob(ctx, core.DataBlob, randBytes(i, 900), core.ID{}, false); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, r)
	f.sub = saveTree(t, r, []*tree.Node{
		{Name: "b", Type: tree.NodeFile, Mode: 0o644, ModTime: mt, Size: uint64(f.dataSize[2] + f.dataSize[3] + f.dataSize[4]), Content: f.data[2:5]},
		{Name: "e", Type: tree.NodeFile, Mode: 0o644, ModTime: mt, Content: core.IDs{}},
	})
	flush(t, r) // the subtree gets a pack of its own
	sub := f.sub
	f.root = saveTree(t, r, []*tree.Node{
		{Name: "a", Type: tree.NodeFile, Mode: 0o644, ModTime: mt, Size: uint64(f.dataSize[0] + f.dataSize[1]), Content: f.data[0:2]},
		{Name: "dir", Type: tree.NodeDir, Mode: 0o755, ModTime: mt, Subtree: &sub},
	})
	flush(t, r)
	sn, err := snapshot.New([]string{"/src"}, []string{"t1"}, "host", time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	root := f.root
	sn.Tree = &root
	if f.snap, err = r.SaveSnapshot(ctx, sn); err != nil {
		t.Fatal(err)
	}
	return f
}

// packOf returns the pack holding blob h, per the stored index.
func (f *fixture) packOf(t *testing.T, h core.BlobHandle) core.ID {
	t.Helper()
	r := openRepo(t, f.be)
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, ok := r.Index().Lookup(h)
	if !ok {
		t.Fatalf("%v not indexed", h)
	}
	return l.Pack
}

// indexContents loads the stored index and returns every pack's sorted
// blob list.
func indexContents(t *testing.T, be backend.Backend) map[core.ID][]pack.Blob {
	t.Helper()
	r := openRepo(t, be)
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r.Index().PackContents()
}

func sameContents(a, b map[core.ID][]pack.Blob) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d packs vs %d", len(a), len(b))
	}
	for id, bl := range a {
		if !equalBlobs(bl, b[id]) {
			return fmt.Errorf("pack %v: blobs differ:\n%v\n%v", id.Str(), bl, b[id])
		}
	}
	return nil
}

func removeFile(t *testing.T, be backend.Backend, ft core.FileType, id core.ID) {
	t.Helper()
	if err := be.Remove(context.Background(), backend.Handle{Type: ft, Name: id.String()}); err != nil {
		t.Fatal(err)
	}
}

func TestRebuildIndexFromNothing(t *testing.T) {
	for _, v := range []uint{1, 2} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			f := newFixture(t, v)
			want := indexContents(t, f.be)
			if len(want) < 10 {
				t.Fatalf("fixture has only %d packs", len(want))
			}
			for _, id := range listIDs(t, f.be, core.IndexFile) {
				removeFile(t, f.be, core.IndexFile, id)
			}
			r := openRepo(t, f.be)
			res, err := RebuildIndex(context.Background(), r, IndexOptions{MaxIndexBlobs: 7})
			if err != nil {
				t.Fatal(err)
			}
			if res.ReadPacks != len(want) || res.KeptPacks != 0 || len(res.UnreadablePacks) != 0 {
				t.Fatalf("result: %+v", res)
			}
			got := indexContents(t, f.be)
			if err := sameContents(want, got); err != nil {
				t.Fatal(err)
			}
			// the in-memory index of r is the new one too
			if err := sameContents(want, r.Index().PackContents()); err != nil {
				t.Fatal(err)
			}
			// at most 7 blobs per index file
			files := listIDs(t, f.be, core.IndexFile)
			if len(files) != len(res.NewIndexFiles) || len(files) < 2 {
				t.Fatalf("%d index files stored, %d written", len(files), len(res.NewIndexFiles))
			}
			for _, id := range files {
				xf, err := r.LoadIndexFile(context.Background(), id)
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, p := range xf.Packs {
					n += len(p.Blobs)
				}
				if n > 7 && len(xf.Packs) > 1 {
					t.Fatalf("index file %v holds %d blobs in %d packs", id.Str(), n, len(xf.Packs))
				}
			}
		})
	}
}

func TestRebuildIndexKeepsConsistentPacks(t *testing.T) {
	f := newFixture(t, 2)
	want := indexContents(t, f.be)
	oldFiles := listIDs(t, f.be, core.IndexFile)
	f.be.resetOps()
	r := openRepo(t, f.be)
	res, err := RebuildIndex(context.Background(), r, IndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.ReadPacks != 0 || res.KeptPacks != len(want) {
		t.Fatalf("read %d, kept %d of %d packs", res.ReadPacks, res.KeptPacks, len(want))
	}
	if err := sameContents(want, indexContents(t, f.be)); err != nil {
		t.Fatal(err)
	}
	if len(res.DeletedIndexFiles) != len(oldFiles) {
		t.Fatalf("deleted %d of %d old index files", len(res.DeletedIndexFiles), len(oldFiles))
	}
	for _, id := range listIDs(t, f.be, core.IndexFile) {
		for _, o := range oldFiles {
			if id == o {
				t.Fatalf("old index file %v still there", id.Str())
			}
		}
	}
	// every new index file was saved before the first old one was removed
	ops := f.be.opsCopy()
	lastSave, firstRemove := -1, len(ops)
	for i, op := range ops {
		if strings.HasPrefix(op, "save index/") {
			lastSave = i
		}
		if strings.HasPrefix(op, "remove index/") && i < firstRemove {
			firstRemove = i
		}
	}
	if lastSave < 0 || lastSave > firstRemove {
		t.Fatalf("index writes and removals interleaved: %v", ops)
	}

	// --read-all-packs reads every pack and gives the same index
	res, err = RebuildIndex(context.Background(), openRepo(t, f.be), IndexOptions{ReadAllPacks: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.ReadPacks != len(want) || res.KeptPacks != 0 {
		t.Fatalf("read-all: read %d, kept %d of %d", res.ReadPacks, res.KeptPacks, len(want))
	}
	if err := sameContents(want, indexContents(t, f.be)); err != nil {
		t.Fatal(err)
	}
}

func TestRebuildIndexMissingAndDamagedPacks(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	want := indexContents(t, f.be)
	missing := f.packOf(t, core.BlobHandle{ID: f.data[0], Type: core.DataBlob})
	damaged := f.packOf(t, core.BlobHandle{ID: f.data[2], Type: core.DataBlob})
	if missing == damaged {
		t.Fatal("fixture: blobs share a pack")
	}
	removeFile(t, f.be, core.PackFile, missing)
	// replace the pack by garbage of another size (the size no longer
	// matches the index, so the header must be read, and fails)
	removeFile(t, f.be, core.PackFile, damaged)
	h := backend.Handle{Type: core.PackFile, Name: damaged.String()}
	if err := f.be.Backend.Save(ctx, h, backend.NewByteReader(randBytes(99, 3000))); err != nil {
		t.Fatal(err)
	}
	r := openRepo(t, f.be)
	res, err := RebuildIndex(ctx, r, IndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.MissingPacks) != 1 || res.MissingPacks[0] != missing {
		t.Fatalf("missing packs: %v", res.MissingPacks)
	}
	if len(res.UnreadablePacks) != 1 || res.UnreadablePacks[0].Pack != damaged || !errors.Is(res.UnreadablePacks[0].Err, pack.ErrInvalidPack) {
		t.Fatalf("unreadable packs: %v", res.UnreadablePacks)
	}
	got := indexContents(t, f.be)
	delete(want, missing)
	delete(want, damaged)
	if err := sameContents(want, got); err != nil {
		t.Fatal(err)
	}
	// the unreadable pack is still there
	if _, err := f.be.Stat(ctx, h); err != nil {
		t.Fatalf("damaged pack was removed: %v", err)
	}
}

// TestRebuildIndexDuplicateAndSplitEntries covers H40: a pack listed in two
// index files, once completely and once with only part of its blobs, and a
// damaged index file.
func TestRebuildIndexDuplicateAndSplitEntries(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	want := indexContents(t, f.be)
	r := openRepo(t, f.be)
	var split, dup core.ID
	for id, bl := range want {
		if len(bl) >= 3 && split.IsNull() {
			split = id
		} else if dup.IsNull() {
			dup = id
		}
	}
	if split.IsNull() || dup.IsNull() {
		t.Fatal("fixture: no pack with 3 blobs")
	}
	extra := &index.File{Packs: []index.PackEntry{
		{ID: split, Blobs: want[split][:1]},
		{ID: dup, Blobs: want[dup]},
	}}
	if _, err := r.SaveIndexFile(ctx, extra); err != nil {
		t.Fatal(err)
	}
	// and a damaged index file
	garbage := randBytes(5, 200)
	gid := core.Hash(garbage)
	if err := f.be.Save(ctx, backend.Handle{Type: core.IndexFile, Name: gid.String()}, backend.NewByteReader(garbage)); err != nil {
		t.Fatal(err)
	}
	res, err := RebuildIndex(ctx, openRepo(t, f.be), IndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.ReadPacks != 1 {
		t.Fatalf("read %d packs, want only the split one", res.ReadPacks)
	}
	if len(res.DamagedIndexFiles) != 1 || res.DamagedIndexFiles[0].File != gid {
		t.Fatalf("damaged index files: %v", res.DamagedIndexFiles)
	}
	if err := sameContents(want, indexContents(t, f.be)); err != nil {
		t.Fatal(err)
	}
	// every pack is listed exactly once
	seen := core.NewIDSet()
	rr := openRepo(t, f.be)
	for _, id := range listIDs(t, f.be, core.IndexFile) {
		xf, err := rr.LoadIndexFile(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range xf.Packs {
			if seen.Has(p.ID) {
				t.Fatalf("pack %v listed twice", p.ID.Str())
			}
			seen.Insert(p.ID)
		}
	}
}

// A failure while writing the new index leaves every old index file.
func TestRebuildIndexWriteFailureKeepsOldIndex(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	oldFiles := listIDs(t, f.be, core.IndexFile)
	saves := 0
	f.be.failSave = func(h backend.Handle) error {
		if h.Type != core.IndexFile {
			return nil
		}
		if saves++; saves == 2 {
			return errors.New("injected save failure")
		}
		return nil
	}
	_, err := RebuildIndex(ctx, openRepo(t, f.be), IndexOptions{ReadAllPacks: true, MaxIndexBlobs: 5})
	if err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("err = %v", err)
	}
	have := core.NewIDSet(listIDs(t, f.be, core.IndexFile)...)
	for _, id := range oldFiles {
		if !have.Has(id) {
			t.Fatalf("old index file %v removed after a failed rebuild", id.Str())
		}
	}
}

// A read error that is not damage aborts the rebuild before anything is
// written, instead of leaving the pack out of the index.
func TestRebuildIndexReadErrorAborts(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	victim := f.packOf(t, core.BlobHandle{ID: f.data[0], Type: core.DataBlob})
	for _, id := range listIDs(t, f.be, core.IndexFile) {
		removeFile(t, f.be, core.IndexFile, id)
	}
	f.be.failLoad = func(h backend.Handle) error {
		if h.Type == core.PackFile && h.Name == victim.String() {
			return errors.New("connection reset")
		}
		return nil
	}
	f.be.resetOps()
	_, err := RebuildIndex(ctx, openRepo(t, f.be), IndexOptions{})
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("err = %v", err)
	}
	if ops := f.be.opsCopy(); len(ops) != 0 {
		t.Fatalf("rebuild wrote or removed files after a read error: %v", ops)
	}
}

// repairAll runs RepairSnapshot on every snapshot.
func repairAll(t *testing.T, be backend.Backend, opts SnapshotOptions) []*SnapshotResult {
	t.Helper()
	ctx := context.Background()
	r := openRepo(t, be)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	all, errs, err := r.LoadAllSnapshots(ctx)
	if err != nil || len(errs) > 0 {
		t.Fatal(err, errs)
	}
	s := NewSnapshotRepairer(r, opts)
	var out []*SnapshotResult
	for _, sn := range all {
		res, err := s.RepairSnapshot(ctx, sn)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res)
	}
	return out
}

func loadTree(t *testing.T, r *repo.Repository, id core.ID) *tree.Tree {
	t.Helper()
	buf, err := r.LoadBlob(context.Background(), core.TreeBlob, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := tree.DecodeTree(buf)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestRepairSnapshotUndamaged(t *testing.T) {
	f := newFixture(t, 2)
	f.be.resetOps()
	res := repairAll(t, f.be, SnapshotOptions{Forget: true})
	if len(res) != 1 || res[0].Modified || len(res[0].Changes) != 0 {
		t.Fatalf("result: %+v", res[0])
	}
	for _, op := range f.be.opsCopy() {
		if !strings.Contains(op, "lock") {
			t.Fatalf("undamaged repository modified: %v", op)
		}
	}
}

func TestRepairSnapshotMissingData(t *testing.T) {
	for _, forget := range []bool{false, true} {
		t.Run(fmt.Sprint("forget=", forget), func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, 2)
			// the pack holding b's middle blob disappears; repair index first
			victim := f.packOf(t, core.BlobHandle{ID: f.data[3], Type: core.DataBlob})
			removeFile(t, f.be, core.PackFile, victim)
			if _, err := RebuildIndex(ctx, openRepo(t, f.be), IndexOptions{}); err != nil {
				t.Fatal(err)
			}
			// a dry run changes nothing
			before := listIDs(t, f.be, core.SnapshotFile)
			f.be.resetOps()
			dry := repairAll(t, f.be, SnapshotOptions{DryRun: true, Forget: forget})
			if !dry[0].Modified || len(dry[0].Changes) == 0 || !dry[0].NewSnapshot.IsNull() {
				t.Fatalf("dry run: %+v", dry[0])
			}
			if ops := f.be.opsCopy(); len(ops) != 0 {
				t.Fatalf("dry run wrote: %v", ops)
			}

			res := repairAll(t, f.be, SnapshotOptions{Forget: forget})[0]
			if !res.Modified || res.NewSnapshot.IsNull() || res.RemovedOriginal != forget {
				t.Fatalf("result: %+v", res)
			}
			var kinds []string
			for _, c := range res.Changes {
				kinds = append(kinds, c.String())
			}
			wantChanges := []string{`file "/dir/b": removed missing content`}
			// every other blob of the victim pack is gone as well
			r := openRepo(t, f.be)
			if err := r.LoadIndex(ctx); err != nil {
				t.Fatal(err)
			}
			for _, id := range f.data[:2] {
				if !r.Index().Has(core.BlobHandle{ID: id, Type: core.DataBlob}) {
					wantChanges = append([]string{`file "/a": removed missing content`}, wantChanges...)
					break
				}
			}
			if strings.Join(kinds, "\n") != strings.Join(wantChanges, "\n") {
				t.Fatalf("changes:\n%s\nwant:\n%s", strings.Join(kinds, "\n"), strings.Join(wantChanges, "\n"))
			}
			after := listIDs(t, f.be, core.SnapshotFile)
			if forget && (len(after) != 1 || after[0] == before[0]) || !forget && len(after) != 2 {
				t.Fatalf("snapshots before %v after %v", before, after)
			}
			sn, err := r.LoadSnapshot(ctx, res.NewSnapshot)
			if err != nil {
				t.Fatal(err)
			}
			if sn.Original == nil || *sn.Original != f.snap {
				t.Fatalf("original = %v", sn.Original)
			}
			wantTags := "t1,repaired"
			if forget {
				wantTags = "t1"
			}
			if strings.Join(sn.Tags, ",") != wantTags {
				t.Fatalf("tags %v", sn.Tags)
			}
			root := loadTree(t, r, *sn.Tree)
			sub := loadTree(t, r, *root.Find("dir").Subtree)
			b := sub.Find("b")
			var want core.IDs
			var size uint64
			for i := 2; i < 5; i++ {
				if r.Index().Has(core.BlobHandle{ID: f.data[i], Type: core.DataBlob}) {
					want = append(want, f.data[i])
					size += uint64(f.dataSize[i])
				}
			}
			if fmt.Sprint(b.Content) != fmt.Sprint(want) || b.Size != size || len(want) == 3 {
				t.Fatalf("b: content %v size %d, want %v size %d", b.Content, b.Size, want, size)
			}
			if e := sub.Find("e"); e == nil || e.Content == nil {
				t.Fatal("empty file lost")
			}
			// a second run finds nothing to repair
			for _, res := range repairAll(t, f.be, SnapshotOptions{Forget: forget}) {
				if res.Snapshot == *sn.ID() && res.Modified {
					t.Fatalf("repaired snapshot needs repair again: %+v", res)
				}
			}
		})
	}
}

func TestRepairSnapshotMissingTrees(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	subPack := f.packOf(t, core.BlobHandle{ID: f.sub, Type: core.TreeBlob})
	rootPack := f.packOf(t, core.BlobHandle{ID: f.root, Type: core.TreeBlob})
	if subPack == rootPack {
		t.Fatal("fixture: trees share a pack")
	}
	// a second snapshot whose root is an unreadable tree
	r := openRepo(t, f.be)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	sn2, _ := snapshot.New([]string{"/other"}, nil, "host", time.Unix(1700000100, 0))
	sub := f.sub
	sn2.Tree = &sub
	id2, err := r.SaveSnapshot(ctx, sn2)
	if err != nil {
		t.Fatal(err)
	}
	removeFile(t, f.be, core.PackFile, subPack)
	if _, err := RebuildIndex(ctx, openRepo(t, f.be), IndexOptions{}); err != nil {
		t.Fatal(err)
	}
	res := repairAll(t, f.be, SnapshotOptions{})
	byID := map[core.ID]*SnapshotResult{}
	for _, x := range res {
		byID[x.Snapshot] = x
	}
	// snapshot 1: /dir became an empty directory
	r1 := byID[f.snap]
	if !r1.Modified || len(r1.Changes) != 1 || r1.Changes[0].String() != `dir "/dir": replaced with empty directory` {
		t.Fatalf("snapshot 1: %+v", r1)
	}
	// snapshot 2: unreadable root, kept without --forget
	r2 := byID[id2]
	if !r2.RootUnreadable || r2.RemovedOriginal || !r2.NewSnapshot.IsNull() {
		t.Fatalf("snapshot 2: %+v", r2)
	}
	r = openRepo(t, f.be)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	sn, err := r.LoadSnapshot(ctx, r1.NewSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	root := loadTree(t, r, *sn.Tree)
	dir := root.Find("dir")
	if dir == nil || len(loadTree(t, r, *dir.Subtree).Nodes) != 0 || root.Find("a") == nil {
		t.Fatalf("repaired root: %+v", root.Nodes)
	}
	// with --forget the unreadable snapshot goes away, and the original of
	// snapshot 1 too
	repairAll(t, f.be, SnapshotOptions{Forget: true})
	have := core.NewIDSet(listIDs(t, f.be, core.SnapshotFile)...)
	if have.Has(id2) || have.Has(f.snap) || !have.Has(r1.NewSnapshot) {
		t.Fatalf("snapshots left: %v", have.List())
	}
}

func TestRepairSnapshotInvalidNodeAndSize(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 1)
	r := openRepo(t, f.be)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	mt := time.Unix(1600000000, 0).UTC()
	root := saveTree(t, r, []*tree.Node{
		{Name: "odd", Type: tree.NodeIrregular, Mode: 0o644, ModTime: mt},
		{Name: "wrongsize", Type: tree.NodeFile, Mode: 0o644, ModTime: mt, Size: 1, Content: f.data[0:1]},
	})
	flush(t, r)
	sn, _ := snapshot.New([]string{"/x"}, nil, "host", time.Unix(1700000100, 0))
	sn.Tree = &root
	id, err := r.SaveSnapshot(ctx, sn)
	if err != nil {
		t.Fatal(err)
	}
	var got *SnapshotResult
	for _, x := range repairAll(t, f.be, SnapshotOptions{}) {
		if x.Snapshot == id {
			got = x
		} else if x.Modified {
			t.Fatalf("undamaged snapshot modified: %+v", x)
		}
	}
	var kinds []string
	for _, c := range got.Changes {
		kinds = append(kinds, c.String())
	}
	want := `file "/odd": removed node with invalid type` + "\n" + `file "/wrongsize": fixed incorrect size`
	if strings.Join(kinds, "\n") != want {
		t.Fatalf("changes: %v", kinds)
	}
	r = openRepo(t, f.be)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	nsn, err := r.LoadSnapshot(ctx, got.NewSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	tr := loadTree(t, r, *nsn.Tree)
	if len(tr.Nodes) != 1 || tr.Nodes[0].Size != uint64(f.dataSize[0]) {
		t.Fatalf("repaired tree: %+v", tr.Nodes)
	}
}

// An I/O error while loading a tree is not damage: repair stops and writes
// nothing.
func TestRepairSnapshotIOErrorAborts(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	subPack := f.packOf(t, core.BlobHandle{ID: f.sub, Type: core.TreeBlob})
	f.be.failLoad = func(h backend.Handle) error {
		if h.Type == core.PackFile && h.Name == subPack.String() {
			return errors.New("connection reset")
		}
		return nil
	}
	r := openRepo(t, f.be)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	sn, err := r.LoadSnapshot(ctx, f.snap)
	if err != nil {
		t.Fatal(err)
	}
	f.be.resetOps()
	_, err = NewSnapshotRepairer(r, SnapshotOptions{Forget: true}).RepairSnapshot(ctx, sn)
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("err = %v", err)
	}
	if ops := f.be.opsCopy(); len(ops) != 0 {
		t.Fatalf("wrote after an I/O error: %v", ops)
	}
}

// Prune's pending marks survive a rebuild for packs that are still indexed.
func TestRebuildIndexKeepsPendingMarks(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	want := indexContents(t, f.be)
	var marked core.ID
	for id := range want {
		marked = id
		break
	}
	gone := core.NewRandomID()
	since := time.Unix(1700000000, 0).UTC()
	r := openRepo(t, f.be)
	extra := &index.File{Pending: []index.Pending{{Pack: marked, Since: since}, {Pack: gone, Since: since}}}
	if _, err := r.SaveIndexFile(ctx, extra); err != nil {
		t.Fatal(err)
	}
	res, err := RebuildIndex(ctx, openRepo(t, f.be), IndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.PendingMarks != 1 {
		t.Fatalf("pending marks: %d", res.PendingMarks)
	}
	r = openRepo(t, f.be)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	p := r.Index().Pending()
	if len(p) != 1 || !p[marked].Since.Equal(since) {
		t.Fatalf("pending after rebuild: %v", p)
	}
	if err := sameContents(want, r.Index().PackContents()); err != nil {
		t.Fatal(err)
	}
}
