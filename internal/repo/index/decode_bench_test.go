package index

import (
	"testing"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

// BenchmarkDecode decodes an index file of 200 packs × 100 blobs (20,000
// entries, about the index of the standard benchmark corpus).
func BenchmarkDecode(b *testing.B) {
	f := &File{}
	n := 0
	for p := range 200 {
		pe := PackEntry{ID: core.Hash([]byte{byte(p), byte(p >> 8), 'p'})}
		for i := range 100 {
			n++
			pe.Blobs = append(pe.Blobs, pack.Blob{
				BlobHandle: core.BlobHandle{ID: core.Hash([]byte{byte(n), byte(n >> 8), byte(n >> 16)}), Type: core.DataBlob},
				Offset:     uint32(i * 1000), Length: 1000, UncompressedLength: 3000,
			})
		}
		f.Packs = append(f.Packs, pe)
	}
	buf, err := Encode(f)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(buf, false); err != nil {
			b.Fatal(err)
		}
	}
}
