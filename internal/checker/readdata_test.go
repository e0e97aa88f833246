package checker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/repo/pack"
	"github.com/cairn-backup/cairn/internal/sha256x"
)

// streamOp is one step of a packStream walk: hand out (skip=false) or
// skip n bytes.
type streamOp struct {
	n    int
	skip bool
}

// walkStream applies ops to a packStream over data (read through wrap),
// then reads the rest, and checks every byte handed out, the position and
// the hash against data.
func walkStream(t *testing.T, data []byte, wrap func(io.Reader) io.Reader, bufSize, maxTail int, ops []streamOp) {
	t.Helper()
	s := packStream{hash: sha256x.New(), bufSize: bufSize}
	for round := 0; round < 2; round++ { // the second round reuses the buffers
		s.reset(wrap(bytes.NewReader(data)))
		pos := 0
		for i, op := range ops {
			if op.skip {
				if err := s.skip(int64(op.n)); err != nil {
					t.Fatalf("op %d: skip %d at %d: %v", i, op.n, pos, err)
				}
			} else {
				b, err := s.next(op.n)
				if err != nil {
					t.Fatalf("op %d: next %d at %d: %v", i, op.n, pos, err)
				}
				if !bytes.Equal(b, data[pos:pos+op.n]) {
					t.Fatalf("op %d: next %d at %d: wrong bytes", i, op.n, pos)
				}
				s.hash.Write(b) // the caller's part of the contract
				if len(b) > 0 { // callers may then modify what they get
					b[0] ^= 0xff
					b[len(b)-1] ^= 0xff
				}
			}
			pos += op.n
			if s.pos != int64(pos) {
				t.Fatalf("op %d: pos %d, want %d", i, s.pos, pos)
			}
		}
		rest, dropped, err := s.rest(maxTail)
		if err != nil {
			t.Fatalf("rest at %d: %v", pos, err)
		}
		tail := data[pos:]
		if len(tail) > maxTail {
			tail = tail[len(tail)-maxTail:]
		}
		if !bytes.Equal(rest, tail) || dropped != int64(len(data)-pos-len(tail)) {
			t.Fatalf("rest at %d: got %d bytes (dropped %d), want %d (dropped %d)", pos, len(rest), dropped, len(tail), len(data)-pos-len(tail))
		}
		if s.pos != int64(len(data)) {
			t.Fatalf("pos after rest %d, want %d", s.pos, len(data))
		}
		if got := sha256.Sum256(data); s.hash.Sum() != got {
			t.Fatal("hash differs from the SHA-256 of the data")
		}
	}
}

func TestPackStream(t *testing.T) {
	data := randBytes(7, 2<<20+312345)
	wraps := map[string]func(io.Reader) io.Reader{
		"plain":   func(r io.Reader) io.Reader { return r },
		"onebyte": iotest.OneByteReader,
		"half":    iotest.HalfReader,
		"dataerr": iotest.DataErrReader,
	}
	walks := map[string][]streamOp{
		"empty":     nil,
		"small":     {{n: 10}, {n: 0}, {n: 4000}, {n: 1}, {skip: true, n: 77}, {n: 30000}},
		"large":     {{n: 100}, {n: 2<<20 + 5}, {n: 300000}},
		"long skip": {{n: 5}, {skip: true, n: 2<<20 + 300000}, {n: 20}},
		"all":       {{n: len(data)}},
	}
	for wn, wrap := range wraps {
		for name, ops := range walks {
			data := data
			if wn == "onebyte" {
				if name != "small" {
					continue // slow
				}
				data = data[:50000]
			}
			for _, bufSize := range []int{0, 2 << 20} {
				t.Run(fmt.Sprintf("%s/%s/%d", wn, name, bufSize), func(t *testing.T) {
					walkStream(t, data, wrap, bufSize, len(data), ops)
					walkStream(t, data, wrap, bufSize, 1000, ops)
				})
			}
		}
	}
}

