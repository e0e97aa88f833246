package pack

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
)

func buildPack(t testing.TB, key *crypto.Key, n int, rnd *rand.Rand) ([]byte, []Blob, [][]byte) {
	w := NewWriter(key, nil)
	var plains [][]byte
	for i := 0; i < n; i++ {
		pt := make([]byte, rnd.IntN(5000))
		for j := range pt {
			pt[j] = byte(rnd.Uint32())
		}
		plains = append(plains, pt)
		typ := core.DataBlob
		if i%3 == 0 {
			typ = core.TreeBlob
		}
		var ul uint32
		if i%2 == 0 && len(pt) > 0 {
			ul = uint32(len(pt)) + 7 // pretend compression; header only
		}
		if err := w.Add(core.BlobHandle{ID: core.Hash(pt), Type: typ}, key.Seal(nil, pt), ul); err != nil {
			t.Fatal(err)
		}
	}
	blobs := append([]Blob(nil), w.Blobs()...)
	buf, id, err := w.Finalize()
	if err != nil {
		t.Fatal(err)
	}
	if id != core.Hash(buf) {
		t.Fatal("pack id is not the hash")
	}
	return buf, blobs, plains
}

func TestRoundTrip(t *testing.T) {
	key := crypto.NewRandomKey()
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 14, 15, 16, 100, 1000} {
		buf, blobs, plains := buildPack(t, key, n, rnd)
		if int64(len(buf)) != PackSize(blobs) {
			t.Fatalf("n=%d: size %d, PackSize %d", n, len(buf), PackSize(blobs))
		}
		got, err := ReadHeader(bytes.NewReader(buf), int64(len(buf)), key)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if len(got) != len(blobs) {
			t.Fatalf("n=%d: %d blobs, want %d", n, len(got), len(blobs))
		}
		for i := range got {
			if got[i] != blobs[i] {
				t.Fatalf("entry %d differs: %+v vs %+v", i, got[i], blobs[i])
			}
			b := got[i]
			pt, err := key.Open(nil, buf[b.Offset:b.Offset+b.Length])
			if err != nil || !bytes.Equal(pt, plains[i]) {
				t.Fatalf("blob %d does not decrypt: %v", i, err)
			}
		}
	}
}

func TestCorruptPacks(t *testing.T) {
	key := crypto.NewRandomKey()
	buf, _, _ := buildPack(t, key, 5, rand.New(rand.NewPCG(3, 4)))
	cases := map[string][]byte{
		"empty":          {},
		"tiny":           buf[:10],
		"truncated":      buf[:len(buf)-1],
		"missing-first":  buf[1:],
		"zero-length":    append(bytes.Clone(buf[:len(buf)-4]), 0, 0, 0, 0),
		"huge-length":    append(bytes.Clone(buf[:len(buf)-4]), 0xff, 0xff, 0xff, 0x7f),
		"flipped-header": func() []byte { b := bytes.Clone(buf); b[len(b)-10] ^= 1; return b }(),
	}
	for name, b := range cases {
		_, err := ReadHeader(bytes.NewReader(b), int64(len(b)), key)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !errors.Is(err, ErrInvalidPack) && len(b) >= MinPackSize {
			t.Errorf("%s: error %v does not wrap ErrInvalidPack", name, err)
		}
	}
	if _, err := ReadHeader(bytes.NewReader(buf), int64(len(buf)), crypto.NewRandomKey()); err == nil {
		t.Fatal("wrong key accepted")
	}
}

func TestDecodeHeaderErrors(t *testing.T) {
	if _, err := DecodeHeader([]byte{9}); err == nil {
		t.Fatal("bad type accepted")
	}
	if _, err := DecodeHeader(make([]byte, 36)); err == nil {
		t.Fatal("truncated entry accepted")
	}
	e := make([]byte, 41)
	e[0] = 2
	e[1] = 40
	if _, err := DecodeHeader(e); err == nil {
		t.Fatal("compressed entry with zero length accepted")
	}
}

func FuzzDecodeHeader(f *testing.F) {
	key := crypto.NewRandomKey()
	buf, blobs, _ := buildPack(f, key, 3, rand.New(rand.NewPCG(5, 6)))
	_ = buf
	plain, _ := EncodeHeader(nil, blobs)
	f.Add(plain)
	f.Add([]byte{})
	f.Add([]byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		blobs, err := DecodeHeader(data)
		if err != nil {
			return
		}
		again, err := EncodeHeader(nil, blobs)
		if err != nil {
			t.Fatalf("decoded header does not encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatal("header does not round-trip")
		}
	})
}

func FuzzReadHeader(f *testing.F) {
	key, _ := crypto.FromBytes(bytes.Repeat([]byte{3}, 64))
	buf, _, _ := buildPack(f, key, 4, rand.New(rand.NewPCG(7, 8)))
	f.Add(buf)
	f.Add(buf[:len(buf)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		blobs, err := ReadHeader(bytes.NewReader(data), int64(len(data)), key)
		if err == nil && PackSize(blobs) != int64(len(data)) {
			t.Fatal("accepted header whose blobs do not fill the pack")
		}
	})
}

func BenchmarkWritePack(b *testing.B) {
	key := crypto.NewRandomKey()
	sealed := key.Seal(nil, make([]byte, 1<<20))
	buf := make([]byte, 0, 17<<20)
	b.SetBytes(16 << 20)
	for i := 0; i < b.N; i++ {
		w := NewWriter(key, buf)
		for j := 0; j < 16; j++ {
			id := core.ID{byte(j)}
			if err := w.Add(core.BlobHandle{ID: id, Type: core.DataBlob}, sealed, 0); err != nil {
				b.Fatal(err)
			}
		}
		out, _, err := w.Finalize()
		if err != nil {
			b.Fatal(err)
		}
		buf = out[:0]
	}
}

func TestFileWriterMatchesWriter(t *testing.T) {
	key := crypto.NewRandomKey()
	f, err := os.CreateTemp(t.TempDir(), "pack")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fw := NewFileWriter(key, f)
	for i := 0; i < 20; i++ {
		pt := bytes.Repeat([]byte{byte(i)}, 1000*i+1)
		if err := fw.Add(core.BlobHandle{ID: core.Hash(pt), Type: core.DataBlob}, key.Seal(nil, pt), 0); err != nil {
			t.Fatal(err)
		}
	}
	id, size, err := fw.Finalize()
	if err != nil {
		t.Fatal(err)
	}
	buf, _ := os.ReadFile(f.Name())
	if int64(len(buf)) != size || core.Hash(buf) != id || int64(fw.Size()) > size+4 {
		t.Fatalf("size %d/%d, id mismatch %v", len(buf), size, core.Hash(buf) != id)
	}
	blobs, err := ReadHeader(bytes.NewReader(buf), size, key)
	if err != nil || len(blobs) != 20 {
		t.Fatalf("header: %v", err)
	}
}
