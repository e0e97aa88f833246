package repo

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// goSourceText returns up to n bytes of Go source code from GOROOT, the
// kind of text the benchmark corpus is made of.
func goSourceText(t testing.TB, n int) []byte {
	t.Helper()
	var out []byte
	root := filepath.Join(runtime.GOROOT(), "src")
	errStop := fs.SkipAll
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || !strings.HasSuffix(p, ".go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, b...)
		if len(out) >= n {
			return errStop
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < n {
		t.Fatalf("only %d bytes of Go source under %s", len(out), root)
	}
	return out[:n]
}

// TestCompressedFramesReadByPureGoDecoder: whatever engine this build
// compresses with, every mode's frames decode with the pure-Go decoder
// (the one restic uses), for sizes around the block and bound edges, and
// appendCompressed keeps what dst already holds.
func TestCompressedFramesReadByPureGoDecoder(t *testing.T) {
	text := goSourceText(t, 3<<20)
	rnd := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{1, 2}).Read(rnd)
	kinds := map[string][]byte{"text": text, "random": rnd, "zeros": make([]byte, 3<<20)}
	sizes := []int{1, 100, 4096, 128<<10 - 1, 128 << 10, 128<<10 + 1, 1 << 20, 3 << 20}
	for _, mode := range []Compression{CompressionAuto, CompressionFastest, CompressionBetter, CompressionMax} {
		for kind, data := range kinds {
			for _, n := range sizes {
				if mode == CompressionMax && n > 128<<10+1 {
					continue // slow, and the same code path
				}
				src := data[:n]
				for _, dst := range [][]byte{nil, []byte("prefix"), make([]byte, 3, 3+compressBound(n))} {
					head := append([]byte(nil), dst...)
					out, err := appendCompressed(dst, src, mode)
					if err != nil {
						t.Fatalf("%v %s %d: %v", mode, kind, n, err)
					}
					if !bytes.Equal(out[:len(head)], head) {
						t.Fatalf("%v %s %d: prefix overwritten", mode, kind, n)
					}
					frame := out[len(head):]
					if len(frame) > compressBound(n) {
						t.Fatalf("%v %s %d: frame of %d bytes exceeds the bound %d", mode, kind, n, len(frame), compressBound(n))
					}
					got, err := decompress(nil, frame, n)
					if err != nil || !bytes.Equal(got, src) {
						t.Fatalf("%v %s %d: pure-Go decoder: %v", mode, kind, n, err)
					}
					got, err = decompress(make([]byte, n), frame, n)
					if err != nil || !bytes.Equal(got, src) {
						t.Fatalf("%v %s %d: decompress: %v", mode, kind, n, err)
					}
				}
			}
		}
	}
}

// TestDecompressCheckRejects: the verification decoder refuses a frame
// whose size differs from the expected one and a damaged frame.
func TestDecompressCheckRejects(t *testing.T) {
	src := goSourceText(t, 256<<10)
	frame, err := appendCompressed(nil, src, CompressionAuto)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decompress(make([]byte, len(src)+1), frame, len(src)+1); err == nil {
		t.Fatal("frame of 256 KiB accepted as 256 KiB + 1")
	}
	if _, err := decompress(make([]byte, len(src)), frame, len(src)-1); err == nil {
		t.Fatal("frame of 256 KiB accepted as 256 KiB - 1")
	}
	bad := append([]byte(nil), frame...)
	bad[len(bad)/2] ^= 0x40
	if got, err := decompress(make([]byte, len(src)), bad, len(src)); err == nil && bytes.Equal(got, src) {
		t.Fatal("damaged frame decoded to the original")
	}
	if _, err := decompress(make([]byte, len(src)), frame[:len(frame)-7], len(src)); err == nil {
		t.Fatal("truncated frame accepted")
	}
}

// TestAutoNoLargerThanPureGoDefault: the default mode stores Go source no
// larger than the pure-Go encoder's default level with restic's settings
// (the repository-size target of the performance issue), in 1 MiB blobs.
func TestAutoNoLargerThanPureGoDefault(t *testing.T) {
	text := goSourceText(t, 4<<20)
	ref, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(false),
		zstd.WithWindowSize(512*1024), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	var ours, theirs int
	for off := 0; off < len(text); off += 1 << 20 {
		blob := text[off : off+1<<20]
		f, err := appendCompressed(nil, blob, CompressionAuto)
		if err != nil {
			t.Fatal(err)
		}
		ours += len(f)
		theirs += len(ref.EncodeAll(blob, nil))
	}
	t.Logf("engine %s: %d bytes, pure-Go default %d bytes (%.2f %%)", zstdEngine, ours, theirs, 100*float64(ours)/float64(theirs))
	if ours > theirs {
		t.Fatalf("auto stores 4 MiB of Go source in %d bytes, the pure-Go default in %d", ours, theirs)
	}
}

// TestAppendCompressedNoAllocs: with room for the bound, compressing a
// blob allocates nothing (the blob saver sizes its pooled buffer so).
func TestAppendCompressedNoAllocs(t *testing.T) {
	if zstdEngine == pureGoEngine {
		t.Skip("pure-Go build: the encoder manages its own buffers")
	}
	src := goSourceText(t, 1<<20)
	dst := make([]byte, 0, compressBound(len(src)))
	if _, err := appendCompressed(dst, src, CompressionAuto); err != nil { // warm a context
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := appendCompressed(dst, src, CompressionAuto); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("%.1f allocations per 1 MiB blob", allocs)
	}
}

// TestCompressConcurrent: many goroutines compress and verify at once
// through the shared context free list (each context is used by one
// goroutine at a time; under -race this checks the list's hand-over), and
// every frame decodes to its own input.
func TestCompressConcurrent(t *testing.T) {
	text := goSourceText(t, 2<<20)
	const workers, rounds = 8, 12
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func(w int) {
			for r := 0; r < rounds; r++ {
				off := (w*rounds + r) * 4096 % (len(text) - 256<<10)
				src := text[off : off+128<<10+w*1000+r]
				frame, err := appendCompressed(nil, src, CompressionAuto)
				if err == nil {
					var got []byte
					if got, err = decompress(make([]byte, len(src)), frame, len(src)); err == nil && !bytes.Equal(got, src) {
						err = fmt.Errorf("worker %d round %d: frame decodes to other data", w, r)
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzDecompressEngines feeds arbitrary data and sizes to both decoders
// check and restore may use (libzstd with cgo, the pure-Go one): libzstd
// must never return other than exactly the size asked for, and when both
// accept the data they must agree on every byte. (The plaintext's SHA-256
// is compared with the blob's ID after either, so a decoder that accepts
// data the other refuses cannot let wrong content through.)
func FuzzDecompressEngines(f *testing.F) {
	// small seeds: the engine minimises every new input byte by byte
	text := goSourceText(f, 5000)
	for _, n := range []int{1, 100, 5000} {
		frame, err := appendCompressed(nil, text[:n], CompressionAuto)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame, uint32(n))
		f.Add(frame[:len(frame)/2], uint32(n))
		// restic's encoder, with a checksum
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
		f.Add(enc.EncodeAll(text[:n], nil), uint32(n))
		f.Add(append(frame, frame...), uint32(2*n))
	}
	f.Add([]byte("not zstd at all"), uint32(15))
	f.Fuzz(func(t *testing.T, data []byte, want uint32) {
		n := int(want%(256<<10)) + 1
		c, cerr := decompressSized(make([]byte, n, n+64), data, n)
		g, gerr := decompressGo(nil, data, n)
		if cerr == nil && len(c) != n {
			t.Fatalf("decompressSized returned %d bytes for %d", len(c), n)
		}
		if gerr == nil && len(g) != n {
			t.Fatalf("decompressGo returned %d bytes for %d", len(g), n)
		}
		if cerr == nil && gerr == nil && !bytes.Equal(c, g) {
			t.Fatal("the decoders accept the data but disagree on its content")
		}
		if (cerr == nil) != (gerr == nil) {
			t.Logf("only one decoder accepts the data: libzstd %v, pure Go %v", cerr, gerr)
		}
	})
}

// TestDecompressRefusesOversizedDeclaration: a frame header that declares
// far more content than the blob is said to hold is refused before the
// pure-Go decoder allocates for it (FuzzDecompressEngines found 37 bytes
// claiming 2.8 GB).
func TestDecompressRefusesOversizedDeclaration(t *testing.T) {
	src := goSourceText(t, 5000)
	frame, err := appendCompressed(nil, src, CompressionAuto)
	if err != nil {
		t.Fatal(err)
	}
	// the same frame, its content size field rewritten to 2.8 GB
	var h zstd.Header
	if err := h.Decode(frame); err != nil || !h.HasFCS {
		t.Fatalf("test frame has no content size (%v)", err)
	}
	bomb := append([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x90, 0x4f, 0xc9, 0xa0, 0xc1, 0xa7}, make([]byte, 27)...)
	for _, want := range []int{5000, 0} {
		_, err := decompressGo(nil, bomb, want)
		if err == nil || !strings.Contains(err.Error(), "declares") {
			t.Errorf("want %d: %v, want a refusal naming the declared size", want, err)
		}
	}
	if _, err := decompressGo(nil, frame, len(src)); err != nil {
		t.Errorf("a frame of the right size: %v", err)
	}
}
