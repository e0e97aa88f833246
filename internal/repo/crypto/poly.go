package crypto

import (
	"encoding/binary"
	"math/bits"
	"sync"

	"golang.org/x/crypto/poly1305"
)

// Poly1305 over long messages, eight blocks at a time (poly_amd64.s, with
// AVX-512 IFMA). With h the accumulator and r the clamped key, Poly1305 is
// h = Σ m_i·r^(n-i+1) mod p, p = 2^130-5. Lane j of the vector code keeps
// A_j = Σ_k m_(8k+j+1)·r^(8(K-1-k)) for the first 8K blocks (Horner with
// r^8); then h = Σ_j A_j·r^(8-j) is exactly the state after those blocks,
// and the remaining blocks (fewer than 8) go through the scalar code here.
// Numbers in the lanes are three limbs of 44, 44 and 42 bits, multiplied
// with VPMADD52LUQ/HUQ (52-bit products, low and high halves).
//
// Everything is checked against golang.org/x/crypto/poly1305 (tests and a
// fuzz target); messages shorter than vecMinLen use that package directly.

// vecMinLen is the shortest message the vector code is used for.
const vecMinLen = 256

// polyPowers holds one key's powers of r in the vector code's layout
// (read by poly_amd64.s).
type polyPowers struct {
	r8  [5]uint64    // r^8: limbs 0, 1, 2, then 20·limb 1, 20·limb 2
	pow [5][8]uint64 // the same for r^(8-j), lane j
}

// polyVec is the vector code's state for one message.
type polyVec struct {
	acc [3][8]uint64 // A_j, limb by limb
}

// uint130 is a number below 2^131 or so: lo + hi·2^64 + top·2^128.
type uint130 struct{ lo, hi, top uint64 }

const p130lo, p130hi, p130top = 0xFFFFFFFFFFFFFFFB, 0xFFFFFFFFFFFFFFFF, 3

// mulMod returns a·b mod p (partially reduced: below 2^130 + small),
// for a and b below 2^131.
func mulMod(a, b uint130) uint130 {
	// schoolbook on 64-bit words; each 128-bit product is added at its
	// place and its carry runs up (the product is below 2^262: 5 words)
	aw := [3]uint64{a.lo, a.hi, a.top}
	bw := [3]uint64{b.lo, b.hi, b.top}
	var t [6]uint64
	for i := range 3 {
		for j := range 3 {
			hi, lo := bits.Mul64(aw[i], bw[j])
			var c uint64
			t[i+j], c = bits.Add64(t[i+j], lo, 0)
			t[i+j+1], c = bits.Add64(t[i+j+1], hi, c)
			for k := i + j + 2; c != 0 && k < 6; k++ {
				t[k], c = bits.Add64(t[k], 0, c)
			}
		}
	}
	return reduce(t)
}

// reduce folds a number of up to 384 bits, as words, modulo p: the bits
// from 130 up are multiplied by 5 and added to the low 130 (twice).
func reduce(t [6]uint64) uint130 {
	for range 2 {
		// high = t >> 130
		h := [4]uint64{
			t[2]>>2 | t[3]<<62,
			t[3]>>2 | t[4]<<62,
			t[4]>>2 | t[5]<<62,
			t[5] >> 2,
		}
		l := [6]uint64{t[0], t[1], t[2] & 3}
		// l += 5·h = 4h + h
		var c uint64
		l[0], c = bits.Add64(l[0], h[0]<<2, 0)
		l[1], c = bits.Add64(l[1], h[1]<<2|h[0]>>62, c)
		l[2], c = bits.Add64(l[2], h[2]<<2|h[1]>>62, c)
		l[3], c = bits.Add64(l[3], h[3]<<2|h[2]>>62, c)
		l[4], _ = bits.Add64(l[4], h[3]>>62, c)
		l[0], c = bits.Add64(l[0], h[0], 0)
		l[1], c = bits.Add64(l[1], h[1], c)
		l[2], c = bits.Add64(l[2], h[2], c)
		l[3], c = bits.Add64(l[3], h[3], c)
		l[4], _ = bits.Add64(l[4], 0, c)
		t = l
	}
	return uint130{t[0], t[1], t[2]}
}

func add130(a, b uint130) uint130 {
	var c uint64
	a.lo, c = bits.Add64(a.lo, b.lo, 0)
	a.hi, c = bits.Add64(a.hi, b.hi, c)
	a.top += b.top + c
	return a
}

