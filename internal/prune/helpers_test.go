package prune

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/checker"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/repo/pack"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/tree"
)

const testPassword = "secret"

// testParams is a cheap KDF so that opening a repository costs nothing.
var testParams = crypto.Params{N: 1024, R: 1, P: 1}

// t0 is the fixed "now" of the first mark; tests move it explicitly.
var t0 = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// hookBackend is a mem backend whose Save and List can be observed or
// made to fail.
type hookBackend struct {
	*mem.Backend
	mu sync.Mutex // guards onList, listErr, dropSaves
	// onList runs (once, then cleared) before a listing of that type.
	onList map[core.FileType]func()
	// listErr makes listings of that type fail.
	listErr map[core.FileType]error
	// dropSaves makes saves of that type report success without storing
	// anything (a lost write).
	dropSaves map[core.FileType]bool
}

func newHookBackend() *hookBackend {
	return &hookBackend{Backend: mem.New(), onList: map[core.FileType]func(){}, listErr: map[core.FileType]error{}, dropSaves: map[core.FileType]bool{}}
}

func (b *hookBackend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	b.mu.Lock()
	drop := b.dropSaves[h.Type]
	b.mu.Unlock()
	if drop {
		_, err := io.Copy(io.Discard, rd)
		return err
	}
	return b.Backend.Save(ctx, h, rd)
}

func (b *hookBackend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	b.mu.Lock()
	hook := b.onList[t]
	delete(b.onList, t)
	err := b.listErr[t]
	b.mu.Unlock()
	if hook != nil {
		hook()
	}
	if err != nil {
		return err
	}
	return b.Backend.List(ctx, t, fn)
}

func (b *hookBackend) setOnList(t core.FileType, fn func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.onList[t] = fn
}

func (b *hookBackend) setListErr(t core.FileType, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.listErr[t] = err
}

func (b *hookBackend) setDropSaves(t core.FileType, drop bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropSaves[t] = drop
}

// env is a repository on a hookBackend plus the plaintext of every blob
// the test stored, to compare after prune.
type env struct {
	t       *testing.T
	be      *hookBackend
	content map[core.BlobHandle][]byte
}

func newEnv(t *testing.T, version uint) *env {
	t.Helper()
	be := newHookBackend()
	r, err := repo.Init(context.Background(), be, testPassword, version, testParams, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, be: be, content: map[core.BlobHandle][]byte{}}
}

// open returns a fresh repository handle (as a new process would have)
// with the index loaded.
func (e *env) open() *repo.Repository {
	e.t.Helper()
	ctx := context.Background()
	r, err := repo.Open(ctx, e.be, testPassword, repo.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = r.Close() })
	if err := r.LoadIndex(ctx); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// blob returns deterministic random content for seed.
func blob(seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 77))
	b := make([]byte, 400+int(seed%5)*150)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// saveData stores data blobs (dup: even if already known) and returns
// their IDs. Blobs saved between two flushes end up in one pack.
func (e *env) saveData(r *repo.Repository, dup bool, seeds ...uint64) core.IDs {
	e.t.Helper()
	var ids core.IDs
	for _, s := range seeds {
		buf := blob(s)
		res, err := r.SaveBlob(context.Background(), core.DataBlob, buf, core.ID{}, dup)
		if err != nil {
			e.t.Fatal(err)
		}
		e.content[core.BlobHandle{ID: res.ID, Type: core.DataBlob}] = buf
		ids = append(ids, res.ID)
	}
	return ids
}

var mtime = time.Unix(1600000000, 0).UTC()

func fileNode(name string, content core.IDs) *tree.Node {
	return &tree.Node{Name: name, Type: tree.NodeFile, Mode: 0o644, ModTime: mtime, Content: content}
}

func dirNode(name string, sub core.ID) *tree.Node {
	return &tree.Node{Name: name, Type: tree.NodeDir, Mode: 0o755, ModTime: mtime, Subtree: &sub}
}

