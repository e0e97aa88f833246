package crypto

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/scrypt"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSalsa208Vector checks the Salsa20/8 core against RFC 7914 section 8.
func TestSalsa208Vector(t *testing.T) {
	in := unhex(t, `
		7e 87 9a 21 4f 3e c9 86 7c a9 40 e6 41 71 8f 26
		ba ee 55 5b 8c 61 c1 b5 0d f8 46 11 6d cd 3b 1d
		ee 24 f3 19 df 9b 3d 85 14 12 1e 4b 5a c5 aa 32
		76 02 1d 29 09 c7 48 29 ed eb c6 8d b8 b8 c2 5e`)
	want := unhex(t, `
		a4 1f 85 9c 66 08 cc 99 3b 81 ca cb 02 0c ef 05
		04 4b 21 81 a2 fd 33 7d fd 7b 1c 63 96 68 2f 29
		b4 39 31 68 e3 c9 e6 bc fe 6b c5 b7 a0 6d 96 ba
		e4 24 cc 10 2c 91 74 5c 24 ad 67 3d c7 61 8f 81`)
	// salsaXOR computes Salsa20/8(x xor in); split the input between x and
	// in so the xor is exercised too.
	var x, mask, out [16]uint32
	for i := range x {
		mask[i] = 0x9e3779b9 * uint32(i+1)
		x[i] = binary.LittleEndian.Uint32(in[4*i:]) ^ mask[i]
	}
	salsaXOR(&x, &mask, &out)
	if x != out {
		t.Fatalf("salsaXOR: state %x and output %x differ", x, out)
	}
	got := make([]byte, 64)
	for i, w := range out {
		binary.LittleEndian.PutUint32(got[4*i:], w)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Salsa20/8 core:\n got %x\nwant %x", got, want)
	}
}

// rfc7914Vectors are the scrypt test vectors of RFC 7914 section 12.
var rfc7914Vectors = []struct {
	password, salt string
	n, r, p        int
	want           string
}{
	{"", "", 16, 1, 1, `
		77 d6 57 62 38 65 7b 20 3b 19 ca 42 c1 8a 04 97
		f1 6b 48 44 e3 07 4a e8 df df fa 3f ed e2 14 42
		fc d0 06 9d ed 09 48 f8 32 6a 75 3a 0f c8 1f 17
		e8 d3 e0 fb 2e 0d 36 28 cf 35 e2 0c 38 d1 89 06`},
	{"password", "NaCl", 1024, 8, 16, `
		fd ba be 1c 9d 34 72 00 78 56 e7 19 0d 01 e9 fe
		7c 6a d7 cb c8 23 78 30 e7 73 76 63 4b 37 31 62
		2e af 30 d9 2e 22 a3 88 6f f1 09 27 9d 98 30 da
		c7 27 af b9 4a 83 ee 6d 83 60 cb df a2 cc 06 40`},
	{"pleaseletmein", "SodiumChloride", 16384, 8, 1, `
		70 23 bd cb 3a fd 73 48 46 1c 06 cd 81 fd 38 eb
		fd a8 fb ba 90 4f 8e 3e a9 b5 43 f6 54 5d a1 f2
		d5 43 29 55 61 3f 0f cf 62 d4 97 05 24 2a 9a f9
		e6 1e 85 dc 0d 65 1e 40 df cf 01 7b 45 57 58 87`},
	{"pleaseletmein", "SodiumChloride", 1048576, 8, 1, `
		21 01 cb 9b 6a 51 1a ae ad db be 09 cf 70 f8 81
		ec 56 8d 57 4a 2f fd 4d ab e5 ee 98 20 ad aa 47
		8e 56 fd 8f 4b a5 d0 9f fa 1c 6d 92 7c 40 f4 c3
		37 30 40 49 e8 a9 52 fb cb f4 5c 6f a7 7a 41 a4`},
}

func TestScryptRFC7914Vectors(t *testing.T) {
	for _, v := range rfc7914Vectors {
		t.Run(fmt.Sprintf("N=%d,r=%d,p=%d", v.n, v.r, v.p), func(t *testing.T) {
			if v.n > 16384 && (testing.Short() || raceEnabled) {
				t.Skip("needs 1 GiB of memory and seconds of CPU; skipped with -short and -race")
			}
			got, err := Scrypt([]byte(v.password), []byte(v.salt), v.n, v.r, v.p, 64)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, v.want); !bytes.Equal(got, want) {
				t.Fatalf("got  %x\nwant %x", got, want)
			}
		})
	}
}

