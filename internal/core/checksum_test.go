package core

import (
	"crypto/sha256"
	"math/rand/v2"
	"testing"

	"github.com/zeebo/xxh3"
)

// TestHashChecked: the ID is the SHA-256 and the check sum CheckSum of the
// whole input, for sizes around the piece size and its multiples (the
// piece loop must neither skip nor repeat bytes).
func TestHashChecked(t *testing.T) {
	data := make([]byte, 5*checkPiece+100)
	rand.NewChaCha8([32]byte{7}).Read(data)
	sizes := []int{0, 1, 63, 64, checkPiece - 1, checkPiece, checkPiece + 1, 2 * checkPiece, 3*checkPiece + 17, len(data)}
	for _, n := range sizes {
		id, sum := HashChecked(data[:n])
		if id != ID(sha256.Sum256(data[:n])) || id != Hash(data[:n]) {
			t.Errorf("%d bytes: ID differs from SHA-256", n)
		}
		if sum != checkSumRef(data[:n]) || sum != CheckSum(data[:n]) {
			t.Errorf("%d bytes: check sum differs from its definition", n)
		}
	}
	// every byte counts in both
	id, sum := HashChecked(data)
	for _, pos := range []int{0, checkPiece - 1, checkPiece, 4*checkPiece + 3, len(data) - 1} {
		data[pos] ^= 1
		id2, sum2 := HashChecked(data)
		data[pos] ^= 1
		if id2 == id || sum2 == sum {
			t.Errorf("byte %d flipped: ID or check sum unchanged", pos)
		}
	}
}

// TestWriteChecked2: two buffers fed side by side equal two HashChecked
// calls, for lengths that end in different pieces and blocks.
func TestWriteChecked2(t *testing.T) {
	data := make([]byte, 3*checkPiece+999)
	rand.NewChaCha8([32]byte{9}).Read(data)
	lens := []int{0, 1, 64, 100, checkPiece, checkPiece + 65, 2*checkPiece + 3, len(data)}
	for _, la := range lens {
		for _, lb := range lens {
			a, b := data[:la], data[len(data)-lb:]
			ida, suma, idb, sumb := hashChecked2(a, b)
			wa, wsa := HashChecked(a)
			wb, wsb := HashChecked(b)
			if ida != wa || suma != wsa || idb != wb || sumb != wsb {
				t.Fatalf("WriteChecked2 of %d and %d bytes differs from HashChecked", la, lb)
			}
		}
	}
}

func BenchmarkHashChecked(b *testing.B) {
	data := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{1}).Read(data)
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			Hash(data)
		}
	})
	b.Run("checked", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			HashChecked(data)
		}
	})
	b.Run("checked2", func(b *testing.B) {
		b.SetBytes(2 * int64(len(data)))
		for b.Loop() {
			hashChecked2(data, data)
		}
	})
	b.Run("checksum", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			CheckSum(data)
		}
	})
}

// hashChecked2 hashes two whole buffers side by side.
func hashChecked2(a, b []byte) (ida ID, suma uint64, idb ID, sumb uint64) {
	var da, db CheckedDigest
	da.Reset(a)
	db.Reset(b)
	WriteChecked2(&da, len(a), &db, len(b))
	ida, suma = da.Sum()
	idb, sumb = db.Sum()
	return
}

// checkSumRef is CheckSum's definition written out: XXH3 of each piece of
// checkPiece bytes (the last one shorter or, for no data, empty), folded in
// order, then the length.
func checkSumRef(data []byte) uint64 {
	var pieces [][]byte
	for len(data)-len(pieces)*checkPiece > checkPiece {
		pieces = append(pieces, data[len(pieces)*checkPiece:][:checkPiece])
	}
	pieces = append(pieces, data[len(pieces)*checkPiece:])
	var acc uint64
	for _, p := range pieces {
		acc = (acc ^ xxh3.Hash(p)) * 0x9E3779B97F4A7C15
	}
	return (acc ^ uint64(len(data))) * 0x9E3779B97F4A7C15
}

// TestCheckedDigestParts feeds buffers in parts of every kind (within a
// piece, across pieces, side by side with another buffer of another
// length) and compares with HashChecked.
func TestCheckedDigestParts(t *testing.T) {
	data := make([]byte, 4*checkPiece+77)
	rand.NewChaCha8([32]byte{5}).Read(data)
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 300 {
		a := data[:r.IntN(len(data)+1)]
		b := data[r.IntN(len(data)):]
		var da, db CheckedDigest
		da.Reset(a)
		db.Reset(b)
		for ra, rb := len(a), len(b); ra > 0 || rb > 0; {
			n := min(r.IntN(3*checkPiece/2)+1, ra, rb)
			switch {
			case n > 0 && r.IntN(3) > 0:
				WriteChecked2(&da, n, &db, n)
				ra, rb = ra-n, rb-n
			case ra > 0:
				n = min(ra, r.IntN(checkPiece)+1)
				da.Write(n)
				ra -= n
			default:
				n = min(rb, r.IntN(checkPiece)+1)
				db.Write(n)
				rb -= n
			}
		}
		ida, suma := da.Sum()
		idb, sumb := db.Sum()
		wa, wsa := HashChecked(a)
		wb, wsb := HashChecked(b)
		if ida != wa || suma != wsa || idb != wb || sumb != wsb {
			t.Fatalf("trial %d: parts of %d and %d bytes differ from HashChecked", trial, len(a), len(b))
		}
	}
}
