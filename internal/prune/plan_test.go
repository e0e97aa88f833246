package prune

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

// planCase builds packs by hand: blob IDs are derived from a name, pack
// IDs from a counter.
type planCase struct {
	contents map[core.ID][]pack.Blob
	listed   map[core.ID]int64
	used     core.BlobSet
	n        uint64
}

func newPlanCase() *planCase {
	return &planCase{contents: map[core.ID][]pack.Blob{}, listed: map[core.ID]int64{}, used: core.NewBlobSet()}
}

func bh(tp core.BlobType, name string) core.BlobHandle {
	return core.BlobHandle{ID: core.Hash([]byte(name)), Type: tp}
}

type pb struct {
	h          core.BlobHandle
	length     uint32
	compressed bool
}

func data(name string, length uint32) pb { return pb{bh(core.DataBlob, name), length, true} }
func trees(name string, length uint32) pb {
	return pb{bh(core.TreeBlob, name), length, true}
}

// pack adds an indexed pack that is present in the backend.
func (c *planCase) pack(blobs ...pb) core.ID {
	c.n++
	id := core.Hash([]byte{byte(c.n), byte(c.n >> 8), 'p'})
	var off uint32
	var bl []pack.Blob
	for _, b := range blobs {
		pbl := pack.Blob{BlobHandle: b.h, Offset: off, Length: b.length}
		if b.compressed {
			pbl.UncompressedLength = 2 * b.length
		}
		off += b.length
		bl = append(bl, pbl)
	}
	c.contents[id] = bl
	c.listed[id] = pack.PackSize(bl)
	return id
}

func (c *planCase) use(hs ...core.BlobHandle) {
	for _, h := range hs {
		c.used.Insert(h)
	}
}

func (c *planCase) plan(t *testing.T, v2 bool, opts Options) *Plan {
	t.Helper()
	p, err := makePlan(c.contents, c.listed, c.used, v2, opts)
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, c, p)
	return p
}

// checkPlan asserts the safety of a plan: every pack is classified once;
// every used blob keeps exactly one copy that survives (in a kept pack,
// or copied once out of a repacked pack); only used blobs are copied.
func checkPlan(t *testing.T, c *planCase, p *Plan) {
	t.Helper()
	for id := range c.contents {
		n := 0
		for _, s := range []core.IDSet{p.Keep, p.Repack, p.Remove, p.Missing} {
			if s.Has(id) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("pack %v is in %d of keep/repack/remove/missing", id.Str(), n)
		}
	}
	for id := range p.Orphans {
		if _, ok := c.contents[id]; ok {
			t.Errorf("indexed pack %v classified as orphan", id.Str())
		}
	}
	for id := range c.listed {
		if _, ok := c.contents[id]; !ok && !p.Orphans.Has(id) {
			t.Errorf("orphan %v not found", id.Str())
		}
	}
	copies := map[core.BlobHandle]int{}
	for id := range p.Repack {
		for _, b := range p.keepBlobs[id] {
			if !c.used.Has(b.BlobHandle) {
				t.Errorf("repack of %v copies unused blob %v", id.Str(), b.BlobHandle)
			}
			if !holdsHandle(c.contents[id], b.BlobHandle) {
				t.Errorf("repack of %v copies blob %v it does not hold", id.Str(), b.BlobHandle)
			}
			copies[b.BlobHandle]++
		}
	}
	for h := range c.used {
		kept := false
		for id := range p.Keep {
			kept = kept || holdsHandle(c.contents[id], h)
		}
		if copies[h] > 1 {
			t.Errorf("used blob %v copied %d times", h, copies[h])
		}
		if !kept && copies[h] != 1 {
			t.Errorf("used blob %v survives in no kept pack and is copied %d times", h, copies[h])
		}
	}
}

