package sha256x

import (
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

// both runs f with the two-lane path (where the CPU has it) and without.
func both(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := useNI
	defer func() { useNI = saved }()
	for _, ni := range []bool{true, false} {
		if ni && !hasNI() {
			t.Log("no SHA-NI here: only the portable path is tested")
			continue
		}
		useNI = ni
		name := "portable"
		if ni {
			name = "sha-ni"
		}
		t.Run(name, f)
	}
}

// TestSum2 compares two messages hashed side by side with crypto/sha256 for every length pair around
// the block size and for long messages, in both argument orders.
func TestSum2(t *testing.T) {
	both(t, func(t *testing.T) {
		data := make([]byte, 1<<16+300)
		rand.NewChaCha8([32]byte{3}).Read(data)
		lens := []int{0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4096, 1<<16 + 17}
		for _, la := range lens {
			for _, lb := range lens {
				a, b := data[:la], data[300-min(300, lb%301):][:lb]
				sa, sb := sum2(a, b)
				if sa != sha256.Sum256(a) || sb != sha256.Sum256(b) {
					t.Fatalf("%d and %d bytes hashed side by side differ from crypto/sha256", la, lb)
				}
			}
		}
		// the same slice twice
		sa, sb := sum2(data, data)
		if want := sha256.Sum256(data); sa != want || sb != want {
			t.Fatal("one slice hashed twice side by side")
		}
	})
}

// TestStreams feeds two messages in random pieces through Write, Write2
// (with pieces of unequal length) and checks the digests at random points:
// partial blocks carried between calls must be neither lost nor repeated.
func TestStreams(t *testing.T) {
	both(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for trial := 0; trial < 200; trial++ {
			ma := make([]byte, r.IntN(5000))
			mb := make([]byte, r.IntN(5000))
			for i := range ma {
				ma[i] = byte(r.Uint32())
			}
			for i := range mb {
				mb[i] = byte(r.Uint32())
			}
			a, b := New(), New()
			var ia, ib int
			for ia < len(ma) || ib < len(mb) {
				na := min(len(ma)-ia, r.IntN(300))
				nb := min(len(mb)-ib, r.IntN(300))
				switch r.IntN(3) {
				case 0:
					a.Write(ma[ia : ia+na])
					nb = 0
				case 1:
					b.Write(mb[ib : ib+nb])
					na = 0
				default:
					Write2(a, ma[ia:ia+na], b, mb[ib:ib+nb])
				}
				ia += na
				ib += nb
				if r.IntN(4) == 0 {
					if a.Sum() != sha256.Sum256(ma[:ia]) || b.Sum() != sha256.Sum256(mb[:ib]) {
						t.Fatalf("trial %d: digest after %d/%d bytes differs", trial, ia, ib)
					}
				}
			}
			if a.Sum() != sha256.Sum256(ma) || b.Sum() != sha256.Sum256(mb) {
				t.Fatalf("trial %d: final digest differs", trial)
			}
			a.Reset()
			if a.Sum() != sha256.Sum256(nil) {
				t.Fatal("Reset does not start a new message")
			}
		}
	})
}

// sum2 returns the digests of a and b, hashed side by side.
func sum2(a, b []byte) (sa, sb [Size]byte) {
	da, db := New(), New()
	Write2(da, a, db, b)
	return da.Sum(), db.Sum()
}

func TestWrite2SameDigestPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	d := New()
	Write2(d, []byte("x"), d, []byte("y"))
}

// FuzzWrite2: two messages cut at fuzzed points hash like crypto/sha256.
func FuzzWrite2(f *testing.F) {
	f.Add([]byte("abc"), []byte(""), uint16(1), uint16(2))
	f.Add(make([]byte, 200), make([]byte, 129), uint16(64), uint16(63))
	f.Fuzz(func(t *testing.T, ma, mb []byte, ca, cb uint16) {
		a, b := New(), New()
		ka, kb := min(int(ca), len(ma)), min(int(cb), len(mb))
		Write2(a, ma[:ka], b, mb[:kb])
		Write2(b, mb[kb:], a, ma[ka:])
		if a.Sum() != sha256.Sum256(ma) || b.Sum() != sha256.Sum256(mb) {
			t.Fatal("digest differs from crypto/sha256")
		}
		sa, sb := sum2(ma, mb)
		if sa != sha256.Sum256(ma) || sb != sha256.Sum256(mb) {
			t.Fatal("whole messages side by side differ from crypto/sha256")
		}
	})
}

// BenchmarkSum2 compares hashing two 1 MiB messages with crypto/sha256
// one after the other and side by side (the reported rate counts both).
//
//	go test -run '^$' -bench . ./internal/sha256x
func BenchmarkSum2(b *testing.B) {
	x := make([]byte, 1<<20)
	y := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{1}).Read(x)
	rand.NewChaCha8([32]byte{2}).Read(y)
	b.Run("crypto-sha256-twice", func(b *testing.B) {
		b.SetBytes(2 << 20)
		for b.Loop() {
			sha256.Sum256(x)
			sha256.Sum256(y)
		}
	})
	b.Run("sum2", func(b *testing.B) {
		b.SetBytes(2 << 20)
		for b.Loop() {
			sum2(x, y)
		}
	})
	b.Run("write-one", func(b *testing.B) {
		b.SetBytes(1 << 20)
		d := New()
		for b.Loop() {
			d.Reset()
			d.Write(x)
			d.Sum()
		}
	})
}
