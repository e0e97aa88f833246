// Package crypto implements restic's authenticated encryption: AES-256-CTR
// with a Poly1305-AES MAC over the ciphertext, stored as IV || ciphertext || MAC.
package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/crypto/poly1305"
)

const (
	ivSize  = aes.BlockSize // 16
	macSize = poly1305.TagSize
	// Extension is the number of bytes encryption adds to a plaintext.
	Extension = ivSize + macSize
)

// ErrUnauthenticated is returned when a MAC check fails: wrong key or
// tampered data.
var ErrUnauthenticated = errors.New("ciphertext verification failed (wrong key or corrupted data)")

// MACKey is the Poly1305-AES key: K encrypts the nonce, R is the (unclamped)
// Poly1305 multiplier.
type MACKey struct {
	K [16]byte
	R [16]byte
}

// Key is a repository master key (or a user key derived from a password).
type Key struct {
	MAC           MACKey
	EncryptionKey [32]byte

	block    cipher.Block // AES-256 with EncryptionKey, built lazily
	macBlock cipher.Block // AES-128 with MAC.K
	powers   *keyPowers   // powers of MAC.R for the vector Poly1305 (poly.go)
}

// NewRandomKey returns a fresh key from crypto/rand.
func NewRandomKey() *Key {
	k := &Key{}
	mustRand(k.EncryptionKey[:])
	mustRand(k.MAC.K[:])
	mustRand(k.MAC.R[:])
	if err := k.init(); err != nil {
		panic(err)
	}
	return k
}

func mustRand(b []byte) {
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
}

// FromBytes builds a key from 64 bytes of key material laid out as
// encryption key (32) || MAC K (16) || MAC R (16), as scrypt output is used.
func FromBytes(b []byte) (*Key, error) {
	if len(b) != 64 {
		return nil, fmt.Errorf("key material has %d bytes, want 64", len(b))
	}
	k := &Key{}
	copy(k.EncryptionKey[:], b[:32])
	copy(k.MAC.K[:], b[32:48])
	copy(k.MAC.R[:], b[48:64])
	return k, k.init()
}

func (k *Key) init() error {
	var err error
	if k.block, err = aes.NewCipher(k.EncryptionKey[:]); err != nil {
		return fmt.Errorf("init AES key: %w", err)
	}
	if k.macBlock, err = aes.NewCipher(k.MAC.K[:]); err != nil {
		return fmt.Errorf("init MAC key: %w", err)
	}
	k.powers = &keyPowers{}
	return nil
}

// Valid reports whether none of the key parts is all zero.
func (k *Key) Valid() bool {
	return !allZero(k.EncryptionKey[:]) && !allZero(k.MAC.K[:]) && !allZero(k.MAC.R[:])
}

func allZero(b []byte) bool {
	var v byte
	for _, c := range b {
		v |= c
	}
	return v == 0
}

func (k *Key) mac(nonce, ciphertext []byte) [macSize]byte {
	var polyKey [32]byte
	copy(polyKey[:16], k.MAC.R[:])
	k.macBlock.Encrypt(polyKey[16:], nonce) // s = AES-128_k(nonce)
	var tag [macSize]byte
	var pp *polyPowers
	if k.powers != nil {
		pp = k.powers.get(&polyKey)
	}
	polySum(&tag, ciphertext, &polyKey, pp)
	return tag
}

// Seal encrypts plaintext with a fresh random IV and appends
// IV || ciphertext || MAC to dst. dst's spare capacity must not overlap
// plaintext.
func (k *Key) Seal(dst, plaintext []byte) []byte {
	if !k.Valid() {
		panic("crypto: encrypting with an invalid key")
	}
	n := len(dst)
	need := n + ivSize + len(plaintext) + macSize
	if cap(dst) < need {
		nd := make([]byte, n, need)
		copy(nd, dst)
		dst = nd
	}
	dst = dst[:need]
	iv := dst[n : n+ivSize]
	for {
		mustRand(iv)
		if !allZero(iv) {
			break
		}
	}
	ct := dst[n+ivSize : n+ivSize+len(plaintext)]
	newCTR(k, iv).XORKeyStream(ct, plaintext)
	tag := k.mac(iv, ct)
	copy(dst[n+ivSize+len(plaintext):], tag[:])
	return dst
}

