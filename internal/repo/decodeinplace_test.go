package repo

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/index"
)

// sealedBlob saves data and returns its index location and stored bytes.
func sealedBlob(t testing.TB, r *Repository, be backend.Backend, data []byte) (index.Location, []byte) {
	t.Helper()
	ctx := context.Background()
	res, err := r.SaveBlob(ctx, core.DataBlob, data, core.ID{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	loc, ok := r.Index().Lookup(core.BlobHandle{ID: res.ID, Type: core.DataBlob})
	if !ok {
		t.Fatal("saved blob not indexed")
	}
	raw, err := backend.LoadAll(ctx, be, backend.Handle{Type: core.PackFile, Name: loc.Pack.String()})
	if err != nil {
		t.Fatal(err)
	}
	return loc, raw[loc.Offset : loc.Offset+loc.Length]
}

func TestDecodeBlobInPlace(t *testing.T) {
	compressible := bytes.Repeat([]byte("cairn checks every blob "), 4000)
	random := make([]byte, 50000)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	for _, version := range []uint{1, 2} {
		for name, data := range map[string][]byte{"compressible": compressible, "random": random} {
			r, be := newTestRepo(t, version, Options{})
			loc, sealed := sealedBlob(t, r, be, data)
			if version == 1 && loc.IsCompressed() {
				t.Fatalf("v1 blob stored compressed")
			}
			if version == 2 && (name == "compressible") != loc.IsCompressed() {
				t.Fatalf("v2 %s blob: compressed = %v", name, loc.IsCompressed())
			}
			dst := make([]byte, 0, 10)
			plain, dst, err := r.DecodeBlobInPlace(loc.Blob, bytes.Clone(sealed), dst)
			if err != nil {
				t.Fatalf("v%d %s: %v", version, name, err)
			}
			if !bytes.Equal(plain, data) {
				t.Fatalf("v%d %s: plaintext differs", version, name)
			}
			if loc.IsCompressed() && cap(dst) < len(data) {
				t.Fatalf("v%d %s: grown dst not returned for reuse (cap %d)", version, name, cap(dst))
			}
			// a second decode reuses dst without growing it
			again, dst2, err := r.DecodeBlobInPlace(loc.Blob, bytes.Clone(sealed), dst)
			if err != nil || !bytes.Equal(again, data) {
				t.Fatalf("v%d %s: second decode: %v", version, name, err)
			}
			if loc.IsCompressed() && &dst2[:1][0] != &dst[:1][0] {
				t.Fatalf("v%d %s: dst reallocated although large enough", version, name)
			}
			// every flipped byte is detected
			for _, i := range []int{0, 17, len(sealed) / 2, len(sealed) - 1} {
				bad := bytes.Clone(sealed)
				bad[i] ^= 1
				if _, _, err := r.DecodeBlobInPlace(loc.Blob, bad, nil); !errors.Is(err, ErrInvalidData) {
					t.Fatalf("v%d %s: flipped byte %d: err = %v", version, name, i, err)
				}
			}
			// a wrong ID and a wrong length are detected
			b := loc.Blob
			b.ID[0] ^= 1
			if _, _, err := r.DecodeBlobInPlace(b, bytes.Clone(sealed), nil); !errors.Is(err, ErrInvalidData) {
				t.Fatalf("v%d %s: wrong ID: err = %v", version, name, err)
			}
			if _, _, err := r.DecodeBlobInPlace(loc.Blob, sealed[1:], nil); !errors.Is(err, ErrInvalidData) {
				t.Fatalf("v%d %s: short: err = %v", version, name, err)
			}
		}
	}
}

// FuzzDecodeBlobInPlace feeds arbitrary stored bytes and index entries to
// DecodeBlobInPlace, which must agree with DecodeBlob and never panic.
func FuzzDecodeBlobInPlace(f *testing.F) {
	be := mem.New()
	r, err := Init(context.Background(), be, "secret", 2, testParams, Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer r.Close()
	text := bytes.Repeat([]byte("fuzz me "), 500)
	loc, sealed := sealedBlob(f, r, be, text)
	f.Add(sealed, loc.UncompressedLength, false)
	f.Add(sealed, loc.UncompressedLength+1, false)
	f.Add(sealed, uint32(0), true)
	f.Add([]byte{}, uint32(10), false)
	f.Fuzz(func(t *testing.T, data []byte, ulen uint32, wrongID bool) {
		b := loc.Blob
		b.Length = uint32(len(data))
		b.UncompressedLength = ulen % (1 << 20) // bound what a bogus entry makes us allocate
		if wrongID {
			b.ID[0] ^= 1
		}
		want, werr := r.DecodeBlob(b, data, nil)
		got, _, gerr := r.DecodeBlobInPlace(b, bytes.Clone(data), nil)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("DecodeBlob err %v, DecodeBlobInPlace err %v", werr, gerr)
		}
		if werr == nil && !bytes.Equal(want, got) {
			t.Fatal("plaintexts differ")
		}
		if gerr != nil && !errors.Is(gerr, ErrInvalidData) {
			t.Fatalf("error does not wrap ErrInvalidData: %v", gerr)
		}
	})
}
