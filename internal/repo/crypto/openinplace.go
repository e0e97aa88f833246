package crypto

import (
	"crypto/subtle"
	"fmt"
)

// OpenInPlace verifies and decrypts sealed (IV || ciphertext || MAC) in
// place and returns the plaintext, which is sealed[IVSize:len(sealed)-16]:
// it writes no other memory and allocates nothing. sealed is left as it
// was if the MAC does not match (ErrUnauthenticated). It is for callers
// that read a sealed object only to check or consume it once.
func (k *Key) OpenInPlace(sealed []byte) ([]byte, error) {
	if len(sealed) < Extension {
		return nil, fmt.Errorf("decrypt: %d bytes is shorter than IV and MAC (%d): %w", len(sealed), Extension, ErrUnauthenticated)
	}
	iv := sealed[:ivSize]
	if allZero(iv) {
		return nil, fmt.Errorf("decrypt: all-zero IV: %w", ErrUnauthenticated)
	}
	ct := sealed[ivSize : len(sealed)-macSize]
	tag := k.mac(iv, ct)
	if subtle.ConstantTimeCompare(tag[:], sealed[len(sealed)-macSize:]) != 1 {
		return nil, ErrUnauthenticated
	}
	newCTR(k, iv).XORKeyStream(ct, ct)
	return ct, nil
}
