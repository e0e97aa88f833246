package rabin

import (
	"math/bits"

	"github.com/restic/chunker"
)

// Sixty-four chains at once, in vector registers (lanes_amd64.s).
//
// A step of one chain is linear over GF(2) in its inputs: with d the
// fingerprint (degree < 53), t = d>>45 its top byte, n the byte that enters
// the window and o the byte that leaves it,
//
//	d' = (d mod x^45)·x^8 ⊕ (t·x^53 mod P) ⊕ n ⊕ (o·x^512 mod P).
//
// The vector code keeps D = d·x^3 (bits 3..55) in seven byte planes, plane
// j holding byte j of D for 64 chains, one chain per byte of a 512-bit
// register. Then (d mod x^45)·x^11 is planes 0..5 moved up by one (no
// instruction at all), the top byte t is plane 6, and each of the other
// three terms is, plane by plane, an 8×8 bit matrix applied to one byte:
// one GF2P8AFFINEQB per plane and term. A chain is at a boundary when bits
// 3..22 of D (d's low 20 bits) are clear.
//
// The 64 chains search 64 consecutive ranges of run positions each. Chain
// k reads its own stream of bytes, so every 64 steps a 64×64 byte block is
// transposed (lane-major to step-major) through a small scratch buffer.
// Each chain starts from a zero state and runs 64 warm-up steps over the
// bytes before its range (the window then holds exactly those bytes: the
// state is the fingerprint the scalar code starts from), whose results are
// ignored. The result is the set of chains that met a boundary; the first
// of them is searched again by searchOne for the exact position, so the
// vector code only has to be right about which ranges hold a boundary.

const (
	vecLanes   = 64                      // chains in one register
	vecMinRun  = 64                      // positions per chain, at least (one block)
	vecMaxRun  = 2048                    // positions per chain in one call
	vecScratch = 3 * vecLanes * vecLanes // transpose buffer and two blocks of rows
)

// vecConsts are the constants of the vector search for one polynomial;
// the layout is read by lanes_amd64.s.
type vecConsts struct {
	top  [7]uint64 // plane j of (t·x^53 mod P)·x^3, as affine matrices of t
	out  [7]uint64 // plane j of (o·x^512 mod P)·x^3, of the leaving byte o
	in   [2]uint64 // planes 0 and 1 of n·x^3, of the entering byte n
	idxA [8]uint64 // VPERMI2Q indices of the qword transpose, even columns
	idxB [8]uint64 // and odd columns
	bytT [64]byte  // VPERMB indices transposing the 8×8 bytes of a register
	low0 uint64    // bytes of plane 0 that are bits of d's low 20 (bits 3..7)
	low2 uint64    // and of plane 2 (bits 0..6); plane 1 is all in
}

// affine returns the GF2P8AFFINEQB matrix that maps a byte b to byte
// plane of f(b), for a function f that is linear over GF(2): row i (the
// byte at 7-i) selects the input bits whose images have output bit i.
func affine(f func(byte) uint64, plane int) uint64 {
	var m uint64
	for i := range 8 {
		var row uint64
		for b := range 8 {
			if f(1<<b)>>(8*plane+i)&1 != 0 {
				row |= 1 << b
			}
		}
		m |= row << (8 * (7 - i))
	}
	return m
}

// applyAffine is GF2P8AFFINEQB with a zero constant, for one byte.
func applyAffine(m uint64, x byte) byte {
	var y byte
	for i := range 8 {
		row := byte(m >> (8 * (7 - i)))
		y |= byte(bits.OnesCount8(row&x)&1) << i
	}
	return y
}

func newVecConsts(pol chunker.Pol) *vecConsts {
	c := &vecConsts{}
	top := func(b byte) uint64 { return uint64(chunker.Pol(uint64(b)<<degree).Mod(pol)) << 3 }
	out := func(b byte) uint64 {
		h := chunker.Pol(b)
		for range window {
			h = (h << 8).Mod(pol)
		}
		return uint64(h) << 3
	}
	in := func(b byte) uint64 { return uint64(b) << 3 }
	for j := range 7 {
		c.top[j] = affine(top, j)
		c.out[j] = affine(out, j)
	}
	c.in[0], c.in[1] = affine(in, 0), affine(in, 1)
	// Transposing 8 registers of 8 qwords: after unpacking pairs of rows,
	// column pairs {0,4}, {2,6} (idxA) and {1,5}, {3,7} (idxB) are
	// gathered from two registers each.
	c.idxA = [8]uint64{0, 1, 8, 9, 4, 5, 12, 13}
	c.idxB = [8]uint64{2, 3, 10, 11, 6, 7, 14, 15}
	for m := range 8 {
		for i := range 8 {
			c.bytT[8*m+i] = byte(8*i + m)
		}
	}
	c.low0 = 0xF8F8F8F8F8F8F8F8
	c.low2 = 0x7F7F7F7F7F7F7F7F
	return c
}

// vecHitsRef is the vector search written plainly, one chain at a time,
// with the same planes and matrices (tests compare the two and check this
// one against the scalar fingerprint). stream is chain 0's first byte,
// 65 bytes before its range; chain k starts stride bytes later; each chain
// runs blocks blocks of 64 steps, the first one the warm-up.
func vecHitsRef(c *vecConsts, data []byte, stream, stride, blocks int) uint64 {
	var hits uint64
	for k := range vecLanes {
		var p [7]byte
		s := data[stream+k*stride:]
		for step := range 64 * blocks {
			n := s[step]
			var o byte
			if step >= 64 {
				o = s[step-64]
			}
			t := p[6]
			var q [7]byte
			for j := range 7 {
				q[j] = applyAffine(c.top[j], t) ^ applyAffine(c.out[j], o)
				if j > 0 {
					q[j] ^= p[j-1]
				}
			}
			q[0] ^= applyAffine(c.in[0], n)
			q[1] ^= applyAffine(c.in[1], n)
			p = q
			if step >= 64 && p[0]&byte(c.low0)|p[1]|p[2]&byte(c.low2) == 0 {
				hits |= 1 << k
			}
		}
	}
	return hits
}