func TestPackStreamShort(t *testing.T) {
	data := randBytes(1, 5000)
	s := packStream{hash: sha256x.New()}
	s.reset(bytes.NewReader(data))
	if _, err := s.next(4000); err != nil {
		t.Fatal(err)
	}
	if _, err := s.next(1001); !errors.Is(readErr(err, "read"), errShort) {
		t.Fatalf("reading past the end: %v", err)
	}
	s.reset(bytes.NewReader(data))
	if err := s.skip(5001); !errors.Is(readErr(err, "skip"), errShort) {
		t.Fatalf("skipping past the end: %v", err)
	}
	boom := errors.New("boom")
	s.reset(io.MultiReader(bytes.NewReader(data[:100]), iotest.ErrReader(boom)))
	if _, err := s.next(200); !errors.Is(err, boom) {
		t.Fatalf("read error: %v", err)
	}
	s.reset(io.MultiReader(bytes.NewReader(data[:100]), iotest.ErrReader(boom)))
	if _, _, err := s.rest(1000); !errors.Is(err, boom) {
		t.Fatalf("read error in rest: %v", err)
	}
}

// FuzzPackStream walks a packStream with arbitrary steps over arbitrary
// data delivered in arbitrary pieces.
func FuzzPackStream(f *testing.F) {
	f.Add([]byte("some pack data"), []byte{3, 0, 200, 5}, uint16(0), uint16(100))
	f.Add(bytes.Repeat([]byte{1, 2, 3}, 2000), []byte{255, 255, 7, 128, 1}, uint16(300), uint16(10))
	f.Fuzz(func(t *testing.T, data, steps []byte, bufSize, maxTail uint16) {
		var ops []streamOp
		pos := 0
		for _, st := range steps {
			n := int(st&0x7f) * 37
			if pos+n > len(data) {
				break
			}
			ops = append(ops, streamOp{n: n, skip: st&0x80 != 0})
			pos += n
		}
		walkStream(t, data, iotest.HalfReader, int(bufSize), int(maxTail), ops)
	})
}

// rewriteIndex replaces every index file of be by one listing contents.
func rewriteIndex(t *testing.T, r *repo.Repository, be backend.Backend, contents map[core.ID][]pack.Blob) {
	t.Helper()
	ctx := context.Background()
	ids, err := r.ListIDs(ctx, core.IndexFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if err := be.Remove(ctx, backend.Handle{Type: core.IndexFile, Name: id.String()}); err != nil {
			t.Fatal(err)
		}
	}
	var nf index.File
	for id, bl := range contents {
		nf.Packs = append(nf.Packs, index.PackEntry{ID: id, Blobs: bl})
	}
	if _, err := r.SaveIndexFile(ctx, &nf); err != nil {
		t.Fatal(err)
	}
}

func TestGapAndOverlap(t *testing.T) {
	for _, how := range []string{"gap", "overlap"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, 2)
			r := f.open(t)
			if err := r.LoadIndex(ctx); err != nil {
				t.Fatal(err)
			}
			contents := r.Index().PackContents()
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
			if how == "gap" {
				blobs[0].Length -= 10 // 10 bytes between blob 0 and 1
			} else {
				blobs[1].Offset -= 10 // blob 1 starts inside blob 0
			}
			contents[victim] = blobs
			rewriteIndex(t, r, f.be, contents)
			res := runCheck(t, f.open(t), true)
			want := "gap of 10 bytes before blob"
			if how == "overlap" {
				want = "overlaps the previous blob"
			}
			if !strings.Contains(res.String(), want) {
				t.Fatalf("%s not reported:\n%s", how, res)
			}
			if len(res.stats.DamagedPack) != 1 || res.stats.DamagedPack[0] != victim {
				t.Fatalf("damaged packs %v, want %v", res.stats.DamagedPack, victim)
			}
		})
	}
}

// TestUnindexedTail appends bytes to a pack: the tail is hashed and
// counted, and so is a tail longer than the part kept to find the header.
func TestUnindexedTail(t *testing.T) {
	for _, extra := range []int{100, maxHeaderTail + 5000} {
		t.Run(fmt.Sprint(extra), func(t *testing.T) {
			f := newFixture(t, 2)
			clean := runCheck(t, f.open(t), true).stats.BytesRead
			h := packHandle(f.dataPack)
			buf := load(t, f.be, h)
			replace(t, f.be, h, append(buf, make([]byte, extra)...))
			r := f.open(t)
			if err := r.LoadIndex(context.Background()); err != nil {
				t.Fatal(err)
			}
			end := 0
			for _, b := range r.Index().PackContents()[f.dataPack] {
				end = max(end, int(b.Offset+b.Length))
			}
			res := runCheck(t, r, true)
			if !strings.Contains(res.String(), "not to its name") {
				t.Fatalf("hash mismatch not reported:\n%s", res)
			}
			// the length field now reads 0
			want := fmt.Sprintf("header length 0 does not fit the %d bytes after the last blob", len(buf)+extra-end)
			if !strings.Contains(res.String(), want) {
				t.Fatalf("want %q:\n%s", want, res)
			}
			if res.stats.BytesRead != clean+int64(extra) {
				t.Fatalf("bytes read %d, want %d", res.stats.BytesRead, clean+int64(extra))
			}
		})
	}
}

