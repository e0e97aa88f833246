package archiver

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"

	"github.com/restic/chunker"
)

// TestChunkReaderMatchesChunker: same boundaries as the reference chunker,
// whatever the read pattern, with zero runs and random data.
func TestChunkReaderMatchesChunker(t *testing.T) {
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 40<<20)
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	copy(data[5<<20:], make([]byte, 6<<20)) // a long zero run
	copy(data[20<<20:], bytes.Repeat([]byte("abc"), 1<<20))
	for _, size := range []int{0, 1, 100, 600 << 10, 20 << 20, len(data)} {
		src := data[:size]
		small := data[:min(size, 2<<20)]
		cases := []struct {
			name string
			src  []byte
			rd   io.Reader
		}{
			{"whole", src, bytes.NewReader(src)},
			{"half-reads", src, iotest.HalfReader(bytes.NewReader(src))},
			{"one-byte-reads", small, iotest.OneByteReader(bytes.NewReader(small))},
		}
		for _, tc := range cases {
			want := referenceChunks(t, tc.src, pol)
			cr := newChunkReader(pol)
			cr.reset(tc.rd, pol)
			var got [][]byte
			for {
				c, err := cr.next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, bytes.Clone(c))
				putBuf(c)
			}
			if len(got) != len(want) {
				t.Fatalf("%s size %d: %d chunks, want %d", tc.name, size, len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("%s size %d: chunk %d differs (len %d vs %d)", tc.name, size, i, len(got[i]), len(want[i]))
				}
			}
		}
	}
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
	cr := newChunkReader(pol)
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		cr.reset(bytes.NewReader(data), pol)
		for {
			c, err := cr.next()
			if err != nil {
				break
			}
			putBuf(c)
		}
	}
}
