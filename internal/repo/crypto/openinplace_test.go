package crypto

import (
	"bytes"
	"errors"
	"testing"
)

func TestOpenInPlace(t *testing.T) {
	k := NewRandomKey()
	for _, n := range []int{0, 1, 15, 16, 17, 4096, 1<<20 + 3} {
		plain := make([]byte, n)
		for i := range plain {
			plain[i] = byte(i*7 + n)
		}
		sealed := k.Seal(nil, plain)
		got, err := k.OpenInPlace(sealed)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("n=%d: plaintext differs", n)
		}
		if n > 0 && &got[0] != &sealed[IVSize] {
			t.Fatalf("n=%d: plaintext not decrypted in place", n)
		}
	}
}

func TestOpenInPlaceRejects(t *testing.T) {
	k := NewRandomKey()
	sealed := k.Seal(nil, []byte("some plaintext to protect"))
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x40
		keep := bytes.Clone(bad)
		if _, err := k.OpenInPlace(bad); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("flipped byte %d: err = %v, want ErrUnauthenticated", i, err)
		}
		if !bytes.Equal(bad, keep) {
			t.Fatalf("flipped byte %d: a rejected object was modified", i)
		}
	}
	if _, err := k.OpenInPlace(sealed[:Extension-1]); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("short object: err = %v", err)
	}
	if _, err := NewRandomKey().OpenInPlace(sealed); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("wrong key: err = %v", err)
	}
}

// FuzzOpenInPlace checks that OpenInPlace agrees with Open on arbitrary
// input, sealed by the key or not.
func FuzzOpenInPlace(f *testing.F) {
	k := NewRandomKey()
	f.Add([]byte{}, false)
	f.Add([]byte("hello"), true)
	f.Add(bytes.Repeat([]byte{0}, 48), false)
	f.Add(bytes.Repeat([]byte{1}, 100), true)
	f.Fuzz(func(t *testing.T, data []byte, seal bool) {
		in := data
		if seal {
			in = k.Seal(nil, data)
		}
		want, werr := k.Open(nil, in)
		got, gerr := k.OpenInPlace(bytes.Clone(in))
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("Open err %v, OpenInPlace err %v", werr, gerr)
		}
		if werr == nil && !bytes.Equal(want, got) {
			t.Fatal("plaintexts differ")
		}
		if seal && gerr != nil {
			t.Fatalf("own sealed object rejected: %v", gerr)
		}
	})
}

// TestOpenPieces: the pieces put together are the plaintext, for piece
// sizes that do and do not divide it; sealed is left as it was; a damaged
// MAC or ciphertext fails before any piece is handed out.
func TestOpenPieces(t *testing.T) {
	k := NewRandomKey()
	for _, n := range []int{0, 1, 15, 16, 100, 4096, 70000} {
		plain := make([]byte, n)
		for i := range plain {
			plain[i] = byte(i * 7)
		}
		sealed := k.Seal(nil, plain)
		orig := append([]byte(nil), sealed...)
		for _, piece := range []int{1, 7, 16, 4096, 1 << 20} {
			var got []byte
			err := k.OpenPieces(sealed, make([]byte, piece), func(off int, p []byte) {
				if off != len(got) {
					t.Fatalf("%d bytes, pieces of %d: offset %d after %d bytes", n, piece, off, len(got))
				}
				got = append(got, p...)
			})
			if err != nil || !bytes.Equal(got, plain) || !bytes.Equal(sealed, orig) {
				t.Fatalf("%d bytes, pieces of %d: %v", n, piece, err)
			}
		}
		bad := append([]byte(nil), sealed...)
		bad[len(bad)/2] ^= 1
		called := false
		if err := k.OpenPieces(bad, make([]byte, 64), func(int, []byte) { called = true }); !errors.Is(err, ErrUnauthenticated) || called {
			t.Fatalf("%d bytes damaged: %v, pieces handed out: %v", n, err, called)
		}
	}
}
