// Package rabin finds content-defined chunk boundaries at exactly the
// positions github.com/restic/chunker cuts at, about twice as fast.
//
// restic's chunker keeps a Rabin fingerprint of a 64-byte window and cuts a
// chunk where the fingerprint's low 20 bits are zero, but never before
// MinSize bytes and always at MaxSize. Its loop is bound by the latency of
// one long dependency chain per byte (shift, table load, xor). Two facts let
// the work be split into independent chains:
//
//   - After a cut the library resets its state, skips MinSize-64 bytes and
//     slides in the next 64; the seed byte it starts from leaves the window
//     exactly at the first position it may cut at. From there on the
//     fingerprint at position p (after p bytes of the chunk) is
//     H(chunk[p-64:p]) mod the polynomial: a function of those 64 bytes
//     only, not of anything earlier.
//   - So the cut of a chunk is the first p in [MinSize, MaxSize] whose
//     window fingerprint has its low 20 bits clear, and any range of
//     positions can be searched by its own chain, started by hashing the 64
//     bytes before the range.
//
// On CPUs with AVX-512 GFNI and VBMI, Cut searches 64 ranges at once, one
// chain per byte of a vector register (lanes.go); elsewhere, and for what is
// left, four ranges at once, one chain each, which the CPU overlaps. Where a
// chain finds a boundary, the ranges before it are finished in order so
// that the first boundary wins. Tables come from the library's polynomial
// arithmetic (chunker.Pol), and the tests compare every cut with the
// library's BaseChunker (including a fuzz target), so the repository format
// does not depend on this package being right by construction alone.
package rabin

import (
	"fmt"
	"math/bits"
	"sync"

	"github.com/restic/chunker"
)

const (
	// MinSize and MaxSize bound a chunk's length (the library's defaults,
	// which restic repositories use).
	MinSize = chunker.MinSize
	MaxSize = chunker.MaxSize

	window = 64         // bytes in the rolling window
	mask   = 1<<20 - 1  // a cut where fingerprint&mask == 0: ~1 MiB average
	degree = 53         // restic's polynomials all have degree 53
	shift  = degree - 8 // the fingerprint's top byte
	lanes  = 4          // independent chains searched at once
	maxRun = 32 << 10   // positions one chain searches before the next round
	minRun = 256        // below this per chain, one chain is cheaper
)

// Table holds the lookup tables of one polynomial. It is read-only after
// New and safe for concurrent use.
type Table struct {
	// mod[b] reduces a fingerprint shifted left by 8 whose top byte was b:
	// (b·x^53 mod P) | b·x^53, so one xor both clears the top byte and adds
	// its remainder.
	mod [256]uint64
	// out[b] removes a byte that has just left the window: b·x^(8·64) mod P,
	// the byte's weight after 64 more bytes have been shifted in.
	out [256]uint64
	// vec holds the same arithmetic as bit matrices for the vector search
	// (lanes.go).
	vec *vecConsts
}

// tables caches the tables of every polynomial seen: a process uses one
// or two, and building them takes about a millisecond.
var tables sync.Map // chunker.Pol -> *Table

// For returns the tables of pol, built once per process.
func For(pol chunker.Pol) (*Table, error) {
	if t, ok := tables.Load(pol); ok {
		return t.(*Table), nil
	}
	t, err := New(pol)
	if err != nil {
		return nil, err
	}
	actual, _ := tables.LoadOrStore(pol, t)
	return actual.(*Table), nil
}

// New builds the tables of pol, which must have degree 53 (repository
// configs with other polynomials are refused when they are loaded).
func New(pol chunker.Pol) (*Table, error) {
	if pol.Deg() != degree {
		return nil, fmt.Errorf("rabin: polynomial %v has degree %d, want %d", pol, pol.Deg(), degree)
	}
	t := &Table{}
	for b := range 256 {
		top := chunker.Pol(uint64(b) << degree)
		t.mod[b] = uint64(top.Mod(pol)) | uint64(top)
		h := chunker.Pol(b)
		for range window {
			h = (h << 8).Mod(pol)
		}
		t.out[b] = uint64(h)
	}
	t.vec = newVecConsts(pol)
	return t, nil
}

// Cut returns the length of the chunk that starts at data[0] if its end
// lies within data, or -1 if more bytes are needed. The first scanned
// positions were already searched by an earlier call on a prefix of the
// same bytes (0 on the first call): Cut(data, n) after Cut(data[:n], m)
// returned -1 resumes where that one stopped. A chunk ends at the first
// position p ≥ MinSize (p bytes into the chunk) whose window
// data[p-64:p] fingerprints to a value with its low 20 bits clear, or at
// MaxSize. At the end of the input the caller takes the remaining bytes as
// the last chunk, as the library does.
func (t *Table) Cut(data []byte, scanned int) int {
	a := max(scanned+1, MinSize)
	end := min(len(data), MaxSize)
	if a > end {
		return -1
	}
	if p := t.search(data, a, end+1); p >= 0 {
		return p
	}
	if end == MaxSize {
		return MaxSize
	}
	return -1
}