func TestPlanClassifies(t *testing.T) {
	c := newPlanCase()
	big := uint32(5 << 20) // above the 4 MiB*4/5 target
	full := c.pack(data("f1", big), data("f2", 1000))
	unused := c.pack(data("u1", 1000), data("u2", 1000))
	partly := c.pack(data("p1", big), data("p2", 1000))
	tpack := c.pack(trees("t1", 500), trees("t2", 500))
	c.use(bh(core.DataBlob, "f1"), bh(core.DataBlob, "f2"), bh(core.DataBlob, "p1"), bh(core.TreeBlob, "t1"))

	p := c.plan(t, true, Options{MaxUnused: "0%", MaxRepackSize: -1})
	if !p.Keep.Has(full) || !p.Remove.Has(unused) || !p.Repack.Has(partly) || !p.Repack.Has(tpack) {
		t.Errorf("0%%: keep %v remove %v repack %v", setStr(p.Keep), setStr(p.Remove), setStr(p.Repack))
	}
	if kb := p.keepBlobs[partly]; len(kb) != 1 || kb[0].BlobHandle != bh(core.DataBlob, "p1") {
		t.Errorf("repack of the partly used pack copies %v", kb)
	}
	if p.RemoveBytes != c.listed[unused] {
		t.Errorf("RemoveBytes %d, want %d", p.RemoveBytes, c.listed[unused])
	}

	// unlimited unused space: the big partly used data pack stays, the
	// tree pack is repacked anyway
	p = c.plan(t, true, Options{MaxUnused: "unlimited", MaxRepackSize: -1})
	if !p.Keep.Has(partly) || !p.Repack.Has(tpack) || !p.Remove.Has(unused) {
		t.Errorf("unlimited: keep %v remove %v repack %v", setStr(p.Keep), setStr(p.Remove), setStr(p.Repack))
	}
	// cacheable only: data packs are never repacked
	p = c.plan(t, true, Options{MaxUnused: "0%", MaxRepackSize: -1, RepackCacheableOnly: true})
	if !p.Keep.Has(partly) || !p.Repack.Has(tpack) {
		t.Errorf("cacheable only: keep %v repack %v", setStr(p.Keep), setStr(p.Repack))
	}
	// repack size limit: nothing that would exceed it is repacked
	p = c.plan(t, true, Options{MaxUnused: "0%", MaxRepackSize: 100})
	if len(p.Repack) != 0 || p.RepackBytes != 0 {
		t.Errorf("max repack size: repack %v (%d bytes)", setStr(p.Repack), p.RepackBytes)
	}
	if !p.Remove.Has(unused) {
		t.Error("max repack size stopped a removal")
	}
}

func TestPlanMissingAndOrphans(t *testing.T) {
	c := newPlanCase()
	kept := c.pack(data("a", 1000))
	gone := c.pack(data("g", 1000))
	delete(c.listed, gone) // in the index, not in data/, unused
	orphan := core.Hash([]byte("orphan"))
	c.listed[orphan] = 1234
	c.use(bh(core.DataBlob, "a"))
	p := c.plan(t, true, Options{})
	if !p.Missing.Has(gone) || p.Remove.Has(gone) || !p.Orphans.Has(orphan) || !p.Keep.Has(kept) {
		t.Errorf("missing %v orphans %v keep %v remove %v", setStr(p.Missing), setStr(p.Orphans), setStr(p.Keep), setStr(p.Remove))
	}

	// a used blob only in the missing pack: refuse
	c.use(bh(core.DataBlob, "g"))
	var md *ErrMissingData
	if _, err := makePlan(c.contents, c.listed, c.used, true, Options{}); !errors.As(err, &md) || len(md.Blobs) != 1 || md.Blobs[0] != bh(core.DataBlob, "g") {
		t.Errorf("used blob in a missing pack: %v", err)
	}
	// a used blob in no pack at all: refuse
	c.used = core.NewBlobSet(bh(core.DataBlob, "a"), bh(core.TreeBlob, "nowhere"))
	if _, err := makePlan(c.contents, c.listed, c.used, true, Options{}); !errors.As(err, &md) {
		t.Errorf("used blob in no pack: %v", err)
	}
	// the same blob ID as another type does not count
	c.used = core.NewBlobSet(bh(core.TreeBlob, "a"))
	if _, err := makePlan(c.contents, c.listed, c.used, true, Options{}); !errors.As(err, &md) {
		t.Errorf("tree blob with a data blob's ID: %v", err)
	}
}

