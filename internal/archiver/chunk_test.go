package archiver

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/restic/chunker"

	"github.com/cairn-backup/cairn/internal/core"
)

// partialReaderAt returns at most max bytes per call (without an error,
// which the io.ReaderAt contract allows only at the end; the chunk reader
// must cope anyway).
type partialReaderAt struct {
	r   io.ReaderAt
	max int
}

func (p partialReaderAt) ReadAt(b []byte, off int64) (int, error) {
	if len(b) > p.max {
		b = b[:p.max]
	}
	n, err := p.r.ReadAt(b, off)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// readChunks runs a chunk reader to the end and returns copies of the
// chunks, how many lay in holes, and how many came without their ID
// (deferIDs), which it computes to check them.
func readChunks(t testing.TB, cr *chunkReader) (chunks [][]byte, zero, deferred int) {
	t.Helper()
	for {
		c, err := cr.next()
		if err == io.EOF {
			return chunks, zero, deferred
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.needID {
			// left to the caller only when asked for and without hints
			if !cr.deferIDs || cr.hintAt != nil || c.zero || !c.id.IsNull() {
				t.Fatalf("chunk %d: ID deferred (deferIDs %v, hints %v, zero %v, id %v)",
					len(chunks), cr.deferIDs, cr.hintAt != nil, c.zero, c.id)
			}
			c.id, c.sum = chunkID(c.data)
			deferred++
		}
		if c.id != core.Hash(c.data) {
			t.Fatalf("chunk %d: wrong ID", len(chunks))
		}
		if c.sum != core.CheckSum(c.data) {
			t.Fatalf("chunk %d: wrong check sum", len(chunks))
		}
		if c.zero {
			zero++
		}
		chunks = append(chunks, bytes.Clone(c.data))
		c.release()
	}
}

func sameChunks(t *testing.T, name string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d chunks, want %d", name, len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s: chunk %d differs (len %d vs %d)", name, i, len(got[i]), len(want[i]))
		}
	}
}

func testData(seed uint64, n int) []byte {
	rnd := rand.New(rand.NewPCG(seed, 2))
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	if n > 11<<20 {
		copy(data[5<<20:], make([]byte, 6<<20)) // a long zero run
	}
	if n > 23<<20 {
		copy(data[20<<20:], bytes.Repeat([]byte("abc"), 1<<20))
	}
	return data
}

// TestChunkReaderMatchesChunker: same boundaries as the reference chunker,
// whatever the read pattern, with zero runs and random data.
func TestChunkReaderMatchesChunker(t *testing.T) {
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		t.Fatal(err)
	}
	data := testData(1, 24<<20)
	cr := mustChunkReader(t, pol)
	for _, size := range []int{0, 1, 100, 600 << 10, 9 << 20, len(data)} {
		src := data[:size]
		small := data[:min(size, 2<<20)]
		cases := []struct {
			name string
			src  []byte
			rd   io.ReaderAt
		}{
			{"whole", src, bytes.NewReader(src)},
			{"partial-reads", src, partialReaderAt{bytes.NewReader(src), 10007}},
			{"tiny-reads", small, partialReaderAt{bytes.NewReader(small), 7}},
		}
		for _, tc := range cases {
			for _, deferIDs := range []bool{false, true} {
				cr.reset(tc.rd, int64(len(tc.src)), false, nil)
				cr.deferIDs = deferIDs
				got, _, deferred := readChunks(t, cr)
				name := fmt.Sprintf("%s size %d deferIDs %v", tc.name, size, deferIDs)
				sameChunks(t, name, got, referenceChunks(t, tc.src, pol))
				want := 0
				if deferIDs {
					want = len(got)
				}
				if deferred != want {
					t.Fatalf("%s: %d of %d chunks came without their ID, want %d", name, deferred, len(got), want)
				}
			}
		}
	}
}