// verify checks the MAC of sealed (IV || ciphertext || MAC) and returns
// its IV and ciphertext.
func (k *Key) verify(sealed []byte) (iv, ct []byte, err error) {
	if len(sealed) < Extension {
		return nil, nil, fmt.Errorf("decrypt: %d bytes is shorter than IV and MAC (%d): %w", len(sealed), Extension, ErrUnauthenticated)
	}
	iv = sealed[:ivSize]
	if allZero(iv) {
		return nil, nil, fmt.Errorf("decrypt: all-zero IV: %w", ErrUnauthenticated)
	}
	ct = sealed[ivSize : len(sealed)-macSize]
	tag := k.mac(iv, ct)
	if subtle.ConstantTimeCompare(tag[:], sealed[len(sealed)-macSize:]) != 1 {
		return nil, nil, ErrUnauthenticated
	}
	return iv, ct, nil
}

// Open verifies and decrypts IV || ciphertext || MAC, appending the
// plaintext to dst. It returns ErrUnauthenticated if the MAC does not match.
func (k *Key) Open(dst, sealed []byte) ([]byte, error) {
	iv, ct, err := k.verify(sealed)
	if err != nil {
		return nil, err
	}
	n := len(dst)
	if cap(dst) < n+len(ct) {
		nd := make([]byte, n, n+len(ct))
		copy(nd, dst)
		dst = nd
	}
	dst = dst[:n+len(ct)]
	newCTR(k, iv).XORKeyStream(dst[n:], ct)
	return dst, nil
}

// PlaintextLength returns the plaintext size of a sealed object of size n.
func PlaintextLength(n int) int { return n - Extension }

type jsonMAC struct {
	K []byte `json:"k"`
	R []byte `json:"r"`
}

type jsonKey struct {
	MAC     jsonMAC `json:"mac"`
	Encrypt []byte  `json:"encrypt"`
}

// MarshalJSON encodes the key as restic does:
// {"mac":{"k":b64,"r":b64},"encrypt":b64}.
func (k *Key) MarshalJSON() ([]byte, error) {
	return json.Marshal(jsonKey{MAC: jsonMAC{K: k.MAC.K[:], R: k.MAC.R[:]}, Encrypt: k.EncryptionKey[:]})
}

// UnmarshalJSON decodes restic's master key JSON and validates it.
func (k *Key) UnmarshalJSON(b []byte) error {
	var j jsonKey
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("decode master key: %w", err)
	}
	if len(j.MAC.K) != 16 || len(j.MAC.R) != 16 || len(j.Encrypt) != 32 {
		return fmt.Errorf("decode master key: wrong key part sizes (k=%d r=%d encrypt=%d)", len(j.MAC.K), len(j.MAC.R), len(j.Encrypt))
	}
	copy(k.MAC.K[:], j.MAC.K)
	copy(k.MAC.R[:], j.MAC.R)
	copy(k.EncryptionKey[:], j.Encrypt)
	if !k.Valid() {
		return errors.New("decode master key: key has an all-zero part")
	}
	return k.init()
}

func newCTR(k *Key, iv []byte) cipher.Stream { return cipher.NewCTR(k.block, iv) }

// IVSize is the length of the IV that starts every sealed object.
const IVSize = ivSize

// SealInPlace encrypts buf[IVSize:] in place: the first IVSize bytes of buf
// are room for the IV, and the MAC is appended (reallocating only if buf
// has less than 16 bytes of spare capacity). It returns the sealed object.
func (k *Key) SealInPlace(buf []byte) []byte {
	if !k.Valid() {
		panic("crypto: encrypting with an invalid key")
	}
	if len(buf) < ivSize {
		panic("crypto: SealInPlace needs room for the IV")
	}
	iv := buf[:ivSize]
	for {
		mustRand(iv)
		if !allZero(iv) {
			break
		}
	}
	ct := buf[ivSize:]
	newCTR(k, iv).XORKeyStream(ct, ct)
	tag := k.mac(iv, ct)
	return append(buf, tag[:]...)
}
