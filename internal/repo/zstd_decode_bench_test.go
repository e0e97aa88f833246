package repo

import (
	"testing"
)

// BenchmarkDecompress decodes 1 MiB frames of Go source (auto
// compression), as check and restore do for most blobs of the benchmark
// corpus: "go" is the pure-Go decoder, "libzstd" decompressSized (the
// same in builds without cgo).
func BenchmarkDecompress(b *testing.B) {
	src := goSourceText(b, 1<<20)
	frame, err := appendCompressed(nil, src, CompressionAuto)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, len(src)+64)
	for _, c := range []struct {
		name string
		f    func(dst, src []byte, want int) ([]byte, error)
	}{{"go", decompressGo}, {"libzstd", decompressSized}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			for i := 0; i < b.N; i++ {
				if _, err := c.f(dst, frame, len(src)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