// TestCheckHeaderDropped: bytes read but not kept before the tail count as
// unindexed bytes.
func TestCheckHeaderDropped(t *testing.T) {
	r, err := repo.Init(context.Background(), mem.New(), testPassword, 2, testParams, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key := r.Key()
	w := pack.NewWriter(key, nil)
	plain := []byte("hello")
	if err := w.Add(core.BlobHandle{ID: core.Hash(plain), Type: core.DataBlob}, key.Seal(nil, plain), 0); err != nil {
		t.Fatal(err)
	}
	blobs := append([]pack.Blob(nil), w.Blobs()...)
	buf, _, err := w.Finalize()
	if err != nil {
		t.Fatal(err)
	}
	tail := buf[blobs[0].Length:]
	c := New(r, Options{})
	probs := c.checkHeader(tail, 12345, blobs)
	if len(probs) != 1 || !strings.Contains(probs[0], "12345 unindexed bytes") {
		t.Fatalf("problems %q", probs)
	}
}

// TestCompressedBlobs reads packs of compressible blobs of several sizes
// (decompression buffers are shared across blobs and packs), then finds a
// damaged one.
func TestCompressedBlobs(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	r, err := repo.Init(ctx, be, testPassword, 2, testParams, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []core.ID
	for i, n := range []int{100, 3 << 20, 5000, 1 << 20, 70000} {
		line := []byte(fmt.Sprintf("line %d of compressible text\n", i))
		text := bytes.Repeat(line, n/len(line)+1)[:n]
		res, err := r.SaveBlob(ctx, core.DataBlob, text, core.ID{}, false)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r.Close()
	for _, parallel := range []int{1, 3} {
		r := (&fixture{be: be}).open(t)
		c := New(r, Options{ReadParallel: parallel})
		if err := c.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if l, _ := r.Index().Lookup(core.BlobHandle{ID: id, Type: core.DataBlob}); !l.IsCompressed() {
				t.Fatalf("blob %v stored uncompressed", id)
			}
		}
		if err := c.ReadPacks(ctx, c.SelectPacks(Subset{Kind: SubsetAll}, nil)); err != nil {
			t.Fatal(err)
		}
		if st := c.Stats(); st.Errors != 0 || st.PacksRead != len(c.indexedPacks) {
			t.Fatalf("parallel %d: %+v", parallel, st)
		}
	}
	// damage the largest blob
	r2 := (&fixture{be: be}).open(t)
	if err := r2.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	l, _ := r2.Index().Lookup(core.BlobHandle{ID: ids[1], Type: core.DataBlob})
	buf := load(t, be, packHandle(l.Pack))
	buf[l.Offset+l.Length/2] ^= 1
	replace(t, be, packHandle(l.Pack), buf)
	res := runCheck(t, r2, true)
	if len(res.stats.DamagedPack) != 1 || res.stats.DamagedPack[0] != l.Pack || !strings.Contains(res.String(), "data/"+ids[1].Str()) {
		t.Fatalf("damaged blob not found:\n%s", res)
	}
}

// TestStructureAndReadConcurrently runs the read phase alongside the
// structure check, as `cairn check --read-data` does, with a fault for each.
func TestStructureAndReadConcurrently(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	h := packHandle(f.dataPack)
	buf := load(t, f.be, h)
	buf[20] ^= 1
	replace(t, f.be, h, buf)
	r := f.open(t)
	// a snapshot whose tree is not in the index
	saveSnapshot(t, ctx, r, core.Hash([]byte("no such tree")))

	var res result
	c := New(r, Options{Report: func(p Problem) { res.problems = append(res.problems, p) }})
	if _, err := c.ListSnapshots(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckPacks(ctx); err != nil {
		t.Fatal(err)
	}
	readDone := make(chan error, 1)
	go func() { readDone <- c.ReadPacks(ctx, c.SelectPacks(Subset{Kind: SubsetAll}, nil)) }()
	if err := c.CheckStructure(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-readDone; err != nil {
		t.Fatal(err)
	}
	if _, ok := res.find(KindTreeMissing); !ok {
		t.Fatalf("missing tree not reported:\n%s", res)
	}
	if p, ok := res.find(KindPackDamaged); !ok || p.Pack != f.dataPack {
		t.Fatalf("damaged pack not reported:\n%s", res)
	}
	st := c.Stats()
	if st.PacksRead != st.Packs || st.Trees != 3 || len(st.DamagedPack) != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWorkingMemory(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	c := New(f.open(t), Options{Parallel: 3, ReadParallel: 2})
	if err := c.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	ids := c.SelectPacks(Subset{Kind: SubsetAll}, nil)
	var maxTree int64
	for _, bl := range c.indexedPacks {
		for _, b := range bl {
			if b.Type == core.TreeBlob {
				maxTree = max(maxTree, int64(b.Length), int64(b.UncompressedLength))
			}
		}
	}
	structure := 3 * 4 * maxTree
	if got := c.WorkingMemory(nil); got != structure {
		t.Fatalf("without reading: %d, want %d", got, structure)
	}
	// the fixture's blobs are small: per worker a minimal stream buffer,
	// two plaintext buffers (trees are compressed in v2) and a piece buffer
	bufSize, plainSize := c.bufferSizes(ids)
	if bufSize != minStreamBuffer || plainSize == 0 {
		t.Fatalf("buffer sizes %d, %d", bufSize, plainSize)
	}
	if got, want := c.WorkingMemory(ids), structure+2*(int64(bufSize)+2*int64(plainSize)+pieceSize); got != want {
		t.Fatalf("with reading: %d, want %d", got, want)
	}
}

// TestBlobContentMismatch: blobs that decrypt (and decompress) fine but
// whose plaintext does not hash to the ID the index gives them are reported
// by name — the first, two neighbours in the middle and the last blob of a
// pack, compressed (v2) and not (v1) — and their neighbours are not. Blob
// hashes run paired with the pack's hash and with each other, a blob's
// plaintext finished while the next blob is handled, so each position is a
// different path through readPack.
func TestBlobContentMismatch(t *testing.T) {
	ctx := context.Background()
	for _, version := range []uint{1, 2} {
		be := mem.New()
		// without the verification before upload a blob can be stored
		// under a wrong ID, which is what this test needs
		r, err := repo.Init(ctx, be, testPassword, version, testParams, repo.Options{NoExtraVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		var ids []core.ID
		bad := map[int]bool{0: true, 3: true, 4: true, 6: true}
		for i, n := range []int{5000, 200 << 10, 70, 1 << 20, 3000, 64, 90000} {
			line := []byte(fmt.Sprintf("line %d of compressible text\n", i))
			text := bytes.Repeat(line, n/len(line)+1)[:n]
			id := core.Hash(text)
			if bad[i] {
				id = core.Hash(append([]byte("not the content "), text...))
			}
			if _, err := r.SaveBlob(ctx, core.DataBlob, text, id, false); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		r.Close()
		r = (&fixture{be: be}).open(t)
		var probs []Problem
		c := New(r, Options{ReadParallel: 1, Report: func(p Problem) { probs = append(probs, p) }})
		if err := c.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		packs := c.SelectPacks(Subset{Kind: SubsetAll}, nil)
		if len(packs) != 1 {
			t.Fatalf("v%d: %d packs, want the blobs in one", version, len(packs))
		}
		if err := c.ReadPacks(ctx, packs); err != nil {
			t.Fatal(err)
		}
		var all strings.Builder
		for _, p := range probs {
			fmt.Fprintln(&all, p.Message)
		}
		for i, id := range ids {
			named := strings.Contains(all.String(), "blob data/"+id.Str()+": content does not match its ID")
			if named != bad[i] {
				t.Errorf("v%d: blob %d (damaged %v) named %v:\n%s", version, i, bad[i], named, all.String())
			}
		}
		if st := c.Stats(); len(st.DamagedPack) != 1 || strings.Contains(all.String(), "hashes to") {
			t.Errorf("v%d: stats %+v, problems:\n%s", version, st, all.String())
		}
	}
}
