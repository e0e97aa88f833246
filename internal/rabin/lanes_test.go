package rabin

import (
	"math/rand/v2"
	"testing"

	"github.com/restic/chunker"
)

// plantedLanes returns data for one call of the vector search with runs of
// run positions per chain, and a boundary window w planted in half of the
// chains (at a random position, at the first or at the last one: the last
// one of a chain is next to the first of the next).
func plantedLanes(r *rand.Rand, w []byte, run int) (data []byte, a int) {
	a = 65 + r.IntN(100)
	data = randomBytes(r, a+vecLanes*run+r.IntN(3))
	for k := range vecLanes {
		first := a + k*run
		var p int
		switch r.IntN(6) {
		case 0, 1, 2:
			continue
		case 3:
			p = first
		case 4:
			p = first + run - 1
		default:
			p = first + r.IntN(run)
		}
		copy(data[p-window:p], w)
	}
	return data, a
}

// scalarHits is the set of chains whose range holds a boundary, by
// searchOne.
func scalarHits(tab *Table, data []byte, a, run int) uint64 {
	var hits uint64
	for k := range vecLanes {
		if tab.searchOne(data, a+k*run, a+(k+1)*run) >= 0 {
			hits |= 1 << k
		}
	}
	return hits
}

// TestVecRefMatchesScalar checks the planes and matrices (written plainly
// in vecHitsRef) against the scalar fingerprint, for several polynomials.
func TestVecRefMatchesScalar(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	pols := []chunker.Pol{testPol}
	for range 2 {
		pol, err := chunker.RandomPolynomial()
		if err != nil {
			t.Fatal(err)
		}
		pols = append(pols, pol)
	}
	for _, pol := range pols {
		tab := newTable(t, pol)
		w := hitWindow(t, tab, r)
		for trial := range 3 {
			run := 64 * (1 + r.IntN(3))
			data, a := plantedLanes(r, w, run)
			want := scalarHits(tab, data, a, run)
			if want == 0 {
				t.Fatalf("trial %d: nothing planted", trial)
			}
			got := vecHitsRef(tab.vec, data, a-65, run, run/64+1)
			if got != want {
				t.Fatalf("pol %v trial %d: reference hits %064b, scalar %064b", pol, trial, got, want)
			}
		}
	}
}

// TestVecHitsMatchScalar compares the assembly with searchOne, chain by
// chain, on planted data and on plain random data, for every run length
// the search uses.
func TestVecHitsMatchScalar(t *testing.T) {
	if !hasVec() {
		t.Skip("no AVX-512 GFNI/VBMI on this CPU")
	}
	r := rand.New(rand.NewPCG(13, 14))
	tab := newTable(t, testPol)
	w := hitWindow(t, tab, r)
	var scratch [vecScratch]byte
	for trial := range 200 {
		run := 64 * (1 + r.IntN(vecMaxRun/64))
		data, a := plantedLanes(r, w, run)
		if trial%4 == 3 {
			data = randomBytes(r, len(data)) // hits only by chance
		}
		want := scalarHits(tab, data, a, run)
		got := vecHits(tab.vec, &data[a-65], run, run/64+1, &scratch[0])
		if got != want {
			t.Fatalf("trial %d, run %d: vector hits %064b, scalar %064b", trial, run, got, want)
		}
	}
}