func TestPlanSizeMismatch(t *testing.T) {
	c := newPlanCase()
	a := c.pack(data("a", 1000))
	u := c.pack(data("u", 1000))
	c.use(bh(core.DataBlob, "a"))
	c.listed[a]--
	if _, err := makePlan(c.contents, c.listed, c.used, true, Options{}); err == nil {
		t.Error("a used pack whose size differs from the index was accepted")
	}
	c.listed[a]++
	c.listed[u]++ // unused: removed anyway
	p := c.plan(t, true, Options{})
	if !p.Remove.Has(u) {
		t.Error("unused pack with a wrong size not removed")
	}
}

// TestPlanDuplicates pins H16 in the plan: a used blob in several packs
// is kept in exactly one (the pack with more used bytes), counted unused
// in the others, and never lost when those are removed or repacked.
func TestPlanDuplicates(t *testing.T) {
	c := newPlanCase()
	p1 := c.pack(data("d", 1000), data("x", 3000))
	p2 := c.pack(data("d", 1000), data("y", 50))
	p3 := c.pack(data("d", 1000))
	c.use(bh(core.DataBlob, "d"), bh(core.DataBlob, "x"))
	p := c.plan(t, true, Options{MaxUnused: "0%", MaxRepackSize: -1})
	if !p.Keep.Has(p1) || !p.Remove.Has(p2) || !p.Remove.Has(p3) {
		t.Errorf("keep %v remove %v repack %v", setStr(p.Keep), setStr(p.Remove), setStr(p.Repack))
	}
	// both copies in packs with unused blobs: one copy is made
	c = newPlanCase()
	c.pack(data("d", 1000), data("x", 3000))
	c.pack(data("d", 1000), data("y", 3000))
	c.use(bh(core.DataBlob, "d"))
	p = c.plan(t, true, Options{MaxUnused: "0%", MaxRepackSize: -1})
	if len(p.Repack)+len(p.Remove) != 2 {
		t.Errorf("repack %v remove %v", setStr(p.Repack), setStr(p.Remove))
	}
}

func TestPlanSmallAndUncompressed(t *testing.T) {
	small := func(n int) *planCase {
		c := newPlanCase()
		for i := 0; i < n; i++ {
			name := string(rune('a' + i))
			c.pack(data(name, 1000))
			c.use(bh(core.DataBlob, name))
		}
		return c
	}
	c := small(3)
	if p := c.plan(t, true, Options{MaxRepackSize: -1}); len(p.Keep) != 3 {
		t.Errorf("3 small packs: keep %d, want 3", len(p.Keep))
	}
	if p := c.plan(t, true, Options{MaxRepackSize: -1, RepackSmall: true}); len(p.Repack) != 3 {
		t.Errorf("3 small packs with RepackSmall: repack %d, want 3", len(p.Repack))
	}
	c = small(10)
	if p := c.plan(t, true, Options{MaxRepackSize: -1}); len(p.Repack) != 10 {
		t.Errorf("10 small packs: repack %d, want 10", len(p.Repack))
	}

	// an uncompressed tree pack is recompressed in v2, not in v1
	c = newPlanCase()
	tp := c.pack(pb{bh(core.TreeBlob, "t"), 1000, false})
	c.use(bh(core.TreeBlob, "t"))
	if p := c.plan(t, true, Options{MaxRepackSize: -1}); !p.Repack.Has(tp) {
		t.Error("v2: uncompressed tree pack not repacked")
	}
	if p := c.plan(t, false, Options{MaxRepackSize: -1}); !p.Keep.Has(tp) {
		t.Error("v1: uncompressed tree pack not kept")
	}
	// uncompressed data only with RepackUncompressed
	c = newPlanCase()
	dp := c.pack(pb{bh(core.DataBlob, "d"), 5 << 20, false})
	c.use(bh(core.DataBlob, "d"))
	if p := c.plan(t, true, Options{MaxRepackSize: -1}); !p.Keep.Has(dp) {
		t.Error("uncompressed data pack repacked without RepackUncompressed")
	}
	if p := c.plan(t, true, Options{MaxRepackSize: -1, RepackUncompressed: true}); !p.Repack.Has(dp) {
		t.Error("RepackUncompressed: uncompressed data pack not repacked")
	}
}