// saveTree stores a tree of nodes (sorted by name by the caller).
func (e *env) saveTree(r *repo.Repository, nodes ...*tree.Node) core.ID {
	e.t.Helper()
	buf, err := tree.EncodeTree(nodes)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := r.SaveBlob(context.Background(), core.TreeBlob, buf, core.ID{}, false)
	if err != nil {
		e.t.Fatal(err)
	}
	e.content[core.BlobHandle{ID: res.ID, Type: core.TreeBlob}] = buf
	return res.ID
}

func (e *env) flush(r *repo.Repository) {
	e.t.Helper()
	if err := r.Flush(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

var snapSeq int

func (e *env) snapshot(r *repo.Repository, root core.ID) core.ID {
	e.t.Helper()
	snapSeq++
	sn, err := snapshot.New([]string{"/src"}, nil, "host", time.Unix(1700000000+int64(snapSeq), 0))
	if err != nil {
		e.t.Fatal(err)
	}
	sn.Tree = &root
	id, err := r.SaveSnapshot(context.Background(), sn)
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// forget removes a snapshot file (what `forget` does).
func (e *env) forget(id core.ID) {
	e.t.Helper()
	if err := e.be.Remove(context.Background(), backend.Handle{Type: core.SnapshotFile, Name: id.String()}); err != nil {
		e.t.Fatal(err)
	}
}

// files lists the backend's files of type t.
func (e *env) files(tp core.FileType) core.IDSet {
	e.t.Helper()
	s := core.NewIDSet()
	err := e.be.Backend.List(context.Background(), tp, func(fi backend.FileInfo) error {
		id, err := core.ParseID(fi.Name)
		if err != nil {
			return err
		}
		s.Insert(id)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// packOf returns the (single) pack the index of r lists for h.
func packOf(t *testing.T, r *repo.Repository, tp core.BlobType, id core.ID) core.ID {
	t.Helper()
	locs := r.Index().LookupAll(core.BlobHandle{ID: id, Type: tp})
	if len(locs) != 1 {
		t.Fatalf("blob %v/%v is in %d packs, want 1", tp, id.Str(), len(locs))
	}
	return locs[0].Pack
}

// indexFiles decodes the given index files.
func (e *env) indexFiles(ids core.IDSet) map[core.ID]*index.File {
	e.t.Helper()
	r := e.open()
	out := map[core.ID]*index.File{}
	for id := range ids {
		f, err := r.LoadIndexFile(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		out[id] = f
	}
	return out
}

// indexedPacks merges the pack entries of index files (blobs sorted).
func indexedPacks(files map[core.ID]*index.File) map[core.ID][]pack.Blob {
	out := map[core.ID][]pack.Blob{}
	for _, f := range files {
		for _, p := range f.Packs {
			bl := append([]pack.Blob(nil), p.Blobs...)
			index.SortBlobs(bl)
			out[p.ID] = bl
		}
	}
	return out
}

// pendingOf merges the pending entries of index files.
func pendingOf(files map[core.ID]*index.File) map[core.ID]index.Pending {
	out := map[core.ID]index.Pending{}
	for _, f := range files {
		for _, p := range f.Pending {
			out[p.Pack] = p
		}
	}
	return out
}

func handle(tp core.FileType, id core.ID) backend.Handle {
	return backend.Handle{Type: tp, Name: id.String()}
}

func idSet(ids ...core.ID) core.IDSet { return core.NewIDSet(ids...) }

func sameSet(a, b core.IDSet) bool {
	if len(a) != len(b) {
		return false
	}
	for id := range a {
		if !b.Has(id) {
			return false
		}
	}
	return true
}

func setStr(s core.IDSet) string {
	var out []string
	for id := range s {
		out = append(out, id.Str())
	}
	sort.Strings(out)
	return fmt.Sprint(out)
}

func minus(a, b core.IDSet) core.IDSet {
	out := core.NewIDSet()
	for id := range a {
		if !b.Has(id) {
			out.Insert(id)
		}
	}
	return out
}

// checkRepo asserts that the repository is consistent: the checker finds
// no error (indexed packs exist with the right size, every tree and data
// blob of every snapshot is indexed), and every tree and data blob of
// every snapshot loads and matches the bytes the test stored. It returns
// the used blob set.
func (e *env) checkRepo() core.BlobSet {
	e.t.Helper()
	ctx := context.Background()
	r := e.open()
	var problems []checker.Problem
	c := checker.New(r, checker.Options{Report: func(p checker.Problem) { problems = append(problems, p) }})
	if _, err := c.ListSnapshots(ctx); err != nil {
		e.t.Fatalf("check: %v", err)
	}
	if err := c.LoadIndex(ctx); err != nil {
		e.t.Fatalf("check: %v", err)
	}
	if err := c.CheckPacks(ctx); err != nil {
		e.t.Fatalf("check: %v", err)
	}
	if err := c.CheckStructure(ctx); err != nil {
		e.t.Fatalf("check: %v", err)
	}
	for _, p := range problems {
		if p.IsError() {
			e.t.Errorf("check: %s: %s", p.Kind, p.Message)
		}
	}
	return e.walkUsed(r)
}

// walkUsed loads every tree and data blob of every snapshot (each must be
// in a present, indexed pack and match the stored bytes) and returns the
// used set.
func (e *env) walkUsed(r *repo.Repository) core.BlobSet {
	e.t.Helper()
	snaps, errs, err := r.LoadAllSnapshots(context.Background())
	if err != nil || len(errs) > 0 {
		e.t.Fatalf("load snapshots: %v %v", err, errs)
	}
	packs := e.files(core.PackFile)
	used := core.NewBlobSet()
	var walk func(id core.ID)
	walk = func(id core.ID) {
		h := core.BlobHandle{ID: id, Type: core.TreeBlob}
		if used.Has(h) {
			return
		}
		used.Insert(h)
		buf := e.loadBlob(r, packs, h)
		if buf == nil {
			return
		}
		tr, err := tree.DecodeTree(buf)
		if err != nil {
			e.t.Fatalf("decode tree %v: %v", id.Str(), err)
		}
		for _, n := range tr.Nodes {
			switch n.Type {
			case tree.NodeDir:
				walk(*n.Subtree)
			case tree.NodeFile:
				for _, c := range n.Content {
					dh := core.BlobHandle{ID: c, Type: core.DataBlob}
					if !used.Has(dh) {
						used.Insert(dh)
						e.loadBlob(r, packs, dh)
					}
				}
			}
		}
	}
	for _, sn := range snaps {
		walk(*sn.Tree)
	}
	return used
}

// loadBlob loads h, requires that the index lists it in a pack present in
// the backend, and compares it with the stored bytes.
func (e *env) loadBlob(r *repo.Repository, packs core.IDSet, h core.BlobHandle) []byte {
	e.t.Helper()
	present := false
	for _, l := range r.Index().LookupAll(h) {
		if packs.Has(l.Pack) {
			present = true
		}
	}
	if !present {
		e.t.Errorf("used blob %v has no copy in a present, indexed pack", h)
		return nil
	}
	buf, err := r.LoadBlob(context.Background(), h.Type, h.ID, nil)
	if err != nil {
		e.t.Errorf("load used blob %v: %v", h, err)
		return nil
	}
	if want, ok := e.content[h]; ok && !bytes.Equal(buf, want) {
		e.t.Errorf("blob %v: content differs after prune", h)
	}
	return buf
}

// checkNoGarbage asserts that after a complete prune every pack in data/
// is indexed, not pending, and holds a used blob.
func (e *env) checkNoGarbage(used core.BlobSet) {
	e.t.Helper()
	r := e.open()
	contents := r.Index().PackContents()
	if p := r.Index().Pending(); len(p) > 0 {
		e.t.Errorf("%d packs still pending after a complete prune", len(p))
	}
	for id := range e.files(core.PackFile) {
		blobs, ok := contents[id]
		if !ok {
			e.t.Errorf("pack %v is in no index after a complete prune", id.Str())
			continue
		}
		if !holdsUsed(blobs, used) {
			e.t.Errorf("pack %v holds no used blob after a complete prune", id.Str())
		}
	}
}

// scenario is a small repository with every kind of pack prune handles.
type scenario struct {
	*env
	keep, gone core.ID // snapshots: keep stays, gone is forgotten
	a1, a2     core.ID // data in pA, used by keep
	m1, m2     core.ID // data in pM: m1 used by keep, m2 only by gone
	g1, g2     core.ID // data in pG, only used by gone
	o1         core.ID // data in the orphan pack pO (in no index)
	t1, u1, t2 core.ID // trees: root and subtree of keep, root of gone
	pA, pM, pG core.ID
	pT         core.ID // tree pack: t1, u1 (used), t2 (unused)
	pO         core.ID
}

// newScenario builds the repository and forgets snapshot gone:
//
//	pA = {a1, a2}   fully used         -> kept
//	pM = {m1, m2}   partly used        -> repacked (with MaxUnused 0%)
//	pG = {g1, g2}   unused             -> removed
//	pT = {t1,u1,t2} tree, partly used  -> repacked
//	pO = {o1}       in no index        -> orphan
func newScenario(t *testing.T) *scenario {
	t.Helper()
	s := &scenario{env: newEnv(t, 2)}
	r := s.open()
	ids := s.saveData(r, false, 1, 2)
	s.a1, s.a2 = ids[0], ids[1]
	s.flush(r)
	ids = s.saveData(r, false, 3, 4)
	s.m1, s.m2 = ids[0], ids[1]
	s.flush(r)
	ids = s.saveData(r, false, 5, 6)
	s.g1, s.g2 = ids[0], ids[1]
	s.flush(r)
	s.u1 = s.saveTree(r, fileNode("x", core.IDs{s.a1}))
	s.t1 = s.saveTree(r, fileNode("a", core.IDs{s.a1, s.a2}), fileNode("m", core.IDs{s.m1}), dirNode("sub", s.u1))
	s.t2 = s.saveTree(r, fileNode("g", core.IDs{s.g1, s.g2}), fileNode("m2", core.IDs{s.m2}))
	s.flush(r)
	s.keep = s.snapshot(r, s.t1)
	s.gone = s.snapshot(r, s.t2)
	s.pA = packOf(t, r, core.DataBlob, s.a1)
	s.pM = packOf(t, r, core.DataBlob, s.m1)
	s.pG = packOf(t, r, core.DataBlob, s.g1)
	s.pT = packOf(t, r, core.TreeBlob, s.t1)
	s.pO = s.orphan(7)
	s.o1 = core.Hash(blob(7))
	s.forget(s.gone)
	return s
}

// orphan uploads a pack holding blob(seed) and deletes the index file
// that lists it, as a crashed backup leaves it.
func (e *env) orphan(seed uint64) core.ID {
	e.t.Helper()
	before := e.files(core.IndexFile)
	r := e.open()
	id := e.saveData(r, false, seed)[0]
	e.flush(r)
	p := packOf(e.t, r, core.DataBlob, id)
	for f := range minus(e.files(core.IndexFile), before) {
		if err := e.be.Remove(context.Background(), backend.Handle{Type: core.IndexFile, Name: f.String()}); err != nil {
			e.t.Fatal(err)
		}
	}
	return p
}

// failLocker is a Locker that fails from its n-th check on (counting
// from 1).
type failLocker struct {
	mu     sync.Mutex // guards checks
	checks int
	n      int
}

var errLockLost = errors.New("lock lost (test)")

func (l *failLocker) Check(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checks++
	if l.checks >= l.n {
		return errLockLost
	}
	return nil
}