// limbs splits x (below 2^130) into 44, 44 and 42 bits.
func limbs(x uint130) [3]uint64 {
	const m44 = 1<<44 - 1
	return [3]uint64{
		x.lo & m44,
		(x.lo>>44 | x.hi<<20) & m44,
		x.hi>>24 | x.top<<40,
	}
}

// fromLimbs is the inverse of limbs, for limbs below 2^64 each.
func fromLimbs(l0, l1, l2 uint64) uint130 {
	a := uint130{l0, 0, 0}
	a = add130(a, uint130{l1 << 44, l1 >> 20, 0}) // l1·2^44
	a = add130(a, uint130{0, l2 << 24, l2 >> 40}) // l2·2^88
	return a
}

// polyKeyR returns the clamped r of a Poly1305 key.
func polyKeyR(key *[32]byte) uint130 {
	return uint130{
		binary.LittleEndian.Uint64(key[0:8]) & 0x0FFFFFFC0FFFFFFF,
		binary.LittleEndian.Uint64(key[8:16]) & 0x0FFFFFFC0FFFFFFC,
		0,
	}
}

// fullyReduce returns x mod p for x below 2^131.
func fullyReduce(x uint130) uint130 {
	x = reduce([6]uint64{x.lo, x.hi, x.top})
	// now x < 2^130 + 5·2: subtract p once if x >= p
	lo, b := bits.Sub64(x.lo, p130lo, 0)
	hi, b := bits.Sub64(x.hi, p130hi, b)
	top, b := bits.Sub64(x.top, p130top, b)
	if b == 0 {
		return uint130{lo, hi, top}
	}
	return x
}

// powersFor computes the vector code's powers of r.
func powersFor(r uint130) *polyPowers {
	var pw [9]uint130
	pw[1] = r
	for i := 2; i <= 8; i++ {
		pw[i] = fullyReduce(mulMod(pw[i-1], r))
	}
	set := func(x uint130) [5]uint64 {
		l := limbs(x)
		return [5]uint64{l[0], l[1], l[2], 20 * l[1], 20 * l[2]}
	}
	pp := &polyPowers{r8: set(pw[8])}
	for j := range 8 {
		v := set(pw[8-j])
		for k := range 5 {
			pp.pow[k][j] = v[k]
		}
	}
	return pp
}

// polySum is poly1305.Sum for a key whose r has the vector powers pp (nil:
// none yet; they are then computed).
func polySum(out *[16]byte, msg []byte, key *[32]byte, pp *polyPowers) {
	if !useIFMA || len(msg) < vecMinLen || pp == nil {
		poly1305.Sum(out, msg, key)
		return
	}
	r := polyKeyR(key)
	groups := len(msg) / 128
	var st polyVec
	polyBlocks(&st, pp, &msg[0], groups)
	var h uint130
	for j := range 8 {
		h = add130(h, fromLimbs(st.acc[0][j], st.acc[1][j], st.acc[2][j]))
	}
	h = reduce([6]uint64{h.lo, h.hi, h.top})
	rest := msg[groups*128:]
	for len(rest) > 0 {
		var blk [17]byte
		n := copy(blk[:16], rest)
		blk[n] = 1 // the pad bit: 2^128 for a full block, 2^(8n) for a short one
		m := uint130{binary.LittleEndian.Uint64(blk[0:8]), binary.LittleEndian.Uint64(blk[8:16]), uint64(blk[16])}
		h = mulMod(add130(h, m), r)
		rest = rest[n:]
	}
	h = fullyReduce(h)
	s := uint130{binary.LittleEndian.Uint64(key[16:24]), binary.LittleEndian.Uint64(key[24:32]), 0}
	h = add130(h, s)
	binary.LittleEndian.PutUint64(out[0:8], h.lo)
	binary.LittleEndian.PutUint64(out[8:16], h.hi)
}

// keyPowers caches the powers of a MAC key's r (computed on first use).
type keyPowers struct {
	once sync.Once
	pp   *polyPowers
}

func (kp *keyPowers) get(key *[32]byte) *polyPowers {
	if !useIFMA {
		return nil
	}
	kp.once.Do(func() { kp.pp = powersFor(polyKeyR(key)) })
	return kp.pp
}
