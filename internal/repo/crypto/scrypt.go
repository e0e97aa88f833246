package crypto

// This file implements scrypt (RFC 7914) with its p independent ROMix lanes
// computed concurrently. The output is bit-identical to a sequential
// implementation: the lanes never read each other's state, so running them
// at the same time changes only wall time, not the work an attacker must do
// per guess (p × N × 2 BlockMix calls and p × 128·r·N bytes of memory-hard
// mixing, whether on one core or many).

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
)

// scratchFloor is the scratch memory lanes may always hold together, even
// when one lane needs less: small lanes then run side by side unstrided.
const scratchFloor = 16 << 20

// maxStride bounds the time-memory trade-off: a lane never stores fewer
// than one in maxStride of its V blocks.
const maxStride = 16

// Scrypt derives a keyLen-byte key from password and salt with scrypt as
// specified in RFC 7914, cost parameters N (a power of two greater than 1),
// r and p.
//
// The p lanes run on up to runtime.GOMAXPROCS(0) goroutines at once, but the
// scratch memory of all of them together never exceeds what a sequential
// scrypt needs (one lane's 128·r·N bytes, or scratchFloor if that is more).
// To fit, parallel lanes use scrypt's time-memory trade-off: a lane with
// stride k stores only every k-th V block and recomputes the others from
// the nearest stored one when step 3 asks for them (on average (k-1)/2
// extra BlockMix calls). The result is bit-identical; only the time of this
// machine's derivation changes (lanePlan picks the fastest arrangement), not
// the work or memory the parameters demand of an attacker.
//
// Unlike the RFC, N is not required to be below 2^(16·r): restic key files
// use N=2^18 with r=1 (which golang.org/x/crypto/scrypt also accepts).
func Scrypt(password, salt []byte, N, r, p, keyLen int) ([]byte, error) {
	if err := checkScryptParams(N, r, p, keyLen); err != nil {
		return nil, err
	}
	b, err := pbkdf2.Key(sha256.New, string(password), salt, 1, p*128*r)
	if err != nil {
		return nil, fmt.Errorf("scrypt: expand password: %w", err)
	}
	laneLen := 128 * r
	workers, stride := lanePlan(N, r, p, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		ln := newLane(N, r, stride)
		defer ln.release()
		for i := 0; i < p; i++ {
			ln.romix(b[i*laneLen : (i+1)*laneLen])
		}
	} else {
		// next is the index of the next lane to claim; each worker claims
		// lanes until none remain, so every lane is mixed exactly once and
		// at most workers scratch buffers exist at a time.
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Go(func() {
				ln := newLane(N, r, stride)
				defer ln.release()
				for {
					i := int(next.Add(1) - 1)
					if i >= p {
						return
					}
					// Lanes are disjoint slices of b, so workers never
					// write the same bytes.
					ln.romix(b[i*laneLen : (i+1)*laneLen])
				}
			})
		}
		wg.Wait()
	}
	dk, err := pbkdf2.Key(sha256.New, string(password), b, 1, keyLen)
	if err != nil {
		return nil, fmt.Errorf("scrypt: derive key: %w", err)
	}
	return dk, nil
}

// lanePlan returns how many goroutines run the p lanes and the stride each
// lane uses, so that workers × (scratch of a lane with that stride) stays
// within max(128·r·N, scratchFloor) bytes, choosing the arrangement with the
// least estimated wall time. A lane with stride k costs 2N + N(k-1)/2
// BlockMix calls against 2N unstrided; the p lanes take ceil(p/workers)
// rounds.
func lanePlan(N, r, p, procs int) (workers, stride int) {
	laneBytes := uint64(128) * uint64(r) * uint64(N)
	budget := max(laneBytes, scratchFloor)
	workers, stride = 1, 1
	best := float64(p)
	for w := 2; w <= min(p, procs); w++ {
		k := (uint64(w)*laneBytes + budget - 1) / budget
		if k > maxStride || k > uint64(N) {
			break
		}
		rounds := float64((p + w - 1) / w)
		if cost := rounds * (1 + float64(k-1)/4); cost < best {
			best, workers, stride = cost, w, int(k)
		}
	}
	return workers, stride
}

// checkScryptParams rejects parameters scrypt is undefined for and those
// whose buffer sizes would overflow an int.
func checkScryptParams(N, r, p, keyLen int) error {
	const maxInt = int(^uint(0) >> 1)
	switch {
	case N <= 1 || N&(N-1) != 0:
		return fmt.Errorf("scrypt: N=%d must be a power of two greater than 1", N)
	case r <= 0 || p <= 0:
		return fmt.Errorf("scrypt: r=%d and p=%d must be positive", r, p)
	case keyLen <= 0:
		return fmt.Errorf("scrypt: key length %d must be positive", keyLen)
	case uint64(r)*uint64(p) >= 1<<30:
		return fmt.Errorf("scrypt: r*p=%d must be below 2^30", uint64(r)*uint64(p))
	case r > maxInt/256 || r > maxInt/128/p || N > maxInt/128/r:
		return fmt.Errorf("scrypt: parameters N=%d r=%d p=%d too large", N, r, p)
	}
	return nil
}

