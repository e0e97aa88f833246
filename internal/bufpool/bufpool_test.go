package bufpool

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"testing"
	"unsafe"
)

func TestGetPut(t *testing.T) {
	for _, n := range []int{0, 1, 4096, 4097, 1 << 20, 5<<20 + 3, 1 << 25, 1<<25 + 1} {
		b := Get(n)
		if len(b) != n {
			t.Fatalf("Get(%d) has length %d", n, len(b))
		}
		if n <= 1<<25 && cap(b)&(cap(b)-1) != 0 {
			t.Fatalf("Get(%d) capacity %d is not a power of two", n, cap(b))
		}
		Put(b)
		c := Get(n)
		if len(c) != n {
			t.Fatal("reused buffer has the wrong length")
		}
	}
	Put(make([]byte, 100, 100)) // odd capacity: ignored
}

func BenchmarkGetPut(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Put(Get(1 << 20))
	}
}

// BenchmarkArenaGetPut: a chunk's buffer life (get, trim to the chunk,
// put) with a dozen other buffers out, as in a backup.
func BenchmarkArenaGetPut(b *testing.B) {
	SetArena(48 << 20)
	defer SetArena(0)
	var out [][]byte
	for i := 0; i < 12; i++ {
		out = append(out, Get((1+i%3)<<20))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Put(Trim(Get(2<<20), 1<<20+i%(1<<20)))
	}
	b.StopTimer()
	for _, x := range out {
		Put(x)
	}
}

// arenaCheck verifies the arena's books: free extents sorted, coalesced
// and disjoint from the extents in use, and every granule accounted for.
// Called with no buffer operation running.
func arenaCheck(t *testing.T) {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	n := len(arena) >> granShift
	owner := make([]int8, n) // 0 none, 1 free, 2 in use
	prevEnd := -1
	freeG := 0
	for _, e := range freeExt {
		s, k := int(e.start), int(e.n)
		if k <= 0 || s < 0 || s+k > n || s <= prevEnd {
			t.Fatalf("free extent %+v out of order, adjacent or empty (previous ends at %d)", e, prevEnd)
		}
		for g := s; g < s+k; g++ {
			owner[g] = 1
		}
		prevEnd = s + k
		freeG += k
	}
	used := 0
	for g, k := range allocN {
		if k == 0 {
			continue
		}
		for j := g; j < g+int(k); j++ {
			if owner[j] != 0 {
				t.Fatalf("granule %d is both in use and free, or in two extents", j)
			}
			owner[j] = 2
		}
		used += int(k)
	}
	if used != arenaUsed || used+freeG != n {
		t.Fatalf("%d granules in use, %d free, books say %d in use, arena has %d", used, freeG, arenaUsed, n)
	}
}

func withArena(t *testing.T, size int) {
	t.Helper()
	if !SetArena(size) {
		t.Fatal("SetArena refused")
	}
	t.Cleanup(func() {
		if !SetArena(0) {
			t.Error("arena still in use at the end of the test")
		}
	})
}

func inArena(b []byte) bool {
	mu.Lock()
	defer mu.Unlock()
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return cap(b) > 0 && p >= arenaBase && p < arenaBase+uintptr(len(arena))
}

// TestArenaBasics: requests are served by extents of whole granules that
// never overlap, freed extents coalesce, a full arena falls back to the
// size classes, and SetArena refuses while buffers are out.
func TestArenaBasics(t *testing.T) {
	withArena(t, 16*gran)
	a := Get(gran)         // 1 granule
	b := Get(3*gran - 100) // 3
	c := Get(5 * gran)     // 5
	for _, x := range [][]byte{a, b, c} {
		if !inArena(x) || cap(x)%gran != 0 {
			t.Fatalf("buffer of %d bytes (capacity %d) not from the arena", len(x), cap(x))
		}
		if uintptr(unsafe.Pointer(unsafe.SliceData(x)))%gran != 0 {
			t.Fatal("arena buffer not aligned to a granule")
		}
	}
	if len(b) != 3*gran-100 || cap(b) != 3*gran {
		t.Errorf("Get(3 granules - 100): len %d cap %d", len(b), cap(b))
	}
	if SetArena(0) {
		t.Fatal("SetArena succeeded with buffers out")
	}
	arenaCheck(t)
	d := Get(8 * gran) // only 7 granules left: falls back
	if inArena(d) {
		t.Fatal("a request larger than the free space came from the arena")
	}
	if Arena().Misses != 1 {
		t.Errorf("misses %d, want 1", Arena().Misses)
	}
	Put(d)
	Put(b)
	Put(a) // a and b coalesce
	arenaCheck(t)
	e := Get(4 * gran) // fits exactly where a and b were
	if &e[0] != &a[:1][0] {
		t.Error("freed neighbours did not coalesce into one extent")
	}
	Put(c)
	Put(e)
	arenaCheck(t)
	if st := Arena(); st.Used != 0 || st.Peak != 9*gran || len(freeExt) != 1 {
		t.Errorf("after freeing everything: %+v, %d free extents", st, len(freeExt))
	}
}

