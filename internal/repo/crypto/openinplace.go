package crypto

// OpenInPlace verifies and decrypts sealed (IV || ciphertext || MAC) in
// place and returns the plaintext, which is sealed[IVSize:len(sealed)-16]:
// it writes no other memory and allocates nothing. sealed is left as it
// was if the MAC does not match (ErrUnauthenticated). It is for callers
// that read a sealed object only to check or consume it once.
func (k *Key) OpenInPlace(sealed []byte) ([]byte, error) {
	iv, ct, err := k.verify(sealed)
	if err != nil {
		return nil, err
	}
	newCTR(k, iv).XORKeyStream(ct, ct)
	return ct, nil
}
