package crypto

import (
	"encoding/binary"
	"math/big"
	"math/rand/v2"
	"testing"

	"golang.org/x/crypto/poly1305"
)

func (x uint130) big() *big.Int {
	b := new(big.Int).SetUint64(x.top)
	b.Lsh(b, 64).Or(b, new(big.Int).SetUint64(x.hi))
	return b.Lsh(b, 64).Or(b, new(big.Int).SetUint64(x.lo))
}

var p130 = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 130), big.NewInt(5))

// TestMulMod checks the scalar arithmetic against math/big, including
// operands at their bounds.
func TestMulMod(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	vals := []uint130{{0, 0, 0}, {1, 0, 0}, {^uint64(0), ^uint64(0), 3}, {^uint64(0), ^uint64(0), 7}, {p130lo, p130hi, p130top}}
	for range 2000 {
		vals = append(vals, uint130{r.Uint64(), r.Uint64(), r.Uint64() & 7})
	}
	for i, a := range vals {
		b := vals[(i*7+3)%len(vals)]
		got := fullyReduce(mulMod(a, b))
		want := new(big.Int).Mul(a.big(), b.big())
		want.Mod(want, p130)
		if got.big().Cmp(want) != 0 {
			t.Fatalf("%v·%v: got %v, want %v", a.big(), b.big(), got.big(), want)
		}
		if l := limbs(fullyReduce(a)); fromLimbs(l[0], l[1], l[2]).big().Cmp(fullyReduce(a).big()) != 0 {
			t.Fatalf("limbs of %v do not round-trip", a.big())
		}
	}
}

func checkPoly(t *testing.T, key *[32]byte, msg []byte) {
	t.Helper()
	var want, got [16]byte
	poly1305.Sum(&want, msg, key)
	polySum(&got, msg, key, powersFor(polyKeyR(key)))
	if got != want {
		t.Fatalf("%d bytes, key %x: tag %x, want %x", len(msg), key, got, want)
	}
}

// TestPolySum compares the vector Poly1305 with x/crypto's for lengths
// around every group boundary, random and extreme keys (all bits that the
// clamp leaves set) and extreme messages (all 0xFF: the largest limbs).
func TestPolySum(t *testing.T) {
	if !useIFMA {
		t.Skip("no AVX-512 IFMA on this CPU")
	}
	r := rand.New(rand.NewPCG(3, 4))
	msg := make([]byte, 1<<20+300)
	for i := range msg {
		msg[i] = byte(r.Uint32())
	}
	ones := make([]byte, 4096)
	for i := range ones {
		ones[i] = 0xFF
	}
	var keyMax [32]byte
	for i := range keyMax {
		keyMax[i] = 0xFF
	}
	for trial := range 300 {
		var key [32]byte
		binary.LittleEndian.PutUint64(key[0:], r.Uint64())
		binary.LittleEndian.PutUint64(key[8:], r.Uint64())
		binary.LittleEndian.PutUint64(key[16:], r.Uint64())
		binary.LittleEndian.PutUint64(key[24:], r.Uint64())
		if trial%10 == 0 {
			key = keyMax
		}
		n := vecMinLen + r.IntN(4000)
		if trial%3 == 0 {
			n = 128*(2+r.IntN(20)) + r.IntN(33) - 16
		}
		checkPoly(t, &key, msg[:n])
		checkPoly(t, &key, ones[:min(n, len(ones))])
	}
	var key [32]byte
	key[0] = 7
	checkPoly(t, &key, msg)
	checkPoly(t, &keyMax, msg)
}

// FuzzPolySum: any key and message give x/crypto's tag.
func FuzzPolySum(f *testing.F) {
	f.Add(make([]byte, 32), make([]byte, 300))
	f.Add([]byte("0123456789abcdef0123456789abcdef"), make([]byte, 1000))
	f.Fuzz(func(t *testing.T, k, msg []byte) {
		if len(k) < 32 || !useIFMA {
			return
		}
		var key [32]byte
		copy(key[:], k)
		checkPoly(t, &key, msg)
	})
}

func BenchmarkPoly1305(b *testing.B) {
	msg := make([]byte, 1<<20)
	var key [32]byte
	key[3] = 9
	pp := powersFor(polyKeyR(&key))
	var tag [16]byte
	b.Run("xcrypto", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			poly1305.Sum(&tag, msg, &key)
		}
	})
	b.Run("vector", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			polySum(&tag, msg, &key, pp)
		}
	})
}