// TestArenaGrowTrim: Grow extends in place when the memory behind is free
// and moves (keeping the contents) when it is not; Trim gives the tail
// back.
func TestArenaGrowTrim(t *testing.T) {
	withArena(t, 32*gran)
	a := Get(gran)[:10]
	copy(a, "0123456789")
	p := &a[0]
	a = Grow(a, 3*gran, 8*gran)
	if &a[0] != p || cap(a) != 3*gran || string(a) != "0123456789" {
		t.Fatalf("in-place growth: moved %v, cap %d, %q", &a[0] != p, cap(a), a)
	}
	blocker := Get(gran) // right behind a
	a = Grow(a, 4*gran, 8*gran)
	if &a[0] == p || cap(a) != 8*gran || string(a) != "0123456789" {
		t.Fatalf("growth past a neighbour: moved %v, cap %d, %q", &a[0] != p, cap(a), a)
	}
	arenaCheck(t)
	a = Trim(a, 2*gran+1)
	if cap(a) != 3*gran || string(a) != "0123456789" {
		t.Fatalf("Trim: cap %d, %q", cap(a), a)
	}
	arenaCheck(t)
	if used := Arena().Used; used != 4*gran {
		t.Errorf("%d bytes in use, want 4 granules", used)
	}
	h := make([]byte, 5, 100) // not from the pool: left alone
	if x := Trim(h, 0); cap(x) != 100 {
		t.Error("Trim changed a buffer from outside the arena")
	}
	Put(blocker)
	Put(a)
	arenaCheck(t)
}

// TestArenaMisusePanics: putting a buffer back twice, or a slice of it
// that does not start where it did, would hand memory out twice; the
// arena refuses loudly.
func TestArenaMisusePanics(t *testing.T) {
	withArena(t, 8*gran)
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	a := Get(2 * gran)
	b := Get(gran)
	mustPanic("Put of a re-sliced start", func() { Put(a[gran:]) })
	mustPanic("Put with a shortened capacity", func() { Put(a[:10:gran]) })
	Put(a)
	mustPanic("second Put", func() { Put(a) })
	Put(b)
	arenaCheck(t)
}

// TestArenaRandom runs random Get/Grow/Trim/Put from several goroutines,
// writing a pattern into every buffer and checking it before each Put:
// overlapping extents would overwrite one another's pattern (run with
// -race).
func TestArenaRandom(t *testing.T) {
	withArena(t, 64*gran)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 7))
			var live [][]byte
			var tags []byte
			fill := func(b []byte, tag byte) {
				if len(b) == 0 {
					return
				}
				b[0] = tag
				for n := 1; n < len(b); n *= 2 {
					copy(b[n:], b[:n])
				}
			}
			check := func(b []byte, tag byte) {
				if n := bytes.Count(b, []byte{tag}); n != len(b) {
					t.Errorf("%d of %d bytes of a buffer are not its pattern: extents overlap", len(b)-n, len(b))
				}
			}
			for i := 0; i < 3000; i++ {
				switch op := rng.IntN(10); {
				case op < 4 || len(live) == 0:
					b := Get(1 + rng.IntN(6*gran))
					tag := byte(rng.IntN(255) + 1)
					fill(b, tag)
					live, tags = append(live, b), append(tags, tag)
				case op < 6:
					j := rng.IntN(len(live))
					check(live[j], tags[j])
					n := len(live[j])
					b := Grow(live[j], n+1+rng.IntN(3*gran), 2*cap(live[j]))[:n]
					check(b, tags[j])
					b = b[:cap(b)]
					fill(b, tags[j])
					live[j] = b
				case op < 7:
					j := rng.IntN(len(live))
					b := live[j][:rng.IntN(len(live[j])+1)]
					live[j] = Trim(b, len(b))
					check(live[j], tags[j])
				default:
					j := rng.IntN(len(live))
					check(live[j], tags[j])
					Put(live[j])
					live[j], tags[j] = live[len(live)-1], tags[len(tags)-1]
					live, tags = live[:len(live)-1], tags[:len(tags)-1]
				}
			}
			for j := range live {
				check(live[j], tags[j])
				Put(live[j])
			}
		}(uint64(w))
	}
	wg.Wait()
	arenaCheck(t)
	if st := Arena(); st.Used != 0 || st.Misses == 0 || st.Peak == 0 {
		t.Errorf("after the run: %+v (want nothing in use, some misses)", st)
	}
}