// withGOMAXPROCS runs f with runtime.GOMAXPROCS set to n, so both the
// sequential path (1) and the parallel path with more lanes than workers are
// exercised whatever the machine's core count.
func withGOMAXPROCS(n int, f func()) {
	old := runtime.GOMAXPROCS(n)
	defer runtime.GOMAXPROCS(old)
	f()
}

func checkAgainstXCrypto(t *testing.T, pw, salt []byte, n, r, p, keyLen int) {
	t.Helper()
	want, err := scrypt.Key(pw, salt, n, r, p, keyLen)
	if err != nil {
		t.Fatalf("x/crypto N=%d r=%d p=%d keyLen=%d: %v", n, r, p, keyLen, err)
	}
	got, err := Scrypt(pw, salt, n, r, p, keyLen)
	if err != nil {
		t.Fatalf("Scrypt N=%d r=%d p=%d keyLen=%d: %v", n, r, p, keyLen, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("N=%d r=%d p=%d keyLen=%d pw=%x salt=%x GOMAXPROCS=%d:\n got %x\nwant %x",
			n, r, p, keyLen, pw, salt, runtime.GOMAXPROCS(0), got, want)
	}
}

// TestScryptMatchesXCrypto cross-checks random parameter combinations
// against golang.org/x/crypto/scrypt with 1, 2 and 3 workers, covering p=1,
// p=5, p above the worker count and r=1.
func TestScryptMatchesXCrypto(t *testing.T) {
	rng := rand.New(rand.NewPCG(7914, 1))
	randBytes := func(max int) []byte {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	ns := []int{2, 4, 16, 64, 256, 1024}
	rs := []int{1, 1, 2, 3, 8}
	ps := []int{1, 2, 3, 5, 7}
	keyLens := []int{1, 16, 32, 33, 64, 100}
	for _, procs := range []int{1, 2, 3} {
		withGOMAXPROCS(procs, func() {
			// Fixed combinations that must always be covered.
			for _, c := range [][3]int{{16, 1, 1}, {16, 1, 5}, {64, 8, 5}, {32, 2, 2*procs + 1}, {2, 1, 1}} {
				checkAgainstXCrypto(t, []byte("pw"), []byte("salt"), c[0], c[1], c[2], 64)
			}
			for range 25 {
				n := ns[rng.IntN(len(ns))]
				r := rs[rng.IntN(len(rs))]
				p := ps[rng.IntN(len(ps))]
				if n*r*p > 1024*8*2 { // keep -race runs quick
					n = 64
				}
				checkAgainstXCrypto(t, randBytes(40), randBytes(80), n, r, p, keyLens[rng.IntN(len(keyLens))])
			}
		})
	}
}

func TestLanePlan(t *testing.T) {
	for _, c := range []struct{ n, r, p, procs, workers, stride int }{
		{1 << 15, 8, 6, 2, 2, 2},      // key file, 2 cores: two half-memory lanes
		{1 << 15, 8, 6, 1, 1, 1},      // GOMAXPROCS=1: sequential, full lanes
		{1 << 15, 8, 1, 8, 1, 1},      // one lane
		{1 << 15, 8, 6, 8, 6, 6},      // 8 cores: six lanes at once, stride 6
		{1 << 18, 1, 3, 16, 3, 3},     // restic's N=2^18, r=1: 32 MiB lanes
		{1 << 10, 8, 100, 4, 4, 1},    // 1 MiB lanes fit the floor: no stride
		{1 << 15, 8, 100, 64, 15, 15}, // 7 rounds either way; stride 15 is cheaper
		{2, 1, 5, 4, 3, 1},            // 2 rounds with 3 or 4 workers: fewer goroutines
	} {
		w, k := lanePlan(c.n, c.r, c.p, c.procs)
		if w != c.workers || k != c.stride {
			t.Errorf("lanePlan(N=%d, r=%d, p=%d, procs=%d) = %d workers, stride %d; want %d, %d",
				c.n, c.r, c.p, c.procs, w, k, c.workers, c.stride)
		}
		if lane := uint64(128 * c.r * c.n); uint64(w)*(lane/uint64(k)) > max(lane, scratchFloor) {
			t.Errorf("lanePlan(N=%d, r=%d, p=%d, procs=%d): %d lanes of stride %d exceed the budget", c.n, c.r, c.p, c.procs, w, k)
		}
	}
}

// TestStridedLaneMatches checks that a lane keeping only every k-th V block
// computes exactly what the full lane does, for strides that divide N and
// strides that do not.
func TestStridedLaneMatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	for _, n := range []int{2, 4, 16, 64, 256} {
		for _, r := range []int{1, 2, 3} {
			in := make([]byte, 128*r)
			for i := range in {
				in[i] = byte(rng.Uint32())
			}
			full := newLane(n, r, 1)
			want := bytes.Clone(in)
			full.romix(want)
			full.release()
			for _, k := range []int{2, 3, 4, 5, 7, 16, 300} {
				ln := newLane(n, r, k)
				got := bytes.Clone(in)
				ln.romix(got)
				ln.romix(got) // a lane is reusable
				ln.release()
				again := bytes.Clone(want)
				full2 := newLane(n, r, 1)
				full2.romix(again)
				full2.release()
				if !bytes.Equal(got, again) {
					t.Fatalf("N=%d r=%d stride %d: strided lane differs from the full lane", n, r, k)
				}
			}
		}
	}
}

func TestScryptInvalidParams(t *testing.T) {
	for _, c := range []struct{ n, r, p, keyLen int }{
		{0, 1, 1, 32}, {1, 1, 1, 32}, {3, 1, 1, 32}, {1000, 1, 1, 32}, {-16, 1, 1, 32},
		{16, 0, 1, 32}, {16, -1, 1, 32}, {16, 1, 0, 32}, {16, 1, -1, 32},
		{16, 1, 1, 0}, {16, 1, 1, -1},
		{16, 1 << 15, 1 << 15, 32}, // r*p = 2^30
		{16, 1, 1 << 30, 32},
		{1 << 30, 1 << 27, 1, 32}, // 128·r·N overflows an int on every platform
	} {
		if _, err := Scrypt([]byte("pw"), []byte("salt"), c.n, c.r, c.p, c.keyLen); err == nil {
			t.Errorf("N=%d r=%d p=%d keyLen=%d: no error", c.n, c.r, c.p, c.keyLen)
		}
	}
}

// TestKDFMatchesXCrypto checks that KDF, which uses Scrypt, derives the same
// key restic (and x/crypto) does for a key file's parameters.
func TestKDFMatchesXCrypto(t *testing.T) {
	salt := bytes.Repeat([]byte{0xa5}, SaltSize)
	for _, p := range []Params{{N: 1024, R: 8, P: 3}, {N: 4096, R: 1, P: 1}, {N: 256, R: 8, P: 5}} {
		k, err := KDF(p, salt, "correct horse")
		if err != nil {
			t.Fatal(err)
		}
		want, err := scrypt.Key([]byte("correct horse"), salt, p.N, p.R, p.P, 64)
		if err != nil {
			t.Fatal(err)
		}
		wk, err := FromBytes(want)
		if err != nil {
			t.Fatal(err)
		}
		if k.EncryptionKey != wk.EncryptionKey || k.MAC != wk.MAC {
			t.Fatalf("%+v: KDF differs from x/crypto scrypt", p)
		}
	}
}

func FuzzScryptMatchesXCrypto(f *testing.F) {
	f.Add([]byte(""), []byte(""), uint8(4), uint8(1), uint8(1), uint8(64))
	f.Add([]byte("password"), []byte("NaCl"), uint8(6), uint8(8), uint8(5), uint8(64))
	f.Add([]byte("pw"), bytes.Repeat([]byte{1}, 64), uint8(1), uint8(3), uint8(7), uint8(1))
	f.Fuzz(func(t *testing.T, pw, salt []byte, logN, r, p, keyLen uint8) {
		n := 1 << (1 + int(logN)%8) // 2..256
		rr := 1 + int(r)%4
		pp := 1 + int(p)%6
		kl := 1 + int(keyLen)%128
		checkAgainstXCrypto(t, pw, salt, n, rr, pp, kl)
	})
}

// TestCalibrateParams checks the arithmetic that turns one lane's sequential
// cost into a lane count, using synthetic costs (no timing involved).
func TestCalibrateParams(t *testing.T) {
	for _, c := range []struct {
		lane, target time.Duration
		wantP        int
	}{
		{100 * time.Millisecond, 500 * time.Millisecond, 5},
		{94 * time.Millisecond, 500 * time.Millisecond, 6},
		{1 * time.Second, 500 * time.Millisecond, 1},
		{0, 500 * time.Millisecond, 64},
		{time.Microsecond, 500 * time.Millisecond, 64},
		{-time.Second, 500 * time.Millisecond, 64},
	} {
		got := calibrateParams(DefaultParams, c.target, c.lane)
		if got.N != DefaultParams.N || got.R != DefaultParams.R || got.P != c.wantP {
			t.Errorf("lane=%v target=%v: got %+v, want P=%d", c.lane, c.target, got, c.wantP)
		}
		if got.P < 64 && time.Duration(got.P)*c.lane < c.target {
			t.Errorf("lane=%v target=%v: P=%d gives less sequential work than the target", c.lane, c.target, got.P)
		}
	}
	if got := calibrateParams(Params{N: 1024, R: 1, P: 7}, time.Millisecond, time.Second); got.P != 7 {
		t.Errorf("calibration lowered P below the floor: %+v", got)
	}
}

// TestCalibrateFloor runs the real calibration with a target any lane
// exceeds, so the result must be exactly the floor, DefaultParams.
func TestCalibrateFloor(t *testing.T) {
	p, err := Calibrate(time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	if p != DefaultParams {
		t.Fatalf("Calibrate(1ns) = %+v, want %+v", p, DefaultParams)
	}
}

// TestLaneCost checks that the single-lane measurement Calibrate relies on
// runs and reports a positive duration.
func TestLaneCost(t *testing.T) {
	d := laneCost(Params{N: 256, R: 8, P: 1}, 2)
	if d <= 0 {
		t.Fatalf("laneCost = %v", d)
	}
}

// benchDerive runs derive b.N times and, besides wall time (ns/op), reports
// the CPU time of the whole process per derivation (cpu-ns/op): parallel
// lanes must cut the former without raising the latter. CPU time is also far
// less disturbed than wall time by other load on a shared machine.
func benchDerive(b *testing.B, derive func() ([]byte, error)) {
	c0, ok := processCPUTime()
	n := 0
	for b.Loop() {
		if _, err := derive(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	if c1, ok1 := processCPUTime(); ok && ok1 && n > 0 {
		b.ReportMetric(float64(c1-c0)/float64(n), "cpu-ns/op")
	}
}

// BenchmarkKDF compares one key-file derivation (N=2^15, r=8, p=5) done by
// x/crypto, which runs the lanes one after another, with Scrypt, which runs
// them on GOMAXPROCS goroutines.
func BenchmarkKDF(b *testing.B) {
	const n, r, p = 1 << 15, 8, 5
	pw := []byte("benchmark password")
	salt := bytes.Repeat([]byte{7}, SaltSize)
	b.Run("xcrypto", func(b *testing.B) {
		benchDerive(b, func() ([]byte, error) { return scrypt.Key(pw, salt, n, r, p, 64) })
	})
	b.Run("parallel", func(b *testing.B) {
		benchDerive(b, func() ([]byte, error) { return Scrypt(pw, salt, n, r, p, 64) })
	})
	// The lanes of the plan Scrypt picks on GOMAXPROCS=2 (strided), and
	// full lanes one after another, on the calling goroutine: the
	// per-lane price of the time-memory trade-off.
	for _, k := range []int{1, 2} {
		b.Run(fmt.Sprintf("lane-stride%d", k), func(b *testing.B) {
			ln := newLane(n, r, k)
			defer ln.release()
			blk := make([]byte, 128*r)
			for b.Loop() {
				ln.romix(blk)
			}
		})
	}
}

// BenchmarkScryptLane compares the single-lane (p=1, so sequential in both)
// speed of x/crypto and Scrypt at the key-file parameters.
func BenchmarkScryptLane(b *testing.B) {
	const n, r = 1 << 15, 8
	pw := []byte("benchmark password")
	salt := bytes.Repeat([]byte{7}, SaltSize)
	b.Run("xcrypto", func(b *testing.B) {
		benchDerive(b, func() ([]byte, error) { return scrypt.Key(pw, salt, n, r, 1, 64) })
	})
	b.Run("cairn", func(b *testing.B) {
		benchDerive(b, func() ([]byte, error) { return Scrypt(pw, salt, n, r, 1, 64) })
	})
}