// TestChunkReaderSparseFile: holes are chunked without reading them, with
// the boundaries and contents of the reference chunker over the same bytes.
func TestChunkReaderSparseFile(t *testing.T) {
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(5, 6))
	path := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 40 << 20
	// data islands of 4 KiB .. 3 MiB between holes of 4 KiB .. 12 MiB,
	// including a hole at the start and one at the end
	for off := int64(rnd.IntN(3 << 20)); off < size-(4<<20); {
		n := 4096 * (1 + rnd.IntN(768))
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32() | 1)
		}
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		off += int64(n) + 4096*int64(1+rnd.IntN(3072))
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cr := mustChunkReader(t, pol)
	cr.reset(f, size, true, nil)
	cr.deferIDs = true // chunks cut in holes still come with their (cached) ID
	got, zero, _ := readChunks(t, cr)
	sameChunks(t, "sparse", got, referenceChunks(t, want, pol))
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err == nil && st.Blocks*512 < size/2 {
		if zero == 0 {
			t.Fatal("a sparse file produced no chunk from its holes")
		}
		t.Logf("%d of %d chunks cut in holes without reading", zero, len(got))
	} else {
		t.Logf("the temp file system does not keep holes; content checked only")
	}
	// the same file read as if it had no holes gives the same chunks
	cr.reset(f, size, false, nil)
	plain, _, _ := readChunks(t, cr)
	sameChunks(t, "sparse read plainly", plain, got)
}

// TestChunkReaderHints: with the parent version's chunks as hints the
// boundaries are exactly the reference chunker's for the new content,
// whatever changed, and unchanged stretches are matched by hash instead of
// the rolling hash.
func TestChunkReaderHints(t *testing.T) {
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		t.Fatal(err)
	}
	old := testData(7, 24<<20)
	oldChunks := referenceChunks(t, old, pol)
	var hints []hint
	for _, c := range oldChunks[:len(oldChunks)-1] {
		hints = append(hints, hint{id: core.Hash(c), size: len(c)})
	}
	rnd := rand.New(rand.NewPCG(9, 9))
	ins := make([]byte, 1024)
	for i := range ins {
		ins[i] = byte(rnd.Uint32())
	}
	mid := len(old)/2 + 123
	cases := []struct {
		name     string
		data     []byte
		wantHits bool
	}{
		{"unchanged", old, true},
		{"insert-middle", append(append(bytes.Clone(old[:mid]), ins...), old[mid:]...), true},
		{"change-first-byte", append([]byte{old[0] ^ 1}, old[1:]...), true},
		{"truncated", old[:len(old)-3<<20], true},
		{"appended", append(bytes.Clone(old), ins...), true},
		{"shrunk-to-one-chunk", old[:700<<10], false},
		{"different", testData(8, 12<<20), false},
	}
	cr := mustChunkReader(t, pol)
	for _, tc := range cases {
		for _, hs := range [][]hint{hints, shuffledHints(hints, rnd)} {
			cr.reset(partialReaderAt{bytes.NewReader(tc.data), 300000}, int64(len(tc.data)), false, hs)
			cr.deferIDs = true // ignored with hints: resynchronising needs the IDs
			got, _, _ := readChunks(t, cr)
			sameChunks(t, tc.name, got, referenceChunks(t, tc.data, pol))
		}
		cr.reset(bytes.NewReader(tc.data), int64(len(tc.data)), false, hints)
		_, _, _ = readChunks(t, cr)
		if tc.wantHits && cr.hintHits == 0 {
			t.Fatalf("%s: no chunk was matched through the hints", tc.name)
		}
		t.Logf("%s: %d of %d parent chunks matched by hash", tc.name, cr.hintHits, len(hints))
	}
	// hints with wrong sizes or IDs never change the result
	bad := append([]hint(nil), hints...)
	for i := range bad {
		if i%3 == 0 {
			bad[i].size += 17
		}
		if i%5 == 0 {
			bad[i].id[0] ^= 1
		}
	}
	cr.reset(bytes.NewReader(old), int64(len(old)), false, bad)
	got, _, _ := readChunks(t, cr)
	sameChunks(t, "bad hints", got, oldChunks)
}

func shuffledHints(h []hint, rnd *rand.Rand) []hint {
	out := append([]hint(nil), h...)
	rnd.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func joinChunks(cs [][]byte) []byte { return bytes.Join(cs, nil) }

func referenceChunks(t *testing.T, data []byte, pol chunker.Pol) [][]byte {
	ch := chunker.New(bytes.NewReader(data), pol)
	var out [][]byte
	for {
		c, err := ch.Next(nil)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(c.Data))
	}
}

func BenchmarkChunkReader(b *testing.B) {
	pol, _ := chunker.RandomPolynomial()
	data := make([]byte, 64<<20)
	rnd := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	cr := mustChunkReader(b, pol)
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		cr.reset(bytes.NewReader(data), int64(len(data)), false, nil)
		for {
			c, err := cr.next()
			if err != nil {
				break
			}
			c.release()
		}
	}
}

func mustChunkReader(t testing.TB, pol chunker.Pol) *chunkReader {
	t.Helper()
	cr, err := newChunkReader(pol)
	if err != nil {
		t.Fatal(err)
	}
	return cr
}
