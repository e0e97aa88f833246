package core

import (
	"crypto/sha256"

	"github.com/cespare/xxhash/v2"
)

// checkPiece is how many bytes HashChecked feeds to each hash in turn: small
// enough that a piece is still in the core's L1/L2 cache when the second
// hash reads it.
const checkPiece = 32 << 10

// HashChecked returns the ID of data together with its check sum (XXH64,
// see CheckSum). Both are computed in one pass, piece by piece, the check sum
// of each piece before its SHA-256: if the buffer changes at any moment after
// a piece was summed (a memory fault, a buffer reused too early), the bytes a
// later stage reads no longer match the check sum, whether or not the ID
// already saw the change. The pre-upload verification compares the decoded
// blob's check sum with this one instead of hashing it with SHA-256 again.
func HashChecked(data []byte) (ID, uint64) {
	if len(data) <= checkPiece {
		x := xxhash.Sum64(data)
		return sha256.Sum256(data), x
	}
	x := xxhash.New()
	s := sha256.New()
	for p := data; len(p) > 0; {
		n := min(len(p), checkPiece)
		_, _ = x.Write(p[:n])
		_, _ = s.Write(p[:n])
		p = p[n:]
	}
	var id ID
	s.Sum(id[:0])
	return id, x.Sum64()
}

// CheckSum returns the check sum HashChecked returns for data.
func CheckSum(data []byte) uint64 { return xxhash.Sum64(data) }
