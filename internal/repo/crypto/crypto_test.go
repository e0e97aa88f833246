package crypto

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	k := NewRandomKey()
	for _, n := range []int{0, 1, 15, 16, 17, 1000, 1 << 20} {
		pt := bytes.Repeat([]byte{byte(n)}, n)
		ct := k.Seal(nil, pt)
		if len(ct) != n+Extension {
			t.Fatalf("len %d, want %d", len(ct), n+Extension)
		}
		got, err := k.Open(nil, ct)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatal("round trip mismatch")
		}
		for _, pos := range []int{0, len(ct) / 2, len(ct) - 1} {
			bad := bytes.Clone(ct)
			bad[pos] ^= 1
			if _, err := k.Open(nil, bad); !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("flip at %d: err %v", pos, err)
			}
		}
	}
	if _, err := NewRandomKey().Open(nil, k.Seal(nil, []byte("x"))); !errors.Is(err, ErrUnauthenticated) {
		t.Fatal("wrong key accepted")
	}
	if _, err := k.Open(nil, make([]byte, 10)); err == nil {
		t.Fatal("short input accepted")
	}
}

func TestSealAppends(t *testing.T) {
	k := NewRandomKey()
	prefix := []byte("prefix")
	out := k.Seal(bytes.Clone(prefix), []byte("hello"))
	if !bytes.HasPrefix(out, prefix) {
		t.Fatal("prefix lost")
	}
	pt, err := k.Open([]byte("p:"), out[len(prefix):])
	if err != nil || string(pt) != "p:hello" {
		t.Fatalf("got %q %v", pt, err)
	}
}

func TestKeyJSON(t *testing.T) {
	k := NewRandomKey()
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(`{"mac":{"k":"`)) {
		t.Fatalf("unexpected shape %s", b)
	}
	var k2 Key
	if err := json.Unmarshal(b, &k2); err != nil {
		t.Fatal(err)
	}
	if k2.EncryptionKey != k.EncryptionKey || k2.MAC != k.MAC {
		t.Fatal("mismatch")
	}
	pt, err := k2.Open(nil, k.Seal(nil, []byte("abc")))
	if err != nil || string(pt) != "abc" {
		t.Fatal("decoded key does not decrypt")
	}
	if err := json.Unmarshal([]byte(`{"mac":{"k":"AAAAAAAAAAAAAAAAAAAAAA==","r":"AAAAAAAAAAAAAAAAAAAAAA=="},"encrypt":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`), &k2); err == nil {
		t.Fatal("zero key accepted")
	}
}

// TestKnownVector checks Poly1305-AES and CTR against a fixed key, so that a
// change in the construction (e.g. MACing the IV) is caught.
func TestKnownVector(t *testing.T) {
	var mat [64]byte
	for i := range mat {
		mat[i] = byte(i + 1)
	}
	k, err := FromBytes(mat[:])
	if err != nil {
		t.Fatal(err)
	}
	iv := bytes.Repeat([]byte{0x42}, 16)
	ct := make([]byte, 5)
	// CTR keystream with AES-256(key=1..32), IV=0x42*16 XOR "hello"
	sealed := append(append(bytes.Clone(iv), ct...), make([]byte, 16)...)
	_ = sealed
	// Build via Seal-equivalent with a fixed IV.
	out := k.sealWithIV(iv, []byte("hello"))
	pt, err := k.Open(nil, out)
	if err != nil || string(pt) != "hello" {
		t.Fatalf("fixed IV round trip: %q %v", pt, err)
	}
	tag := k.mac(iv, out[16:21])
	if !bytes.Equal(tag[:], out[21:]) {
		t.Fatal("tag mismatch")
	}
}

func (k *Key) sealWithIV(iv, pt []byte) []byte {
	out := append([]byte{}, iv...)
	ct := make([]byte, len(pt))
	newCTR(k, iv).XORKeyStream(ct, pt)
	out = append(out, ct...)
	tag := k.mac(iv, ct)
	return append(out, tag[:]...)
}

func TestKDF(t *testing.T) {
	salt := bytes.Repeat([]byte{7}, SaltSize)
	k1, err := KDF(Params{N: 1024, R: 1, P: 1}, salt, "pw")
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := KDF(Params{N: 1024, R: 1, P: 1}, salt, "pw")
	k3, _ := KDF(Params{N: 1024, R: 1, P: 1}, salt, "pw2")
	if k1.EncryptionKey != k2.EncryptionKey || k1.EncryptionKey == k3.EncryptionKey {
		t.Fatal("KDF not deterministic or not password dependent")
	}
	if _, err := KDF(Params{N: 1000, R: 1, P: 1}, salt, "pw"); err == nil {
		t.Fatal("non power of two N accepted")
	}
	if _, err := KDF(Params{N: 1024, R: 1, P: 1}, salt[:10], "pw"); err == nil {
		t.Fatal("short salt accepted")
	}
	// key files asking for absurd memory are refused before any allocation
	for _, p := range []Params{{N: 1 << 24, R: 8, P: 1}, {N: 1 << 30, R: 1, P: 1}, {N: 1024, R: 8, P: 1 << 20}} {
		if _, err := KDF(p, salt, "pw"); err == nil || !strings.Contains(err.Error(), "too large") {
			t.Fatalf("KDF(%+v): %v, want a too-large error", p, err)
		}
	}
	// restic's calibration quirk N=2^18, r=1 must be accepted.
	if testing.Short() {
		return
	}
	if _, err := KDF(Params{N: 1 << 18, R: 1, P: 1}, salt, "pw"); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkSeal1MiB(b *testing.B) {
	k := NewRandomKey()
	pt := make([]byte, 1<<20)
	buf := make([]byte, 0, len(pt)+Extension)
	b.SetBytes(int64(len(pt)))
	for i := 0; i < b.N; i++ {
		buf = k.Seal(buf[:0], pt)
	}
}

func BenchmarkOpen1MiB(b *testing.B) {
	k := NewRandomKey()
	ct := k.Seal(nil, make([]byte, 1<<20))
	buf := make([]byte, 0, 1<<20)
	b.SetBytes(1 << 20)
	for i := 0; i < b.N; i++ {
		var err error
		if buf, err = k.Open(buf[:0], ct); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSealInPlace(t *testing.T) {
	k := NewRandomKey()
	pt := []byte("in place plaintext")
	buf := make([]byte, IVSize, IVSize+len(pt)+macSize)
	buf = append(buf, pt...)
	sealed := k.SealInPlace(buf)
	got, err := k.Open(nil, sealed)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("%q %v", got, err)
	}
}
