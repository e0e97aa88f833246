package checker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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

// fixture is a small repository on a mem backend.
type fixture struct {
	be       *mem.Backend
	snap     core.ID
	root     core.ID
	sub      core.ID   // subtree "dir"
	data     []core.ID // data blobs of "dir/file"
	version  uint
	dataPack core.ID // a pack holding data blobs
	treePack core.ID
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func saveTree(t *testing.T, ctx context.Context, r *repo.Repository, nodes []*tree.Node) core.ID {
	t.Helper()
	buf, err := tree.EncodeTree(nodes)
	if err != nil {
		t.Fatal(err)
	}
	return saveRawTree(t, ctx, r, buf)
}

func saveRawTree(t *testing.T, ctx context.Context, r *repo.Repository, buf []byte) core.ID {
	t.Helper()
	res, err := r.SaveBlob(ctx, core.TreeBlob, buf, core.ID{}, false)
	if err != nil {
		t.Fatal(err)
	}
	return res.ID
}

func saveSnapshot(t *testing.T, ctx context.Context, r *repo.Repository, root core.ID) core.ID {
	t.Helper()
	sn, err := snapshot.New([]string{"/src"}, nil, "host", time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	sn.Tree = &root
	id, err := r.SaveSnapshot(ctx, sn)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newFixture(t *testing.T, version uint) *fixture {
	t.Helper()
	ctx := context.Background()
	be := mem.New()
	r, err := repo.Init(ctx, be, testPassword, version, testParams, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f := &fixture{be: be, version: version}
	for i := 0; i < 3; i++ {
		res, err := r.SaveBlob(ctx, core.DataBlob, randBytes(uint64(i), 1000+i*500), core.ID{}, false)
		if err != nil {
			t.Fatal(err)
		}
		f.data = append(f.data, res.ID)
	}
	mt := time.Unix(1600000000, 0)
	f.sub = saveTree(t, ctx, r, []*tree.Node{
		{Name: "empty", Type: tree.NodeFile, Mode: 0o644, ModTime: mt, Content: core.IDs{}},
		{Name: "file", Type: tree.NodeFile, Mode: 0o644, ModTime: mt, Size: 4500, Content: f.data},
		{Name: "link", Type: tree.NodeSymlink, Mode: 0o777, ModTime: mt, LinkTarget: "file"},
	})
	sub := f.sub
	f.root = saveTree(t, ctx, r, []*tree.Node{
		{Name: "dir", Type: tree.NodeDir, Mode: 0o755, ModTime: mt, Subtree: &sub},
	})
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	f.snap = saveSnapshot(t, ctx, r, f.root)
	l, _ := r.Index().Lookup(core.BlobHandle{ID: f.data[0], Type: core.DataBlob})
	f.dataPack = l.Pack
	l, _ = r.Index().Lookup(core.BlobHandle{ID: f.root, Type: core.TreeBlob})
	f.treePack = l.Pack
	return f
}

func (f *fixture) open(t *testing.T) *repo.Repository {
	t.Helper()
	r, err := repo.Open(context.Background(), f.be, testPassword, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// result collects a full check run.
type result struct {
	problems []Problem
	indexErr error
	stats    Stats
}

func (res result) errors() []Problem {
	var out []Problem
	for _, p := range res.problems {
		if p.IsError() {
			out = append(out, p)
		}
	}
	return out
}

func (res result) find(k Kind) (Problem, bool) {
	for _, p := range res.problems {
		if p.Kind == k {
			return p, true
		}
	}
	return Problem{}, false
}

func (res result) String() string {
	var b strings.Builder
	for _, p := range res.problems {
		fmt.Fprintf(&b, "%s %s: %s\n", p.Severity, p.Kind, p.Message)
	}
	return b.String()
}

func runCheck(t *testing.T, r *repo.Repository, readData bool) result {
	t.Helper()
	ctx := context.Background()
	var res result
	c := New(r, Options{Report: func(p Problem) { res.problems = append(res.problems, p) }})
	if _, err := c.ListSnapshots(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.LoadIndex(ctx); err != nil {
		if !errors.Is(err, ErrIndexDamaged) {
			t.Fatal(err)
		}
		res.indexErr = err
		res.stats = c.Stats()
		return res
	}
	if err := c.CheckPacks(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckStructure(ctx); err != nil {
		t.Fatal(err)
	}
	if readData {
		if err := c.ReadPacks(ctx, c.SelectPacks(Subset{Kind: SubsetAll}, nil)); err != nil {
			t.Fatal(err)
		}
	}
	res.stats = c.Stats()
	return res
}

func load(t *testing.T, be backend.Backend, h backend.Handle) []byte {
	t.Helper()
	buf, err := backend.LoadAll(context.Background(), be, h)
	if err != nil {
		t.Fatal(err)
	}
	return buf
}

// replace overwrites h with buf.
func replace(t *testing.T, be backend.Backend, h backend.Handle, buf []byte) {
	t.Helper()
	ctx := context.Background()
	if err := be.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, h, backend.NewByteReader(buf)); err != nil {
		t.Fatal(err)
	}
}

func packHandle(id core.ID) backend.Handle {
	return backend.Handle{Type: core.PackFile, Name: id.String()}
}

func TestCleanRepository(t *testing.T) {
	for _, v := range []uint{1, 2} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			f := newFixture(t, v)
			res := runCheck(t, f.open(t), true)
			if len(res.problems) != 0 {
				t.Fatalf("clean repository has problems:\n%s", res)
			}
			st := res.stats
			if st.Snapshots != 1 || st.Trees != 2 || st.Packs < 2 || st.PacksRead != st.Packs || st.IndexFiles == 0 || st.BytesRead == 0 {
				t.Fatalf("stats: %+v", st)
			}
		})
	}
}

func TestFlippedBitNeedsReadData(t *testing.T) {
	for _, where := range []string{"blob", "header"} {
		t.Run(where, func(t *testing.T) {
			f := newFixture(t, 2)
			h := packHandle(f.dataPack)
			buf := load(t, f.be, h)
			pos := 100
			if where == "header" {
				pos = len(buf) - 10
			}
			buf[pos] ^= 0x08
			replace(t, f.be, h, buf)

			if res := runCheck(t, f.open(t), false); len(res.problems) != 0 {
				t.Fatalf("without --read-data a flipped bit must go unnoticed (sizes match):\n%s", res)
			}
			res := runCheck(t, f.open(t), true)
			p, ok := res.find(KindPackDamaged)
			if !ok || p.Pack != f.dataPack || !strings.Contains(p.Message, "hashes to") && !strings.Contains(p.Message, f.dataPack.String()) {
				t.Fatalf("damaged pack not reported:\n%s", res)
			}
			if !strings.Contains(res.String(), "not to its name") {
				t.Fatalf("pack hash mismatch not reported:\n%s", res)
			}
			if where == "header" && !strings.Contains(res.String(), "header cannot be decrypted") {
				t.Fatalf("header damage not named:\n%s", res)
			}
			if where == "blob" && !strings.Contains(res.String(), "invalid data") {
				t.Fatalf("blob damage not named:\n%s", res)
			}
			if len(res.stats.DamagedPack) != 1 || res.stats.DamagedPack[0] != f.dataPack {
				t.Fatalf("damaged packs: %v", res.stats.DamagedPack)
			}
		})
	}
}

// corruptOnce flips a bit in the first full read of one pack.
type corruptOnce struct {
	backend.Backend
	victim string

	mu    sync.Mutex // guards loads
	loads int        // full reads of victim so far
}

func (b *corruptOnce) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if h.Type != core.PackFile || h.Name != b.victim || length != 0 {
		return b.Backend.Load(ctx, h, length, offset, fn)
	}
	b.mu.Lock()
	b.loads++
	first := b.loads == 1
	b.mu.Unlock()
	if !first {
		return b.Backend.Load(ctx, h, length, offset, fn)
	}
	return b.Backend.Load(ctx, h, length, offset, func(rd io.Reader) error {
		buf, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		buf[len(buf)/3] ^= 0x40
		return fn(bytes.NewReader(buf))
	})
}

func TestReadRetriedOnce(t *testing.T) {
	f := newFixture(t, 2)
	fb := &corruptOnce{Backend: f.be, victim: f.dataPack.String()}
	r2, err := repo.Open(context.Background(), fb, testPassword, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	res := runCheck(t, r2, true)
	if len(res.errors()) != 0 {
		t.Fatalf("a pack that reads fine the second time is reported as an error:\n%s", res)
	}
	if p, ok := res.find(KindPackReadTransient); !ok || p.Pack != f.dataPack {
		t.Fatalf("retry not reported as a hint:\n%s", res)
	}
	if fb.loads != 2 {
		t.Fatalf("pack read %d times, want 2", fb.loads)
	}
}

func TestDeletedPack(t *testing.T) {
	f := newFixture(t, 2)
	if err := f.be.Remove(context.Background(), packHandle(f.dataPack)); err != nil {
		t.Fatal(err)
	}
	res := runCheck(t, f.open(t), true)
	p, ok := res.find(KindMissingPack)
	if !ok || p.Pack != f.dataPack || !strings.Contains(p.Message, "does not exist") {
		t.Fatalf("missing pack not reported:\n%s", res)
	}
}

func TestTruncatedPack(t *testing.T) {
	f := newFixture(t, 2)
	h := packHandle(f.dataPack)
	buf := load(t, f.be, h)
	replace(t, f.be, h, buf[:len(buf)-50])
	res := runCheck(t, f.open(t), true)
	p, ok := res.find(KindTruncatedPack)
	if !ok || p.Pack != f.dataPack || !strings.Contains(p.Message, "truncated") {
		t.Fatalf("truncated pack not reported:\n%s", res)
	}
	if p, ok := res.find(KindPackDamaged); !ok || p.Pack != f.dataPack {
		t.Fatalf("reading the truncated pack found nothing:\n%s", res)
	}
}

func TestDamagedIndex(t *testing.T) {
	for _, how := range []string{"truncated", "bitflip"} {
		t.Run(how, func(t *testing.T) {
			f := newFixture(t, 2)
			r := f.open(t)
			ids, err := r.ListIDs(context.Background(), core.IndexFile)
			if err != nil || len(ids) == 0 {
				t.Fatal(ids, err)
			}
			h := backend.Handle{Type: core.IndexFile, Name: ids[0].String()}
			buf := load(t, f.be, h)
			if how == "truncated" {
				buf = buf[:len(buf)/2]
			} else {
				buf[len(buf)/2] ^= 1
			}
			replace(t, f.be, h, buf)
			res := runCheck(t, f.open(t), false)
			if !errors.Is(res.indexErr, ErrIndexDamaged) {
				t.Fatalf("LoadIndex: %v", res.indexErr)
			}
			p, ok := res.find(KindIndexDamaged)
			if !ok || p.Index != ids[0] || !strings.Contains(p.Message, ids[0].String()) {
				t.Fatalf("damaged index not named:\n%s", res)
			}
		})
	}
}

func TestSnapshotMissingTree(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	r := f.open(t)
	bogus := core.Hash([]byte("no such tree"))
	sid := saveSnapshot(t, ctx, r, bogus)
	res := runCheck(t, f.open(t), false)
	p, ok := res.find(KindTreeMissing)
	if !ok || p.Snapshot != sid || p.Tree != bogus || !strings.Contains(p.Message, sid.Str()) || !strings.Contains(p.Message, "not found in index") {
		t.Fatalf("missing tree not reported:\n%s", res)
	}
	if len(res.errors()) != 1 {
		t.Fatalf("want exactly one error:\n%s", res)
	}
}

func TestDamagedSnapshot(t *testing.T) {
	f := newFixture(t, 2)
	h := backend.Handle{Type: core.SnapshotFile, Name: f.snap.String()}
	buf := load(t, f.be, h)
	buf[len(buf)-1] ^= 1
	replace(t, f.be, h, buf)
	res := runCheck(t, f.open(t), false)
	if p, ok := res.find(KindSnapshotDamaged); !ok || p.Snapshot != f.snap {
		t.Fatalf("damaged snapshot not reported:\n%s", res)
	}
}

func TestTreeWithUnindexedBlob(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	r := f.open(t)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	missing := core.Hash([]byte("never stored"))
	mt := time.Unix(1600000000, 0)
	sub := saveTree(t, ctx, r, []*tree.Node{
		{Name: "broken", Type: tree.NodeFile, ModTime: mt, Content: core.IDs{f.data[0], missing}},
	})
	root := saveTree(t, ctx, r, []*tree.Node{
		{Name: "top", Type: tree.NodeDir, ModTime: mt, Subtree: &sub},
	})
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sid := saveSnapshot(t, ctx, r, root)
	res := runCheck(t, f.open(t), true)
	p, ok := res.find(KindBlobMissing)
	if !ok || p.Blob != missing || p.Snapshot != sid || p.Tree != sub || p.Path != "/top/broken" ||
		!strings.Contains(p.Message, "/top/broken") || !strings.Contains(p.Message, "not found in index") {
		t.Fatalf("unindexed blob not reported:\n%s", res)
	}
	if len(res.errors()) != 1 {
		t.Fatalf("want exactly one error:\n%s", res)
	}
}

func TestInvalidNodes(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	r := f.open(t)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	raw := `{"nodes":[` +
		`{"name":"a","type":"dir","mtime":"2020-01-01T00:00:00Z","atime":"2020-01-01T00:00:00Z","ctime":"2020-01-01T00:00:00Z","uid":0,"gid":0,"content":null},` +
		`{"name":"b","type":"file","mtime":"2020-01-01T00:00:00Z","atime":"2020-01-01T00:00:00Z","ctime":"2020-01-01T00:00:00Z","uid":0,"gid":0,"content":null},` +
		`{"name":"c","type":"whatever","mtime":"2020-01-01T00:00:00Z","atime":"2020-01-01T00:00:00Z","ctime":"2020-01-01T00:00:00Z","uid":0,"gid":0,"content":null},` +
		`{"name":"d","type":"file","mtime":"2020-01-01T00:00:00Z","atime":"2020-01-01T00:00:00Z","ctime":"2020-01-01T00:00:00Z","uid":0,"gid":0,"content":["` + core.ID{}.String() + `"]}` +
		"]}\n"
	root := saveRawTree(t, ctx, r, []byte(raw))
	// a tree blob that is not a tree
	junk := saveRawTree(t, ctx, r, []byte("this is not JSON"))
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	saveSnapshot(t, ctx, r, root)
	jsid := saveSnapshot(t, ctx, r, junk)
	res := runCheck(t, f.open(t), false)
	want := map[string]bool{`dir "a" has no subtree`: false, `file "b" has no content list`: false,
		`invalid type "whatever"`: false, `content blob 0 has a null ID`: false}
	for _, p := range res.errors() {
		for w := range want {
			if strings.Contains(p.Message, w) && p.Kind == KindNodeInvalid && p.Tree == root {
				want[w] = true
			}
		}
	}
	for w, found := range want {
		if !found {
			t.Errorf("%q not reported", w)
		}
	}
	if p, ok := res.find(KindTreeDamaged); !ok || p.Tree != junk || p.Snapshot != jsid {
		t.Errorf("undecodable tree not reported")
	}
	if t.Failed() {
		t.Log(res)
	}
}

func TestOrphanedPackIsHint(t *testing.T) {
	f := newFixture(t, 2)
	// a valid pack in no index
	r := f.open(t)
	w := pack.NewWriter(r.Key(), nil)
	plain := []byte("orphan")
	if err := w.Add(core.BlobHandle{ID: core.Hash(plain), Type: core.DataBlob}, r.Key().Seal(nil, plain), 0); err != nil {
		t.Fatal(err)
	}
	buf, id, err := w.Finalize()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.be.Save(context.Background(), packHandle(id), backend.NewByteReader(buf)); err != nil {
		t.Fatal(err)
	}
	res := runCheck(t, f.open(t), true)
	if len(res.errors()) != 0 {
		t.Fatalf("orphaned pack counted as error:\n%s", res)
	}
	p, ok := res.find(KindOrphanedPack)
	if !ok || p.Severity != SeverityHint || p.Pack != id || !strings.Contains(p.Message, "prune") {
		t.Fatalf("orphaned pack not hinted:\n%s", res)
	}
}

func TestIndexPackListings(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	r := f.open(t)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	contents := r.Index().PackContents()
	dataBlobs := contents[f.dataPack]

	// the same pack again in a second index file: a hint
	if _, err := r.SaveIndexFile(ctx, &index.File{Packs: []index.PackEntry{{ID: f.dataPack, Blobs: dataBlobs}}}); err != nil {
		t.Fatal(err)
	}
	res := runCheck(t, f.open(t), true)
	if len(res.errors()) != 0 {
		t.Fatalf("duplicate pack entry is an error:\n%s", res)
	}
	if p, ok := res.find(KindDuplicatePack); !ok || p.Pack != f.dataPack {
		t.Fatalf("duplicate pack entry not hinted:\n%s", res)
	}

	// a third listing with a blob missing: the listings split the pack's
	// blobs, nothing is lost (the index merges them): a hint
	if len(dataBlobs) < 2 {
		t.Fatalf("fixture data pack has %d blobs, need 2", len(dataBlobs))
	}
	if _, err := r.SaveIndexFile(ctx, &index.File{Packs: []index.PackEntry{{ID: f.dataPack, Blobs: dataBlobs[1:]}}}); err != nil {
		t.Fatal(err)
	}
	res = runCheck(t, f.open(t), true)
	if p, ok := res.find(KindIncompletePack); !ok || p.Pack != f.dataPack || p.IsError() {
		t.Fatalf("split pack entry not hinted:\n%s", res)
	}
	if len(res.errors()) != 0 {
		t.Fatalf("split pack entry is an error:\n%s", res)
	}

	// a fourth listing placing a blob at another offset: conflicting
	// entries, an error
	moved := append([]pack.Blob(nil), dataBlobs[:1]...)
	moved[0].Offset += 7
	if _, err := r.SaveIndexFile(ctx, &index.File{Packs: []index.PackEntry{{ID: f.dataPack, Blobs: moved}}}); err != nil {
		t.Fatal(err)
	}
	res = runCheck(t, f.open(t), false)
	conflict := false
	for _, p := range res.errors() {
		conflict = conflict || (p.Kind == KindIncompletePack && p.Pack == f.dataPack && strings.Contains(p.Message, "conflicting"))
	}
	if !conflict {
		t.Fatalf("conflicting pack entry not reported as an error:\n%s", res)
	}
}

func TestMixedPackIsHint(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	r := f.open(t)
	// a pack holding a data and a tree blob, indexed
	w := pack.NewWriter(r.Key(), nil)
	d := []byte("data blob")
	tr := []byte("{\"nodes\":[]}\n")
	if err := w.Add(core.BlobHandle{ID: core.Hash(d), Type: core.DataBlob}, r.Key().Seal(nil, d), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(core.BlobHandle{ID: core.Hash(tr), Type: core.TreeBlob}, r.Key().Seal(nil, tr), 0); err != nil {
		t.Fatal(err)
	}
	blobs := append([]pack.Blob(nil), w.Blobs()...)
	buf, id, err := w.Finalize()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.be.Save(ctx, packHandle(id), backend.NewByteReader(buf)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SaveIndexFile(ctx, &index.File{Packs: []index.PackEntry{{ID: id, Blobs: blobs}}}); err != nil {
		t.Fatal(err)
	}
	res := runCheck(t, f.open(t), true)
	if len(res.errors()) != 0 {
		t.Fatalf("mixed pack is an error:\n%s", res)
	}
	if p, ok := res.find(KindMixedPack); !ok || p.Pack != id {
		t.Fatalf("mixed pack not hinted:\n%s", res)
	}
}

func TestHeaderMismatchesIndex(t *testing.T) {
	// the index claims a different length split for the blobs of a pack:
	// sizes still add up, so only --read-data sees it
	ctx := context.Background()
	f := newFixture(t, 1)
	r := f.open(t)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	contents := r.Index().PackContents()
	// three data blobs in two packers: one pack holds at least two
	var victim core.ID
	for id, bl := range contents {
		if len(bl) >= 2 && bl[0].Type == core.DataBlob {
			victim = id
		}
	}
	if victim.IsNull() {
		t.Fatal("no pack with two blobs")
	}
	blobs := append([]pack.Blob(nil), contents[victim]...)
	blobs[0].Length += 10
	blobs[1].Offset += 10
	blobs[1].Length -= 10
	// rewrite the index so that only the bad listing of victim remains
	ids, _ := r.ListIDs(ctx, core.IndexFile)
	for _, id := range ids {
		if err := f.be.Remove(ctx, backend.Handle{Type: core.IndexFile, Name: id.String()}); err != nil {
			t.Fatal(err)
		}
	}
	var nf index.File
	for id, bl := range contents {
		if id == victim {
			bl = blobs
		}
		nf.Packs = append(nf.Packs, index.PackEntry{ID: id, Blobs: bl})
	}
	if _, err := r.SaveIndexFile(ctx, &nf); err != nil {
		t.Fatal(err)
	}
	if res := runCheck(t, f.open(t), false); len(res.errors()) != 0 {
		t.Fatalf("without --read-data:\n%s", res)
	}
	res := runCheck(t, f.open(t), true)
	if !strings.Contains(res.String(), "header entry 0") || !strings.Contains(res.String(), "differs from the index") {
		t.Fatalf("header/index mismatch not reported:\n%s", res)
	}
}

func TestParseSubset(t *testing.T) {
	good := map[string]Subset{
		"1/5":     {Kind: SubsetBucket, N: 1, T: 5},
		"256/256": {Kind: SubsetBucket, N: 256, T: 256},
		"10%":     {Kind: SubsetPercent, Percent: 10},
		"2.5%":    {Kind: SubsetPercent, Percent: 2.5},
		"100%":    {Kind: SubsetPercent, Percent: 100},
		"500":     {Kind: SubsetSize, Bytes: 500},
		"500M":    {Kind: SubsetSize, Bytes: 500 << 20},
		"2g":      {Kind: SubsetSize, Bytes: 2 << 30},
		"1T":      {Kind: SubsetSize, Bytes: 1 << 40},
		"4k":      {Kind: SubsetSize, Bytes: 4 << 10},
	}
	for s, want := range good {
		got, err := ParseSubset(s)
		if err != nil || got != want {
			t.Errorf("ParseSubset(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "0/5", "6/5", "1/0", "1/257", "a/b", "0%", "101%", "-1%", "x%", "abc", "0", "-5M", "1/2/3", "99999999999999T"} {
		if got, err := ParseSubset(s); err == nil {
			t.Errorf("ParseSubset(%q) = %+v, want an error", s, got)
		}
	}
}

func TestSelectPacks(t *testing.T) {
	c := &Checker{indexedPacks: map[core.ID][]pack.Blob{}, packSizes: map[core.ID]int64{}}
	for i := 0; i < 40; i++ {
		id := core.Hash([]byte{byte(i)})
		c.indexedPacks[id] = nil
		c.packSizes[id] = 100
	}
	all := c.SelectPacks(Subset{Kind: SubsetAll}, nil)
	if len(all) != 40 {
		t.Fatalf("all: %d", len(all))
	}
	// buckets partition the packs
	seen := core.NewIDSet()
	for n := uint(1); n <= 3; n++ {
		for _, id := range c.SelectPacks(Subset{Kind: SubsetBucket, N: n, T: 3}, nil) {
			if uint(id[0])%3 != n-1 || seen.Has(id) {
				t.Fatalf("pack %v in bucket %d", id, n)
			}
			seen.Insert(id)
		}
	}
	if len(seen) != 40 {
		t.Fatalf("buckets cover %d of 40 packs", len(seen))
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	if n := len(c.SelectPacks(Subset{Kind: SubsetPercent, Percent: 25}, rnd)); n != 10 {
		t.Fatalf("25%%: %d packs", n)
	}
	if n := len(c.SelectPacks(Subset{Kind: SubsetPercent, Percent: 0.1}, rnd)); n != 1 {
		t.Fatalf("0.1%%: %d packs, want at least one", n)
	}
	if n := len(c.SelectPacks(Subset{Kind: SubsetSize, Bytes: 750}, rnd)); n != 7 {
		t.Fatalf("750 bytes of 100-byte packs: %d packs", n)
	}
}

func FuzzParseSubset(f *testing.F) {
	for _, s := range []string{"1/5", "10%", "500M", "", "0/0", "2.5%", "1T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sub, err := ParseSubset(s)
		if err != nil {
			return
		}
		switch sub.Kind {
		case SubsetBucket:
			if sub.N < 1 || sub.N > sub.T || sub.T > 256 {
				t.Fatalf("%q: %+v", s, sub)
			}
		case SubsetPercent:
			if !(sub.Percent > 0 && sub.Percent <= 100) {
				t.Fatalf("%q: %+v", s, sub)
			}
		case SubsetSize:
			if sub.Bytes <= 0 {
				t.Fatalf("%q: %+v", s, sub)
			}
		default:
			t.Fatalf("%q: kind %v", s, sub.Kind)
		}
	})
}

// FuzzCheckHeader feeds arbitrary pack tails to the header comparison,
// which must never panic and must accept the genuine tail.
func FuzzCheckHeader(f *testing.F) {
	r, err := repo.Init(context.Background(), mem.New(), testPassword, 2, testParams, repo.Options{})
	if err != nil {
		f.Fatal(err)
	}
	key := r.Key()
	w := pack.NewWriter(key, nil)
	plain := []byte("hello")
	if err := w.Add(core.BlobHandle{ID: core.Hash(plain), Type: core.DataBlob}, key.Seal(nil, plain), 0); err != nil {
		f.Fatal(err)
	}
	blobs := append([]pack.Blob(nil), w.Blobs()...)
	buf, _, err := w.Finalize()
	if err != nil {
		f.Fatal(err)
	}
	tail := buf[blobs[0].Length:]
	c := New(r, Options{})
	if probs := c.checkHeader(tail, 0, blobs); len(probs) != 0 {
		f.Fatalf("genuine header: %v", probs)
	}
	f.Add(tail)
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3, 4, 5})
	f.Add(append(bytes.Repeat([]byte{0}, 40), 36, 0, 0, 0))
	f.Fuzz(func(t *testing.T, rest []byte) {
		probs := c.checkHeader(rest, 0, blobs)
		if bytes.Equal(rest, tail) && len(probs) != 0 {
			t.Fatalf("genuine header rejected: %v", probs)
		}
	})
}

func TestMissingPackNotRead(t *testing.T) {
	f := newFixture(t, 2)
	if err := f.be.Remove(context.Background(), packHandle(f.dataPack)); err != nil {
		t.Fatal(err)
	}
	res := runCheck(t, f.open(t), true)
	if len(res.stats.DamagedPack) != 0 {
		t.Fatalf("a missing pack is also listed as damaged: %v\n%s", res.stats.DamagedPack, res)
	}
	if _, ok := res.find(KindPackDamaged); ok {
		t.Fatalf("a missing pack is read:\n%s", res)
	}
}