// fingerprint returns H(data[p-64:p]): the fingerprint at position p.
func (t *Table) fingerprint(data []byte, p int) uint64 {
	var d uint64
	for _, b := range data[p-window : p] {
		d = (d<<8 | uint64(b)) ^ t.mod[byte(d>>shift)]
	}
	return d
}

// search returns the first position p in [a, b) whose fingerprint has its
// low bits clear, or -1. It needs 64 ≤ a and b ≤ len(data)+1.
func (t *Table) search(data []byte, a, b int) int {
	if useVec && a > window && b-a >= vecLanes*vecMinRun {
		p, next := t.searchVec(data, a, b)
		if p >= 0 || next == b {
			return p
		}
		a = next
	}
	mod, out := &t.mod, &t.out
	for b-a >= lanes*minRun {
		run := min((b-a)/lanes, maxRun)
		// Chain k covers positions [a+k·run, a+(k+1)·run); sk holds the
		// 64 window bytes before its first position and then the bytes of
		// its run but the last (position a+(k+1)·run-1 is the fingerprint
		// of the 64 bytes before it): at index i ≥ 64, sk[i] enters the
		// window and sk[i-64] leaves it.
		n := window + run - 1
		s0 := data[a-window:][:n]
		s1 := data[a+run-window:][:n]
		s2 := data[a+2*run-window:][:n]
		s3 := data[a+3*run-window:][:n]
		d0, d1 := t.fingerprint(data, a), t.fingerprint(data, a+run)
		d2, d3 := t.fingerprint(data, a+2*run), t.fingerprint(data, a+3*run)
		i := window
		for ; i < n; i++ {
			if hit4(d0, d1, d2, d3) {
				break
			}
			d0 = (d0<<8 | uint64(s0[i])) ^ mod[byte(d0>>shift)] ^ out[s0[i-window]]
			d1 = (d1<<8 | uint64(s1[i])) ^ mod[byte(d1>>shift)] ^ out[s1[i-window]]
			d2 = (d2<<8 | uint64(s2[i])) ^ mod[byte(d2>>shift)] ^ out[s2[i-window]]
			d3 = (d3<<8 | uint64(s3[i])) ^ mod[byte(d3>>shift)] ^ out[s3[i-window]]
		}
		if hit4(d0, d1, d2, d3) {
			// Some chain has a boundary at offset i-64 of its run, none
			// before it. The earliest boundary is in the first chain that
			// has one at or after that offset.
			off := i - window
			for k := range lanes {
				if p := t.searchOne(data, a+k*run+off, a+(k+1)*run); p >= 0 {
					return p
				}
			}
			panic("rabin: a chain stopped without a boundary")
		}
		a += lanes * run
	}
	return t.searchOne(data, a, b)
}

// useVec selects the vector search (tests may turn it off).
var useVec = hasVec()

// searchVec searches [a, b) in rounds of 64 ranges (lanes.go) and returns
// the first boundary, or -1 and where the rounds stopped: what is left is
// shorter than one round.
func (t *Table) searchVec(data []byte, a, b int) (int, int) {
	// Chain k of a round reads from a-65+k·run up to a+(k+1)·run-2, within
	// data because b <= len(data)+1.
	var scratch [vecScratch]byte
	for b-a >= vecLanes*vecMinRun {
		run := min((b-a)/vecLanes/vecMinRun*vecMinRun, vecMaxRun)
		hits := vecHits(t.vec, &data[a-window-1], run, run/vecMinRun+1, &scratch[0])
		if hits != 0 {
			// the first range with a boundary holds the first boundary
			k := bits.TrailingZeros64(hits)
			p := t.searchOne(data, a+k*run, a+(k+1)*run)
			if p < 0 {
				panic("rabin: a vector chain reported a boundary searchOne does not find")
			}
			return p, a
		}
		a += vecLanes * run
	}
	return -1, a
}

// hit4 reports whether any of four fingerprints has its low bits clear:
// (x&mask)-1 has its top bit set only when x&mask is zero.
func hit4(d0, d1, d2, d3 uint64) bool {
	return ((d0&mask-1)|(d1&mask-1)|(d2&mask-1)|(d3&mask-1))>>63 != 0
}

// searchOne is search with one chain.
func (t *Table) searchOne(data []byte, a, b int) int {
	if a >= b {
		return -1
	}
	d := t.fingerprint(data, a)
	for p := a; ; p++ {
		if d&mask == 0 {
			return p
		}
		if p+1 >= b {
			return -1
		}
		d = (d<<8 | uint64(data[p])) ^ t.mod[byte(d>>shift)] ^ t.out[data[p-window]]
	}
}
