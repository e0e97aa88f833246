package rabin

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/restic/chunker"
)

// testPol is a degree-53 irreducible polynomial (the one restic's own
// chunker tests use).
const testPol = chunker.Pol(0x3DA3358B4DC173)

func newTable(t testing.TB, pol chunker.Pol) *Table {
	t.Helper()
	tab, err := New(pol)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// libraryCuts returns the chunk ends restic's chunker finds in data (the
// end of the input excluded).
func libraryCuts(pol chunker.Pol, data []byte) []int {
	bc := chunker.NewBase(pol)
	var cuts []int
	for start := 0; start < len(data); {
		s := bc.NextSplitPoint(data[start:])
		if s < 0 {
			break
		}
		start += s
		cuts = append(cuts, start)
	}
	return cuts
}

// tableCuts returns the chunk ends Cut finds when the bytes arrive in
// pieces of the given size, as the archiver's reader feeds them.
func tableCuts(tab *Table, data []byte, piece int) []int {
	var cuts []int
	for start := 0; start < len(data); {
		have, scanned := 0, 0
		for {
			have = min(len(data)-start, have+piece)
			if p := tab.Cut(data[start:start+have], scanned); p >= 0 {
				start += p
				cuts = append(cuts, start)
				break
			}
			if start+have == len(data) {
				return cuts
			}
			scanned = have
		}
	}
	return cuts
}

// compare checks Cut against the library, with the vector search (where
// the CPU has it) and without.
func compare(t *testing.T, tab *Table, pol chunker.Pol, data []byte, pieces ...int) {
	t.Helper()
	want := libraryCuts(pol, data)
	defer func(v bool) { useVec = v }(useVec)
	for _, vec := range []bool{hasVec(), false} {
		useVec = vec
		for _, piece := range pieces {
			if got := tableCuts(tab, data, piece); !slices.Equal(got, want) {
				t.Fatalf("vector search %v, pieces of %d bytes: cuts %v, library cuts %v", vec, piece, got, want)
			}
		}
	}
}

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestCutMatchesLibraryRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	data := randomBytes(r, 16<<20)
	tab := newTable(t, testPol)
	compare(t, tab, testPol, data, 128<<10, 1<<20, 8<<20, 700001, 64<<20)
	if n := len(libraryCuts(testPol, data)); n < 10 {
		t.Fatalf("only %d cuts in 16 MiB: the data does not exercise Cut", n)
	}
}

func TestCutMatchesLibraryOtherPolynomials(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	data := randomBytes(r, 8<<20)
	for range 3 {
		pol, err := chunker.RandomPolynomial()
		if err != nil {
			t.Fatal(err)
		}
		compare(t, newTable(t, pol), pol, data, 128<<10, 3<<20)
	}
}

// TestCutZeroRunsAndMaxSize covers zero runs (a window of zeros
// fingerprints to 0, so they cut at MinSize), runs without any boundary
// (cut at MaxSize) and chunks ending exactly at the end of the input.
func TestCutZeroRunsAndMaxSize(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	data := randomBytes(r, 32<<20)
	clear(data[3<<20 : 9<<20])
	ones := data[10<<20 : 28<<20]
	for i := range ones {
		ones[i] = 1
	}
	clear(data[len(data)-MinSize:])
	tab := newTable(t, testPol)
	want := libraryCuts(testPol, data)
	atMax, atMin := 0, 0
	for i, c := range want {
		prev := 0
		if i > 0 {
			prev = want[i-1]
		}
		switch c - prev {
		case MaxSize:
			atMax++
		case MinSize:
			atMin++
		}
	}
	if atMax < 2 || atMin < 5 {
		t.Fatalf("library cut %d chunks at MaxSize and %d at MinSize: the data does not cover them", atMax, atMin)
	}
	compare(t, tab, testPol, data, 128<<10, 5<<20, 64<<20)
}

// hitWindow returns 64 bytes whose fingerprint has its low 20 bits clear:
// planted before any position, they make it a boundary candidate.
func hitWindow(t *testing.T, tab *Table, r *rand.Rand) []byte {
	buf := randomBytes(r, 8<<20)
	for p := window; p <= len(buf); p++ {
		if tab.fingerprint(buf, p)&mask == 0 {
			return buf[p-window : p]
		}
	}
	t.Fatal("no boundary window in 8 MiB of random bytes")
	return nil
}

