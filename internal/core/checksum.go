package core

import (
	"crypto/sha256"

	"github.com/zeebo/xxh3"

	"github.com/cairn-backup/cairn/internal/sha256x"
)

// checkPiece is how many bytes HashChecked feeds to each hash in turn: small
// enough that a piece is still in the core's L1/L2 cache when the second
// hash reads it.
const checkPiece = 32 << 10

// HashChecked returns the ID of data together with its check sum (see
// CheckSum). Both are computed in one pass, piece by piece, the check sum
// of each piece before its SHA-256: if the buffer changes at any moment after
// a piece was summed (a memory fault, a buffer reused too early), the bytes a
// later stage reads no longer match the check sum, whether or not the ID
// already saw the change. The pre-upload verification compares the decoded
// blob's check sum with this one instead of hashing it with SHA-256 again.
func HashChecked(data []byte) (ID, uint64) {
	if len(data) <= checkPiece {
		x := CheckSum(data)
		return sha256.Sum256(data), x
	}
	var d CheckedDigest
	d.Reset(data)
	d.Write(len(data))
	return d.Sum()
}

// CheckSum returns the check sum HashChecked returns for data: XXH3 (64
// bits) of each checkPiece-sized piece, folded in order together with the
// length. XXH3 runs at 25–60 GB/s with AVX2 or AVX-512 (XXH64: ~14); one
// call per whole piece keeps it on its fast path, which a streaming XXH3
// leaves after the first write. A check sum never leaves memory, so its
// definition is free to change.
func CheckSum(data []byte) uint64 {
	var acc uint64
	for p := data; ; p = p[checkPiece:] {
		if len(p) <= checkPiece {
			return finishSum(foldSum(acc, xxh3.Hash(p)), len(data))
		}
		acc = foldSum(acc, xxh3.Hash(p[:checkPiece]))
	}
}

// foldSum adds a piece's hash to the running check sum. It is a bijection
// of h for any acc (and of acc for any h), so a change in one piece always
// changes the result.
func foldSum(acc, h uint64) uint64 { return (acc ^ h) * 0x9E3779B97F4A7C15 }

func finishSum(acc uint64, n int) uint64 { return foldSum(acc, uint64(n)) }

// CheckedDigest is HashChecked over one buffer fed in parts, so that two
// buffers can be hashed side by side (WriteChecked2). The check sum runs
// ahead of SHA-256: before the hash reads a byte, the whole piece holding
// it has been summed (it is still in the cache when the hash reads it).
type CheckedDigest struct {
	data   []byte
	off    int    // bytes of data hashed
	summed int    // bytes of data summed: a multiple of checkPiece, or len(data)
	acc    uint64 // the pieces summed, folded (foldSum)
	s      sha256x.Digest
}

// Reset starts hashing data.
func (d *CheckedDigest) Reset(data []byte) {
	d.data, d.off, d.summed, d.acc = data, 0, 0, 0
	d.s.Reset()
}

// sumTo sums the pieces that hold data[:n] and have not been summed.
func (d *CheckedDigest) sumTo(n int) {
	for d.summed < n {
		end := min(d.summed+checkPiece, len(d.data))
		d.acc = foldSum(d.acc, xxh3.Hash(d.data[d.summed:end]))
		d.summed = end
	}
}

// Write hashes the next n bytes of the buffer.
func (d *CheckedDigest) Write(n int) {
	for n > 0 {
		m := min(n, checkPiece)
		d.sumTo(d.off + m)
		d.s.Write(d.data[d.off : d.off+m])
		d.off += m
		n -= m
	}
}

// WriteChecked2 hashes the next na bytes of a's buffer and nb of b's (a
// and b distinct), side by side as far as both have bytes.
func WriteChecked2(a *CheckedDigest, na int, b *CheckedDigest, nb int) {
	for na > 0 || nb > 0 {
		ma, mb := min(na, checkPiece), min(nb, checkPiece)
		a.sumTo(a.off + ma)
		b.sumTo(b.off + mb)
		sha256x.Write2(&a.s, a.data[a.off:a.off+ma], &b.s, b.data[b.off:b.off+mb])
		a.off += ma
		b.off += mb
		na -= ma
		nb -= mb
	}
}

// Sum returns the ID and check sum of the buffer, which must have been
// hashed to its end.
func (d *CheckedDigest) Sum() (ID, uint64) {
	if d.off != len(d.data) {
		panic("core: CheckedDigest.Sum before the end of its buffer")
	}
	acc := d.acc
	if len(d.data) == 0 {
		acc = foldSum(0, xxh3.Hash(nil)) // CheckSum's one empty piece
	}
	return d.s.Sum(), finishSum(acc, len(d.data))
}