// lane is the scratch state for running ROMix on one 128·r-byte block at a
// time. A lane is used by one goroutine only.
type lane struct {
	n, r   int
	stride int      // V blocks stored: every stride-th (1: all of them)
	v      []uint32 // stored V blocks, 32·r words each (see allocScratch)
	x, y   []uint32 // the working block and BlockMix's output, 32·r words each
	t, u   []uint32 // recomputed V blocks (stride > 1 only)
	free   func()   // releases v
}

// newLane allocates a lane that stores every stride-th V block (stride 1:
// all N); release it when done.
func newLane(N, r, stride int) *lane {
	w := 32 * r
	stride = max(1, min(stride, N))
	v, free := allocScratch((N + stride - 1) / stride * w)
	l := &lane{n: N, r: r, stride: stride, v: v, x: make([]uint32, w), y: make([]uint32, w), free: free}
	if stride > 1 {
		l.t, l.u = make([]uint32, w), make([]uint32, w)
	}
	return l
}

// release returns the lane's scratch memory; the lane is unusable after.
func (l *lane) release() {
	l.free()
	l.v = nil
}

// romix replaces b (128·r bytes) with scryptROMix_r(b, N) (RFC 7914
// section 5). Blocks are held as little-endian 32-bit words throughout, the
// representation Salsa20/8 works on.
func (l *lane) romix(b []byte) {
	if l.stride > 1 {
		l.romixStrided(b)
		return
	}
	w := 32 * l.r
	n := l.n
	v := l.v
	for i := range w {
		v[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	// Step 2: V_0 = B, V_{i+1} = BlockMix(V_i), and X = BlockMix(V_{N-1}).
	// Writing each output straight into V saves copying X into V.
	for i := 0; i < n-1; i++ {
		blockMix(v[(i+1)*w:(i+2)*w], v[i*w:(i+1)*w], l.r)
	}
	x, y := l.x, l.y
	blockMix(x, v[(n-1)*w:n*w], l.r)
	// Step 3: N times, j = Integerify(X) mod N; X = BlockMix(X xor V_j).
	// N is even, so the loop alternates between x and y in pairs and ends
	// with the result in x.
	mask := uint64(n - 1)
	for i := 0; i < n; i += 2 {
		j := int(integerify(x, l.r) & mask)
		xorBlock(x, v[j*w:(j+1)*w])
		blockMix(y, x, l.r)
		j = int(integerify(y, l.r) & mask)
		xorBlock(y, v[j*w:(j+1)*w])
		blockMix(x, y, l.r)
	}
	for i, word := range x {
		binary.LittleEndian.PutUint32(b[4*i:], word)
	}
}

// romixStrided computes the same as romix while storing only V_0,
// V_k, V_2k, … (k = l.stride): step 3 rebuilds V_j from V_(j - j mod k)
// with j mod k BlockMix calls.
func (l *lane) romixStrided(b []byte) {
	w, n, k, r := 32*l.r, l.n, l.stride, l.r
	v, x, y := l.v, l.x, l.y
	for i := range w {
		x[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	// Step 2, keeping every k-th block: after it, x = BlockMix^N(B).
	for i := 0; i < n; i++ {
		if i%k == 0 {
			copy(v[(i/k)*w:(i/k+1)*w], x)
		}
		blockMix(y, x, r)
		x, y = y, x
	}
	mask := uint64(n - 1)
	for range n {
		j := int(integerify(x, r) & mask)
		vj := v[(j/k)*w : (j/k+1)*w]
		if rem := j % k; rem > 0 {
			t, u := l.t, l.u
			blockMix(t, vj, r)
			for range rem - 1 {
				blockMix(u, t, r)
				t, u = u, t
			}
			vj = t
		}
		xorBlock(x, vj)
		blockMix(y, x, r)
		x, y = y, x
	}
	for i, word := range x {
		binary.LittleEndian.PutUint32(b[4*i:], word)
	}
}

// integerify returns the low 64 bits of Integerify(B): the last 64-byte
// block of B read as a little-endian integer. Only its residue mod N
// matters, and N is a power of two far below 2^64.
func integerify(b []uint32, r int) uint64 {
	last := b[(2*r-1)*16:]
	return uint64(last[0]) | uint64(last[1])<<32
}

// blockMix sets out to scryptBlockMix_r(in) (RFC 7914 section 4). out must
// not overlap in. Both hold 2·r 16-word blocks.
//
// BlockMix starts from X = the last block, then for each block i computes
// X = Salsa20/8(X xor B_i) and stores it as Y_i; the output is the even
// Y's followed by the odd ones.
func blockMix(out, in []uint32, r int) {
	x := *(*[16]uint32)(in[(2*r-1)*16:])
	for i := 0; i < 2*r; i++ {
		// Y_i goes to position i/2 for even i, r + i/2 for odd i.
		dst := (i>>1 + (i&1)*r) * 16
		salsaXOR(&x, (*[16]uint32)(in[i*16:]), (*[16]uint32)(out[dst:]))
	}
}

// xorBlock sets dst to dst xor src, word by word.
func xorBlock(dst, src []uint32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] ^= src[i]
	}
}

// salsaXOR sets x to Salsa20/8(x xor in) and copies the result to out.
//
// Salsa20/8 runs four double rounds (a column round then a row round, each
// four quarter rounds) over the 4×4 word matrix and adds its input word-wise
// (Bernstein's Salsa20 specification, as referenced by RFC 7914 section 3).
// The state lives in locals; the input is re-read from x and in for the
// final addition instead of being kept in registers.
func salsaXOR(x, in, out *[16]uint32) {
	x0, x1, x2, x3 := x[0]^in[0], x[1]^in[1], x[2]^in[2], x[3]^in[3]
	x4, x5, x6, x7 := x[4]^in[4], x[5]^in[5], x[6]^in[6], x[7]^in[7]
	x8, x9, x10, x11 := x[8]^in[8], x[9]^in[9], x[10]^in[10], x[11]^in[11]
	x12, x13, x14, x15 := x[12]^in[12], x[13]^in[13], x[14]^in[14], x[15]^in[15]
	for range 4 {
		// Column round: a quarter round down each column, starting at the
		// diagonal element. Salsa20's quarterround(y0, y1, y2, y3) is
		// y1 ^= (y0+y3)<<<7; y2 ^= (y1+y0)<<<9; y3 ^= (y2+y1)<<<13;
		// y0 ^= (y3+y2)<<<18, written out here on the named words.
		x4 ^= bits.RotateLeft32(x0+x12, 7)
		x8 ^= bits.RotateLeft32(x4+x0, 9)
		x12 ^= bits.RotateLeft32(x8+x4, 13)
		x0 ^= bits.RotateLeft32(x12+x8, 18)

		x9 ^= bits.RotateLeft32(x5+x1, 7)
		x13 ^= bits.RotateLeft32(x9+x5, 9)
		x1 ^= bits.RotateLeft32(x13+x9, 13)
		x5 ^= bits.RotateLeft32(x1+x13, 18)

		x14 ^= bits.RotateLeft32(x10+x6, 7)
		x2 ^= bits.RotateLeft32(x14+x10, 9)
		x6 ^= bits.RotateLeft32(x2+x14, 13)
		x10 ^= bits.RotateLeft32(x6+x2, 18)

		x3 ^= bits.RotateLeft32(x15+x11, 7)
		x7 ^= bits.RotateLeft32(x3+x15, 9)
		x11 ^= bits.RotateLeft32(x7+x3, 13)
		x15 ^= bits.RotateLeft32(x11+x7, 18)

		// Row round: the same along each row.
		x1 ^= bits.RotateLeft32(x0+x3, 7)
		x2 ^= bits.RotateLeft32(x1+x0, 9)
		x3 ^= bits.RotateLeft32(x2+x1, 13)
		x0 ^= bits.RotateLeft32(x3+x2, 18)

		x6 ^= bits.RotateLeft32(x5+x4, 7)
		x7 ^= bits.RotateLeft32(x6+x5, 9)
		x4 ^= bits.RotateLeft32(x7+x6, 13)
		x5 ^= bits.RotateLeft32(x4+x7, 18)

		x11 ^= bits.RotateLeft32(x10+x9, 7)
		x8 ^= bits.RotateLeft32(x11+x10, 9)
		x9 ^= bits.RotateLeft32(x8+x11, 13)
		x10 ^= bits.RotateLeft32(x9+x8, 18)

		x12 ^= bits.RotateLeft32(x15+x14, 7)
		x13 ^= bits.RotateLeft32(x12+x15, 9)
		x14 ^= bits.RotateLeft32(x13+x12, 13)
		x15 ^= bits.RotateLeft32(x14+x13, 18)
	}
	x0 += x[0] ^ in[0]
	x1 += x[1] ^ in[1]
	x2 += x[2] ^ in[2]
	x3 += x[3] ^ in[3]
	x4 += x[4] ^ in[4]
	x5 += x[5] ^ in[5]
	x6 += x[6] ^ in[6]
	x7 += x[7] ^ in[7]
	x8 += x[8] ^ in[8]
	x9 += x[9] ^ in[9]
	x10 += x[10] ^ in[10]
	x11 += x[11] ^ in[11]
	x12 += x[12] ^ in[12]
	x13 += x[13] ^ in[13]
	x14 += x[14] ^ in[14]
	x15 += x[15] ^ in[15]
	x[0], out[0] = x0, x0
	x[1], out[1] = x1, x1
	x[2], out[2] = x2, x2
	x[3], out[3] = x3, x3
	x[4], out[4] = x4, x4
	x[5], out[5] = x5, x5
	x[6], out[6] = x6, x6
	x[7], out[7] = x7, x7
	x[8], out[8] = x8, x8
	x[9], out[9] = x9, x9
	x[10], out[10] = x10, x10
	x[11], out[11] = x11, x11
	x[12], out[12] = x12, x12
	x[13], out[13] = x13, x13
	x[14], out[14] = x14, x14
	x[15], out[15] = x15, x15
}