// TestPlanRandom checks the plan's safety on many random layouts with
// duplicates, mixed packs, missing packs and orphans.
func TestPlanRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	opts := []Options{
		{MaxRepackSize: -1},
		{MaxUnused: "0%", MaxRepackSize: -1},
		{MaxUnused: "unlimited", MaxRepackSize: -1},
		{MaxUnused: "0%", MaxRepackSize: 5000},
		{MaxUnused: "0%", MaxRepackSize: -1, RepackCacheableOnly: true},
		{MaxUnused: "10%", MaxRepackSize: -1, RepackSmall: true, RepackUncompressed: true},
	}
	for iter := 0; iter < 400; iter++ {
		c := newPlanCase()
		var pool []core.BlobHandle
		for i := 0; i < 12; i++ {
			tp := core.DataBlob
			if i%4 == 0 {
				tp = core.TreeBlob
			}
			pool = append(pool, bh(tp, string(rune('A'+i))))
		}
		npacks := 1 + rng.IntN(8)
		for i := 0; i < npacks; i++ {
			var blobs []pb
			seen := core.NewBlobSet()
			for j := 0; j < 1+rng.IntN(4); j++ {
				h := pool[rng.IntN(len(pool))]
				if seen.Has(h) {
					continue
				}
				seen.Insert(h)
				blobs = append(blobs, pb{h, uint32(100 + rng.IntN(3000)), rng.IntN(3) > 0})
			}
			id := c.pack(blobs...)
			if rng.IntN(8) == 0 {
				delete(c.listed, id)
			}
		}
		if rng.IntN(4) == 0 {
			c.listed[core.Hash([]byte{byte(iter), 'o'})] = 999
		}
		present := core.NewBlobSet()
		for id, bl := range c.contents {
			for _, b := range bl {
				if _, ok := c.listed[id]; ok {
					present.Insert(b.BlobHandle)
				}
			}
		}
		for _, h := range pool {
			if rng.IntN(2) == 0 {
				c.used.Insert(h)
			}
		}
		wantMissing := false
		for h := range c.used {
			if !present.Has(h) {
				wantMissing = true
			}
		}
		o := opts[iter%len(opts)]
		p, err := makePlan(c.contents, c.listed, c.used, iter%2 == 0, o)
		var md *ErrMissingData
		if wantMissing {
			if !errors.As(err, &md) {
				t.Fatalf("iter %d: used blob in no present pack: got %v", iter, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("iter %d: %v", iter, err)
		}
		checkPlan(t, c, p)
		if t.Failed() {
			t.Fatalf("iter %d failed with options %+v", iter, o)
		}
	}
}

func TestMaxUnusedAndParseSize(t *testing.T) {
	for _, c := range []struct {
		s    string
		used int64
		want int64
		ok   bool
	}{
		{"", 950, 50, true},
		{"5%", 950, 50, true},
		{"0%", 950, 0, true},
		{"50%", 100, 100, true},
		{"unlimited", 1, math.MaxInt64, true},
		{"10k", 0, 10 << 10, true},
		{"2M", 0, 2 << 20, true},
		{"99.9999999999%", 1 << 40, math.MaxInt64, true},
		{"100%", 1, 0, false},
		{"-1%", 1, 0, false},
		{"x%", 1, 0, false},
		{"abc", 1, 0, false},
	} {
		got, err := maxUnusedLimit(c.s, c.used)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("maxUnusedLimit(%q, %d) = %d, %v; want %d (ok %v)", c.s, c.used, got, err, c.want, c.ok)
		}
	}
	for _, c := range []struct {
		s    string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"123", 123, true}, {"1k", 1024, true}, {"1G", 1 << 30, true}, {"3t", 3 << 40, true},
		{"8388607t", 8388607 << 40, true}, {"8388608t", 0, false}, {"8700000t", 0, false},
		{"", 0, false}, {"k", 0, false}, {"-5", 0, false}, {"1.5m", 0, false},
	} {
		got, err := ParseSize(c.s)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("ParseSize(%q) = %d, %v; want %d (ok %v)", c.s, got, err, c.want, c.ok)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "10k", "5%", "unlimited", "-1", "9999999999999t", " 7 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseSize(s); err == nil && n < 0 {
			t.Errorf("ParseSize(%q) = %d < 0", s, n)
		}
		if n, err := maxUnusedLimit(s, 1<<30); err == nil && n < 0 {
			t.Errorf("maxUnusedLimit(%q) = %d < 0", s, n)
		}
	})
}