// TestCutPlantedBoundaries places boundary windows at chosen positions, so
// that every chain of the search, alone or together, finds the first one,
// and boundaries fall at the edges of chains and pieces.
func TestCutPlantedBoundaries(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	tab := newTable(t, testPol)
	w := hitWindow(t, tab, r)
	// A base without boundaries between MinSize and 2 MiB.
	base := make([]byte, 2<<20+MinSize)
	for i := range base {
		base[i] = 1
	}
	if tab.Cut(base, 0) != -1 || len(libraryCuts(testPol, base)) != 0 {
		t.Fatal("base has a boundary")
	}
	data := make([]byte, len(base))
	for trial := range 120 {
		copy(data, base)
		n := 1 + r.IntN(4)
		for range n {
			var p int
			switch r.IntN(3) {
			case 0: // anywhere after MinSize
				p = MinSize + r.IntN(len(data)-MinSize)
			case 1: // at or next to a chain's first or last position
				run := min((len(data)-MinSize)/lanes, maxRun)
				p = MinSize + r.IntN(lanes)*run + r.IntN(3) - 1
			default: // near MinSize or a piece edge
				p = MinSize + (r.IntN(4) << 17) + r.IntN(5) - 2
			}
			p = max(p, window)
			copy(data[p-window:p], w)
		}
		want := libraryCuts(testPol, data)
		for _, piece := range []int{len(data), 128 << 10, 1 + r.IntN(1<<20)} {
			if got := tableCuts(tab, data, piece); !slices.Equal(got, want) {
				t.Fatalf("trial %d, pieces of %d: cuts %v, library cuts %v", trial, piece, got, want)
			}
		}
	}
}

func TestNewRefusesOtherDegrees(t *testing.T) {
	for _, pol := range []chunker.Pol{0x11d, 1<<54 | 1} {
		if _, err := New(pol); err == nil {
			t.Fatalf("New(%v) of degree %d: no error", pol, pol.Deg())
		}
	}
}

// FuzzCut compares Cut with the library on data built from the input:
// the pattern tiled, with random runs, zero runs and boundary windows laid
// over it, fed in pieces of a fuzzed size.
func FuzzCut(f *testing.F) {
	f.Add(uint64(1), uint32(2<<20), uint32(128<<10), []byte("abc"))
	f.Add(uint64(2), uint32(3<<20), uint32(1), []byte{0})
	f.Add(uint64(3), uint32(MinSize+1), uint32(4096), []byte{})
	tab, err := New(testPol)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, seed uint64, size, piece uint32, pattern []byte) {
		n := int(size % (3 << 20))
		data := make([]byte, n)
		if len(pattern) > 0 {
			for i := 0; i < n; i += copy(data[i:], pattern) {
			}
		}
		r := rand.New(rand.NewPCG(seed, uint64(len(pattern))))
		for range r.IntN(6) {
			if n == 0 {
				break
			}
			o := r.IntN(n)
			seg := data[o:min(n, o+r.IntN(1<<20))]
			if r.IntN(2) == 0 {
				clear(seg)
			} else {
				for i := range seg {
					seg[i] = byte(r.Uint32())
				}
			}
		}
		want := libraryCuts(testPol, data)
		p := 1 + int(piece%(1<<20))
		if got := tableCuts(tab, data, p); !slices.Equal(got, want) {
			t.Fatalf("pieces of %d: cuts %v, library cuts %v", p, got, want)
		}
	})
}

func benchData(b *testing.B) []byte {
	data := randomBytes(rand.New(rand.NewPCG(9, 10)), 64<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	return data
}

// BenchmarkCut and BenchmarkLibrary chunk the same 64 MiB of random bytes
// (the rate counts every byte, including the MinSize-64 bytes of each
// chunk neither looks at).
func BenchmarkCut(b *testing.B) {
	tab := newTable(b, testPol)
	data := benchData(b)
	for b.Loop() {
		tableCuts(tab, data, 128<<10)
	}
}

// BenchmarkCutScalar is BenchmarkCut without the vector search.
func BenchmarkCutScalar(b *testing.B) {
	defer func(v bool) { useVec = v }(useVec)
	useVec = false
	BenchmarkCut(b)
}

func BenchmarkLibrary(b *testing.B) {
	data := benchData(b)
	for b.Loop() {
		libraryCuts(testPol, data)
	}
}
